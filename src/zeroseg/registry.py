"""The methods zeroseg offers, by name."""

from __future__ import annotations

import importlib
from typing import Any

from zeroseg.errors import ConfigError

# name -> (module, class); imported only when asked for, so listing methods stays cheap.
_METHODS: dict[str, tuple[str, str]] = {
    "diffcut": ("zeroseg.diffcut.segmenter", "DiffCut"),
    "diffseg": ("zeroseg.diffseg.segmenter", "DiffSeg"),
}
_CONFIGS: dict[str, tuple[str, str]] = {
    "diffcut": ("zeroseg.diffcut.config", "DiffCutConfig"),
    "diffseg": ("zeroseg.diffseg.config", "DiffSegConfig"),
}
DEFAULT_METHOD = "diffcut"


def list_methods() -> list[str]:
    """Names of the available methods."""
    return sorted(_METHODS)


def _load(table: dict[str, tuple[str, str]], method: str) -> Any:
    if method not in table:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(sorted(table))}")
    module, name = table[method]
    return getattr(importlib.import_module(module), name)


def method_class(method: str) -> type:
    """The segmenter class of ``method``."""
    return _load(_METHODS, method)


def config_class(method: str) -> type:
    """The config dataclass of ``method`` (imports no torch)."""
    return _load(_CONFIGS, method)


def create_segmenter(method: str = DEFAULT_METHOD, **kwargs: Any) -> Any:
    """Build a segmenter by method name; keyword arguments go to its constructor (model, device, settings)."""
    return method_class(method)(**kwargs)
