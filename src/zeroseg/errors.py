"""Exceptions raised by zeroseg.

Every error a user can cause derives from :class:`ZeroSegError`; the command line prints its message as one
line and exits non-zero, without a traceback.
"""

from __future__ import annotations


class ZeroSegError(Exception):
    """Base class of every error zeroseg raises on purpose."""


class ConfigError(ZeroSegError, ValueError):
    """A setting has a value outside its allowed range.

    With ``setting``, the message is the problem alone and the error reads "`setting` problem"; front ends
    name the setting their own way (the command line by its flag, see :func:`zeroseg.options.describe_error`).
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        self.setting = setting
        self.problem = message
        super().__init__(f"`{setting}` {message}" if setting else message)


class ImageError(ZeroSegError, ValueError):
    """An input image cannot be read or used (names the file and the problem)."""


class WeightsNotFoundError(ZeroSegError, FileNotFoundError):
    """Pretrained weights are neither on disk nor downloadable."""


class MissingDependencyError(ZeroSegError, ImportError):
    """An optional package is needed; the message names the extra to install."""


class DatasetError(ZeroSegError, FileNotFoundError):
    """A dataset root is missing or not in the expected layout."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace collapsed, at most ``limit`` characters)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def require(module: str, extra: str, feature: str):  # noqa: ANN201 - returns a module
    """Import an optional dependency or raise :class:`MissingDependencyError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the optional package `{module}`: pip install 'zeroseg[{extra}]'"
        ) from exc
