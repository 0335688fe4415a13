"""``zeroseg segment``: label maps, overlays and segment files for files, folders and globs.

A thin front end: inputs are expanded (:mod:`zeroseg.inputs`), images go through :class:`zeroseg.pipeline.Pipeline`
and results through :class:`zeroseg.writers.OutputWriter`. Nothing is lost on bad input: a file that cannot be
read or written is reported on one line and the batch goes on; outputs are written atomically; existing
outputs are kept unless ``--overwrite``; runs sharing an output folder share the work (each image is claimed
before its work starts); the exit code is 1 when anything failed.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from zeroseg.cli.options import (
    DEVICE_HELP,
    DTYPE_HELP,
    check_device,
    check_dtype,
    err_console,
    fail,
    method_choice,
    with_method_options,
)
from zeroseg.errors import ConfigError, ZeroSegError


@dataclass
class RunSummary:
    """What happened to each input, for the closing line and the exit code."""

    done: int = 0
    skipped: int = 0
    by_other_run: int = 0
    failures: list[str] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)

    def fail(self, line: str) -> None:
        self.failures.append(line)
        err_console.print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)


@with_method_options
def segment_command(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Image files, folders and glob patterns (quote globs).", show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")] = Path("zeroseg-out"),
    method: Annotated[str, method_choice()] = "diffcut",
    save: Annotated[
        str | None,
        typer.Option(
            help="Output formats, comma separated: png (label map), overlay, json (segments with bbox and COCO "
            "RLE masks), labelled (overlay with names; needs naming), tree (DiffCut's NCut tree). "
            "Default: png,overlay; with naming png,overlay,json,labelled.",
            show_default=False,
        ),
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option(help="Weight variant to download, e.g. fp16 (about half the size).", show_default=False),
    ] = None,
    model_config: Annotated[
        str | None,
        typer.Option(
            help="For a single .safetensors/.ckpt file: a diffusers folder or hub id with its configs.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    dtype: Annotated[str, typer.Option(help=DTYPE_HELP)] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per backbone batch.")] = 1,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look into sub-folders of folders.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs (default: keep them, skip).")] = False,
    labels: Annotated[
        str | None,
        typer.Option(
            help="Name every segment from these classes, comma separated; '|' separates synonyms "
            '("cat,dog,sky|clouds"). Needs the clip extra.',
            show_default=False,
        ),
    ] = None,
    vocabulary: Annotated[
        str | None,
        typer.Option(
            help="Name segments from a shipped vocabulary (the official lists): voc, context, coco-object, "
            "ade20k, coco-stuff or cityscapes.",
            show_default=False,
        ),
    ] = None,
    merge_same_label: Annotated[
        bool, typer.Option("--merge-same-label", help="Merge segments that get the same name (label map and outputs).")
    ] = False,
    background: Annotated[
        bool, typer.Option("--background", help="With --labels: add a 'background' class at index 0.")
    ] = False,
    clip_model: Annotated[str, typer.Option(help="open_clip model that names segments.")] = "convnext_large_d_320",
    clip_weights: Annotated[
        str, typer.Option(help="open_clip pretrained tag or a local checkpoint file.")
    ] = "laion2b_s29b_b131k_ft_soup",
    clip_size: Annotated[int, typer.Option(help="Side of the square image CLIP sees (official: 1024).")] = 1024,
    engine: Annotated[
        str, typer.Option(help="local (this process) or ray (a Ray cluster, or one started here; the ray extra).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray: auto (this machine's cluster) or ray://head:10001. Default: start Ray here."),
    ] = None,
    num_workers: Annotated[
        int | None, typer.Option(min=1, help="Ray: segmenting workers. Default: all GPUs (or CPUs).")
    ] = None,
    gpus_per_worker: Annotated[
        float | None, typer.Option(min=0, help="Ray: GPUs per worker. Default: 1 with --device cuda, else 0.")
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Ray: times a batch runs again after its worker died (default 2); then its images run again in "
            "smaller batches, and one that still kills its worker alone is recorded as failed.",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="Ray: files (as --save) or parquet (per-segment rows in OUT/segments).")
    ] = "files",
    method_values: dict[str, Any] | None = None,
) -> None:
    """Segment images: writes <name>.png (palette label map at the image's resolution) and <name>_overlay.jpg."""
    from zeroseg.pipeline import NamingOptions

    naming = NamingOptions(
        labels=labels,
        vocabulary=vocabulary,
        merge_same_label=merge_same_label,
        background=background,
        clip_model=clip_model,
        clip_weights=clip_weights,
        clip_size=clip_size,
    )
    ray_options = {
        "address": address,
        "num_workers": num_workers,
        "gpus_per_worker": gpus_per_worker,
        "max_retries": max_retries,
    }
    if engine not in ("local", "ray"):
        raise fail(ConfigError(f"must be local or ray (got {engine!r})", setting="engine"))
    if engine == "local" and (output_format != "files" or any(v is not None for v in ray_options.values())):
        ray_flags = "`--address`, `--num-workers`, `--gpus-per-worker`, `--max-retries` and `--format`"
        raise fail(ConfigError(f"{ray_flags} need `--engine ray`"))
    run = {
        "out": out,
        "method": method,
        "settings": method_values or {},
        "load_options": {"variant": variant, "model_config": model_config},
        "naming": naming,
        "save": save,
        "batch_size": batch_size,
        "recursive": recursive,
        "overwrite": overwrite,
    }
    try:
        if engine == "ray":
            from zeroseg.cli.ray_segment import segment_with_ray

            device_name, dtype_name = check_device(device), check_dtype(dtype)
            code = segment_with_ray(
                inputs, device=device_name, dtype=dtype_name, output_format=output_format, **run, **ray_options
            )
            raise typer.Exit(code)
        summary = run_segment(inputs, device=device, dtype=dtype, **run)
    except ZeroSegError as exc:
        raise fail(exc, method) from None
    if summary.failures:
        raise typer.Exit(1)


def run_segment(
    inputs: list[str],
    *,
    out: Path,
    method: str,
    settings: dict[str, Any],
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 1,
    recursive: bool = False,
    overwrite: bool = False,
    save: str | None = None,
    load_options: dict[str, Any] | None = None,
    naming: Any = None,
) -> RunSummary:
    """The body of ``zeroseg segment``: returns what happened; raises ZeroSegError only for fatal problems.

    Every setting is validated before the model loads; the model loads only when some image needs work. The
    images go through :class:`zeroseg.folder_run.FolderRun`, as on each Ray worker.
    """
    from zeroseg.folder_run import FolderJob, FolderRun, resolve_formats, unfinished
    from zeroseg.inputs import find_inputs, input_roots, output_stems
    from zeroseg.options import build_config
    from zeroseg.pipeline import NamingOptions
    from zeroseg.registry import get_method
    from zeroseg.writers import OutputWriter

    start = time.perf_counter()
    get_method(method)
    naming = naming or NamingOptions()
    config = build_config(method, settings)
    naming.check()
    device, dtype = check_device(device), check_dtype(dtype)
    formats = resolve_formats(save, method=method, named=naming.enabled)
    found = find_inputs(inputs, recursive=recursive)
    summary = RunSummary(not_images=found.not_images)
    for line in found.problems:
        summary.fail(line)
    matched = [p for p in inputs if Path(p).is_dir() or glob.glob(p, recursive=recursive)]
    stems = output_stems(found.files, roots=input_roots(matched))
    writer = OutputWriter(out, formats, overwrite=overwrite)
    jobs = [FolderJob(path, stem, source_name(path)) for path, stem in zip(found.files, stems, strict=True)]
    todo, summary.skipped = unfinished(jobs, writer)
    if todo:
        pipeline = _load_pipeline(
            method, config, device, dtype, load_options or {}, naming, batch_size, keep_tree="tree" in formats
        )
        _process(FolderRun(pipeline, writer), todo, summary)
    err_console.print(_summary_line(summary, writer.folder, time.perf_counter() - start), soft_wrap=True)
    return summary


def source_name(path: Path) -> str:
    """How an input file is named in outputs and errors: its absolute path, as every engine records it."""
    return os.path.abspath(path)


def _load_pipeline(
    method: str,
    config: Any,
    device: str,
    dtype: str | None,
    load_options: dict[str, Any],
    naming: Any,
    batch_size: int,
    keep_tree: bool = False,
) -> Any:
    from zeroseg.pipeline import build_pipeline

    with err_console.status(f"Loading {config.model} ...", spinner="dots"):
        return build_pipeline(
            method,
            config=config,
            device=device,
            dtype=dtype,
            naming=naming,
            batch_size=batch_size,
            keep_tree=keep_tree,
            **load_options,
        )


def _process(run: Any, jobs: list[Any], summary: RunSummary) -> None:
    """Run the folder run over ``jobs`` with a progress bar, counting each outcome into ``summary``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from zeroseg.folder_run import STATUS_DONE, STATUS_FAILED

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, disable=len(jobs) < 2, transient=False) as progress:
        task = progress.add_task("Segmenting", total=len(jobs))

        def waiting(count: int) -> None:
            progress.update(task, description=f"Waiting for {count} images another run is writing")

        for outcome in run(jobs, waiting=waiting):
            if outcome.status == STATUS_DONE:
                summary.done += 1
            elif outcome.status == STATUS_FAILED:
                summary.fail(outcome.error)
            else:
                summary.skipped += 1
                summary.by_other_run += outcome.by_other_run
            progress.advance(task)


def _summary_line(summary: RunSummary, folder: Path, elapsed: float) -> str:
    parts = [f"{summary.done} segmented"]
    if summary.skipped:
        others = f", {summary.by_other_run} by another run" if summary.by_other_run else ""
        parts.append(f"{summary.skipped} skipped (outputs exist{others}; --overwrite to redo)")
    if summary.failures:
        parts.append(f"{len(summary.failures)} failed")
    line = ", ".join(parts)
    if summary.not_images:
        shown = ", ".join(summary.not_images[:5]) + (", ..." if len(summary.not_images) > 5 else "")
        noun = "file that is not an image" if len(summary.not_images) == 1 else "files that are not images"
        line += f"; skipped {len(summary.not_images)} {noun}: {shown}"
    colour = "red" if summary.failures else "green"
    return f"[{colour}]{escape(line)}[/{colour}] in {elapsed:.1f} s -> {escape(str(folder))}"


def register(app: typer.Typer) -> None:
    """Add the ``segment`` command to the root app."""
    app.command("segment")(segment_command)
