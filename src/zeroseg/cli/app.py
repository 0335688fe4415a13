"""The ``zeroseg`` command: root app, global options and sub-commands.

Every command imports torch and the models inside its body, so ``zeroseg --help`` answers at once.
"""

from __future__ import annotations

import logging
import os
import platform
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from zeroseg._version import __version__

app = typer.Typer(
    name="zeroseg",
    help="Segment any image with no training and no labels, from a pretrained Stable Diffusion model "
    "(DiffCut and DiffSeg).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

_out = Console()


def _version_callback(value: bool) -> None:
    if value:
        _out.print(f"zeroseg {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="More log output (-v info, -vv debug). Also ZEROSEG_VERBOSITY.",
        ),
    ] = 0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Global options."""
    setup_logging(verbose)


def setup_logging(verbose: int) -> None:
    """Log to stderr through rich; level from ``-v`` or the ``ZEROSEG_VERBOSITY`` variable (default WARNING)."""
    env = os.environ.get("ZEROSEG_VERBOSITY", "").upper()
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    if verbose == 0 and env in ("DEBUG", "INFO", "WARNING", "ERROR"):
        level = getattr(logging, env)
    logger = logging.getLogger("zeroseg")
    logger.setLevel(level)
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False)
        logger.addHandler(handler)
    logger.propagate = False


@app.command()
def models() -> None:
    """List the model families with their short names, what each loads, and the defaults each method takes on
    them with their sources (any hub id or local folder of a family works too)."""
    from zeroseg.backbones.defaults import LAYER_SETTINGS, family_defaults, layer_default_text
    from zeroseg.backbones.families import FAMILIES
    from zeroseg.backbones.presets import ALIAS_FAMILIES, MODEL_ALIASES
    from zeroseg.registry import list_methods

    width = max(len(name) for name in MODEL_ALIASES)
    for family in FAMILIES.values():
        _out.print(f"[bold]{family.name}[/bold]: {family.title}", highlight=False)
        _out.print(f"  loads: {', '.join(family.components)}", highlight=False)
        for name, hub_id in MODEL_ALIASES.items():
            if ALIAS_FAMILIES.get(name) == family.name:
                _out.print(f"  {name:<{width}}  {hub_id}", highlight=False)
        for method in list_methods():
            defaults = family_defaults(family.name, method)
            if not defaults and method not in LAYER_SETTINGS:
                continue
            _out.print(f"  {method} defaults:", highlight=False)
            for setting, default in defaults.items():
                _out.print(f"    {setting} = {default.value}  ({default.source})", highlight=False)
            if method in LAYER_SETTINGS:
                _out.print(f"    {LAYER_SETTINGS[method]}: {layer_default_text(family.name, method)}", highlight=False)


@app.command()
def env() -> None:
    """Print versions and available devices (for bug reports)."""
    import diffusers
    import torch
    import transformers

    _out.print(f"zeroseg       {__version__}")
    _out.print(f"python        {platform.python_version()} ({platform.platform()})")
    _out.print(f"torch         {torch.__version__}")
    _out.print(f"diffusers     {diffusers.__version__}")
    _out.print(f"transformers  {transformers.__version__}")
    cuda = torch.cuda.is_available()
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else "no"
    _out.print(f"cuda          {names}")
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    _out.print(f"mps           {'yes' if mps else 'no'}")
    _out.print(f"cpu threads   {torch.get_num_threads()}")


def _register_commands() -> None:
    from zeroseg.cli import evaluate, segment, serve

    segment.register(app)
    evaluate.register(app)
    serve.register(app)


_register_commands()


def main() -> None:
    """Entry point of the ``zeroseg`` console script."""
    app()
