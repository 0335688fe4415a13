"""Method options declared once, on the config fields, and derived everywhere else.

Each config field is declared with :func:`setting`: its help text, its command-line flag and how a text value
parses are field metadata. The command line (``segment``, ``evaluate``, ``sweep``), the web UI and error
messages all read them from here, so an option is never typed twice. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass
from typing import Any

from zeroseg.errors import ConfigError


def setting(default: Any, help: str, *, flag: str | None = None, capture: bool = False, ui: bool = False) -> Any:
    """A config field with its option metadata.

    Args:
        default: the default value (from the paper or the official code; the help says which).
        help: one sentence for ``--help`` and the web UI.
        flag: command-line flag without dashes (default: the field name with ``-``), e.g. ``size``.
        capture: the field changes the backbone pass (part of the capture cache key).
        ui: offer it as a live control in the web UI (settings that re-segment a kept capture).
    """
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "capture": capture, "ui": ui})


@dataclass(frozen=True)
class Option:
    """One config field seen as a user-facing option."""

    name: str
    flag: str
    help: str
    kind: str  # "bool", "int", "float", "str", "ints", "floats" (one or a comma list)
    default: Any
    capture: bool
    ui: bool

    @property
    def cli(self) -> str:
        """``--flag`` as typed on the command line."""
        return f"--{self.flag}"

    def parse(self, value: Any) -> Any:
        """A command-line or form value -> the field's value (text is parsed; other values pass through).

        Raises:
            ConfigError: the text does not parse (names the flag).
        """
        if not isinstance(value, str) or self.kind == "str":
            return value
        try:
            if self.kind == "bool":
                lowered = value.strip().lower()
                if lowered not in _BOOLS:
                    raise ValueError(value)
                return _BOOLS[lowered]
            if self.kind in ("int", "float"):
                return _NUMBER[self.kind](value)
            parts = tuple(_NUMBER[self.kind[:-1]](p) for p in value.replace(" ", "").split(",") if p)
            if not parts:
                raise ValueError(value)
            return parts[0] if len(parts) == 1 and self.kind == "floats" else parts
        except ValueError:
            raise ConfigError(f"`{self.cli}` expects {_EXPECTED[self.kind]} (got {value!r})") from None


_NUMBER: dict[str, Callable[[str], Any]] = {"int": int, "float": float}
_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
_EXPECTED = {
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "ints": "integers separated by commas",
    "floats": "numbers separated by commas",
}


def options_of(config_class: type) -> list[Option]:
    """The options of a config dataclass, in field order."""
    hints = typing.get_type_hints(config_class)
    options = []
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        if "help" not in meta:
            raise ConfigError(f"{config_class.__name__}.{field.name} is not declared with zeroseg.options.setting")
        default = field.default if field.default is not MISSING else field.default_factory()  # type: ignore[misc]
        options.append(
            Option(
                name=field.name,
                flag=meta["flag"] or field.name.replace("_", "-"),
                help=meta["help"],
                kind=_kind(hints[field.name], config_class, field.name),
                default=default,
                capture=bool(meta["capture"]),
                ui=bool(meta["ui"]),
            )
        )
    return options


def capture_fields(config_class: type) -> tuple[str, ...]:
    """Names of the fields that change the backbone pass."""
    return tuple(o.name for o in options_of(config_class) if o.capture)


def _kind(hint: Any, owner: type, name: str) -> str:
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:  # ``X | None``: unset means the model's default
        hint = next(arg for arg in args if arg is not type(None))
    if hint is bool:
        return "bool"
    if hint in (int, float, str):
        return hint.__name__
    args = set(typing.get_args(hint))
    for element in (int, float):
        if (typing.get_origin(hint) is tuple and args <= {element, Ellipsis}) or tuple[element, ...] in args:
            return f"{element.__name__}s"
    raise ConfigError(f"{owner.__name__}.{name}: no option kind for type {hint!r}")


def method_options(method: str) -> list[Option]:
    """The options of a registered method."""
    from zeroseg.registry import config_class

    return options_of(config_class(method))


def flag_of(method: str | None, name: str) -> str:
    """``--flag`` of config field ``name`` (the field name itself when no method declares it)."""
    for option in method_options(method) if method else ():
        if option.name == name:
            return option.cli
    return f"--{name.replace('_', '-')}"


def describe_error(exc: ConfigError, method: str | None) -> str:
    """A config error as the command line shows it: the setting named by its flag."""
    if exc.setting is None:
        return str(exc)
    return f"`{flag_of(method, exc.setting)}` {exc.problem}"


def build_config(method: str, values: dict[str, Any]) -> Any:
    """The validated config of ``method`` from field values (text is parsed by each field's option).

    ``None`` values mean "not given" and keep the default. Options of other methods are refused with a
    message naming the method that has them.

    Raises:
        ConfigError: unknown option, a value that does not parse, or a config check (names the setting).
    """
    from zeroseg.registry import config_class, list_methods

    own = {o.name: o for o in method_options(method)}
    given = {name: value for name, value in values.items() if value is not None}
    settings = {}
    for name, value in given.items():
        if name not in own:
            owners = [m for m in list_methods() if m != method and any(o.name == name for o in method_options(m))]
            flag = next((o.cli for m in owners for o in method_options(m) if o.name == name), f"--{name}")
            if owners:
                raise ConfigError(f"`{flag}` is a {owners[0]} option; add --method {owners[0]} or leave it out")
            raise ConfigError(f"unknown {method} setting `{name}`; allowed: {', '.join(own)}")
        settings[name] = own[name].parse(value)
    return config_class(method)(**settings)


def all_options(methods: Iterable[str] | None = None) -> dict[str, list[tuple[str, Option]]]:
    """Field name -> ``[(method, option), ...]`` over the given (default: all registered) methods."""
    from zeroseg.registry import list_methods

    table: dict[str, list[tuple[str, Option]]] = {}
    for method in methods if methods is not None else list_methods():
        for option in method_options(method):
            table.setdefault(option.name, []).append((method, option))
    return table


def format_default(option: Option) -> str:
    """A default as a user types it (``1,2,4`` for tuples, ``on``/``off`` for flags)."""
    value = option.default
    if value is None:
        return "per model (see `zeroseg models`)"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)
