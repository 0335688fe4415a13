"""Typer options generated from the method configs, and the shared run options of the commands.

:func:`with_method_options` gives a command one option per config field of every registered method (flag,
help and default read from the field's :func:`zeroseg.options.setting` metadata) and hands the values the
user gave to the command as ``method_values``; :func:`zeroseg.options.build_config` turns them into a
validated config.
So ``segment``, ``evaluate`` and ``sweep`` accept the same options with the same syntax, and a new config
field or a new method appears in every command without touching the command line code.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from zeroseg.errors import ConfigError, ZeroSegError
from zeroseg.options import Option, all_options, describe_error, format_default

err_console = Console(stderr=True, highlight=False)

_METAVARS = {"int": "INT", "float": "FLOAT", "str": "TEXT", "ints": "INT,...", "floats": "FLOAT[,...]"}


def method_parameters() -> list[inspect.Parameter]:
    """One keyword parameter (a typer option) per config field of the registered methods."""
    from zeroseg.registry import list_methods

    methods = list_methods()
    parameters = []
    for name, owners in all_options().items():
        option = owners[0][1]
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=_annotation(option, owners, every_method=len(owners) == len(methods)),
            )
        )
    return parameters


def _annotation(option: Option, owners: list[tuple[str, Option]], *, every_method: bool) -> Any:
    helps = dict.fromkeys(o.help for _, o in owners)
    text = " / ".join(helps)
    panel = "Settings of every method" if every_method else f"{' and '.join(m for m, _ in owners)} settings"
    defaults = {format_default(o) for _, o in owners}
    if len(defaults) == 1:
        text += f" Default: {defaults.pop()}."
    else:
        text += " Default: " + ", ".join(f"{format_default(o)} ({m})" for m, o in owners) + "."
    if option.kind == "bool":
        declaration = typer.Option(
            f"{option.cli}/--no-{option.flag}", help=text, show_default=False, rich_help_panel=panel
        )
        return Annotated[bool | None, declaration]
    declaration = typer.Option(
        option.cli, help=text, show_default=False, metavar=_METAVARS[option.kind], rich_help_panel=panel
    )
    return Annotated[str | None, declaration]


class with_method_options:  # noqa: N801 - used as a decorator
    """Add the generated method options to a typer command; it receives them as ``method_values``.

    The command declares a ``method_values: dict[str, Any] | None`` parameter (not an option); the values are
    the raw text (or ``True``/``False`` for flags) the user typed, ``None`` where not given. The options are
    derived each time typer reads the signature, so a method registered at run time (a plugin, a test) gets
    its options without re-importing the command line.
    """

    def __init__(self, command: Callable[..., Any]) -> None:
        self.command = command
        self.__name__ = command.__name__
        self.__qualname__ = command.__qualname__
        self.__module__ = command.__module__
        self.__doc__ = command.__doc__

    def _parameters(self) -> tuple[list[inspect.Parameter], list[str]]:
        hints = typing.get_type_hints(self.command, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(self.command).parameters.values()
            if p.name != "method_values"
        ]
        taken = {p.name for p in own}
        generated = [p for p in method_parameters() if p.name not in taken]
        return own + generated, [p.name for p in generated]

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.Signature(self._parameters()[0])

    @property
    def __annotations__(self) -> dict[str, Any]:  # type: ignore[override]
        return {p.name: p.annotation for p in self._parameters()[0]}

    def __call__(self, **kwargs: Any) -> Any:
        _, names = self._parameters()
        values = {name: kwargs.pop(name, None) for name in names}
        return self.command(**kwargs, method_values=values)


def fail(exc: ZeroSegError, method: str | None = None) -> typer.Exit:
    """Print ``error: <one line>`` (settings named by their flags) and return the exit to raise."""
    message = describe_error(exc, method) if isinstance(exc, ConfigError) else str(exc)
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(1)


def method_choice() -> Any:
    """The ``--method`` option: any registered method (listed in the help)."""
    from zeroseg.registry import get_method, list_methods

    lines = "; ".join(f"{name}: {get_method(name).summary}" for name in list_methods())
    return typer.Option("--method", help=f"Segmentation method ({lines}).", show_default=True)


DEVICE_HELP = "Where the model runs: auto, cpu, cuda, cuda:N or mps."
DTYPE_HELP = "Denoiser precision: auto (float16 on CUDA, float32 elsewhere), float32, float16 or bfloat16."
_DTYPES = ("auto", "float32", "float16", "bfloat16")


def check_device(device: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (or ``mps:0``); anything else is a one-line error."""
    base, _, index = device.partition(":")
    if base in ("auto", "cpu") and not index:
        return device
    if base in ("cuda", "mps") and (not index or index.isdigit()):
        return device
    raise ConfigError(f"must be auto, cpu, cuda, cuda:N or mps (got {device!r})", setting="device")


def check_dtype(dtype: str) -> str | None:
    """The dtype name, ``None`` for auto."""
    if dtype not in _DTYPES:
        raise ConfigError(f"must be one of {', '.join(_DTYPES)} (got {dtype!r})", setting="dtype")
    return None if dtype == "auto" else dtype
