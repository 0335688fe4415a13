"""``zeroseg segment``: label maps and overlays for files, folders and globs.

Nothing is lost on bad input: a file that cannot be read or written is reported on one line and the batch goes
on; outputs are written atomically; existing outputs are kept unless ``--overwrite``; the exit code is 1 when
anything failed.
"""

from __future__ import annotations

import glob
import json
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from zeroseg.errors import ConfigError, ZeroSegError, one_line

_err = Console(stderr=True, highlight=False)


class Method(str, Enum):
    diffcut = "diffcut"
    diffseg = "diffseg"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class DType(str, Enum):
    auto = "auto"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


# Command-line option -> config field, per method. A test checks that every config field has its option.
DIFFSEG_OPTIONS = {
    "model": "model",
    "size": "image_size",
    "timestep": "timestep",
    "noise": "noise",
    "seed": "seed",
    "kl_threshold": "kl_threshold",
    "iterations": "iterations",
    "anchors": "anchors",
    "refine": "refine",
    "exact_reference": "exact_reference",
}
DIFFCUT_OPTIONS = {
    "model": "model",
    "size": "image_size",
    "timestep": "timestep",
    "seed": "seed",
    "tau": "tau",
    "alpha": "alpha",
    "pamr": "pamr",
    "pamr_iters": "pamr_iters",
    "pamr_dilations": "pamr_dilations",
    "exact_reference": "exact_reference",
}
METHOD_OPTIONS = {"diffseg": DIFFSEG_OPTIONS, "diffcut": DIFFCUT_OPTIONS}


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """``"1.1"`` or ``"1.1,0.9,0.9"`` -> floats, with a clear error naming the option."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"`{option}` expects numbers separated by commas (got {text!r})") from None


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """``"1,2,4,8"`` -> ints, with a clear error naming the option."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"`{option}` expects integers separated by commas (got {text!r})") from None


def method_settings(method: str, given: dict[str, Any]) -> dict[str, Any]:
    """Config overrides from the options the user gave; options of the other method are refused."""
    table = METHOD_OPTIONS[method]
    settings: dict[str, Any] = {}
    for option, value in given.items():
        if value is None:
            continue
        if option not in table:
            flag = "--" + option.replace("_", "-")
            other = "diffseg" if method == "diffcut" else "diffcut"
            raise ConfigError(f"`{flag}` is a {other} option; add --method {other} or leave it out")
        if option == "kl_threshold":
            value = parse_floats(value, "--kl-threshold")
        elif option == "pamr_dilations":
            value = parse_ints(value, "--pamr-dilations")
        settings[table[option]] = value
    return settings


def with_flag_names(message: str, method: str) -> str:
    """Speak of command-line flags rather than config fields in an error (image_size -> --size)."""
    for option, field_name in METHOD_OPTIONS[method].items():
        message = message.replace(f"`{field_name}`", "`--" + option.replace("_", "-") + "`")
    return message


@dataclass
class RunSummary:
    """What happened to each input, for the closing line and the exit code."""

    done: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, line: str) -> None:
        self.failures.append(line)
        _err.print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)


def segment_command(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Image files, folders and glob patterns (quote globs).", show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")] = Path("zeroseg-out"),
    method: Annotated[Method, typer.Option(help="Segmentation method.")] = Method.diffcut,
    model: Annotated[
        str | None,
        typer.Option(
            help="Short name (see `zeroseg models`), hub id, local diffusers folder or .safetensors file. "
            "Default: segmind/SSD-1B for diffcut, CompVis/stable-diffusion-v1-4 for diffseg.",
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
    device: Annotated[Device, typer.Option(help="Where the UNet runs.")] = Device.auto,
    dtype: Annotated[
        DType, typer.Option(help="UNet precision; auto = float16 on CUDA, float32 elsewhere.")
    ] = DType.auto,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per UNet batch.")] = 1,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Look into sub-folders of folders.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs (default: keep them, skip).")] = False,
    overlay: Annotated[bool, typer.Option(help="Also write <name>_overlay.jpg.")] = True,
    size: Annotated[
        int | None,
        typer.Option(help="Side of the square the model sees. Default: 1024 diffcut, 512 diffseg.", show_default=False),
    ] = None,
    timestep: Annotated[
        int | None, typer.Option(help="UNet timestep. Default: 50 diffcut, 300 diffseg.", show_default=False)
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Noise seed. Default: 42.", show_default=False)] = None,
    exact_reference: Annotated[
        bool | None,
        typer.Option(
            "--exact-reference", help="Reproduce the official code's numerics and quirks.", show_default=False
        ),
    ] = None,
    tau: Annotated[
        float | None,
        typer.Option(help="DiffCut: NCut threshold; larger gives finer segments. Default: 0.5.", show_default=False),
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(help="DiffCut: Exponent of the cosine affinity. Default: 10.", show_default=False),
    ] = None,
    pamr: Annotated[
        bool | None,
        typer.Option(
            "--pamr/--no-pamr",
            help="DiffCut: PAMR refinement at the output size. Default: on.",
            show_default=False,
        ),
    ] = None,
    pamr_iters: Annotated[
        int | None, typer.Option(help="DiffCut: PAMR iterations. Default: 30.", show_default=False)
    ] = None,
    pamr_dilations: Annotated[
        str | None,
        typer.Option(
            help="DiffCut: PAMR dilations, comma separated. Default: 1,2,4,8,12,24,32,64.", show_default=False
        ),
    ] = None,
    kl_threshold: Annotated[
        str | None,
        typer.Option(
            help="DiffSeg: KL merge threshold, one value or one per iteration (comma separated). Default: 1.1.",
            show_default=False,
        ),
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(help="DiffSeg: Merging iterations. Default: 3.", show_default=False)
    ] = None,
    anchors: Annotated[
        int | None,
        typer.Option(help="DiffSeg: Anchors per side of the anchor grid. Default: 16.", show_default=False),
    ] = None,
    refine: Annotated[
        bool | None,
        typer.Option(
            "--refine/--no-refine",
            help="DiffSeg: K-Means refinement of the proposals. Default: off.",
            show_default=False,
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="Name every segment from these classes, comma separated; '|' separates synonyms "
            '("cat,dog,sky|clouds"). Writes <name>.json and <name>_labelled.jpg. Needs the clip extra.',
            show_default=False,
        ),
    ] = None,
    vocabulary: Annotated[
        str | None,
        typer.Option(
            help="Name segments from a shipped vocabulary: voc, context, coco-object, ade20k or coco-stuff.",
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
    noise: Annotated[
        bool | None,
        typer.Option(
            "--noise/--no-noise",
            help="DiffSeg: Add seeded noise at the timestep. Default: off (official).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Segment images: writes <name>.png (palette label map at the image's resolution) and <name>_overlay.jpg."""
    given = {
        "model": model,
        "size": size,
        "timestep": timestep,
        "seed": seed,
        "exact_reference": exact_reference,
        "tau": tau,
        "alpha": alpha,
        "pamr": pamr,
        "pamr_iters": pamr_iters,
        "pamr_dilations": pamr_dilations,
        "kl_threshold": kl_threshold,
        "iterations": iterations,
        "anchors": anchors,
        "refine": refine,
        "noise": noise,
    }
    try:
        summary = run_segment(
            inputs,
            out=out,
            method=method.value,
            settings=given,
            device=device.value,
            dtype=dtype.value,
            load_options={"variant": variant, "model_config": model_config},
            naming=NamingOptions(
                labels=labels,
                vocabulary=vocabulary,
                merge_same_label=merge_same_label,
                background=background,
                clip_model=clip_model,
                clip_weights=clip_weights,
                clip_size=clip_size,
            ),
            batch_size=batch_size,
            recursive=recursive,
            overwrite=overwrite,
            overlay=overlay,
        )
    except ZeroSegError as exc:
        _err.print(f"[red]error:[/red] {escape(with_flag_names(str(exc), method.value))}", soft_wrap=True)
        raise typer.Exit(1) from None
    if summary.failures:
        raise typer.Exit(1)


def run_segment(
    inputs: list[str],
    *,
    out: Path,
    method: str,
    settings: dict[str, Any],
    device: str,
    dtype: str,
    batch_size: int,
    recursive: bool,
    overwrite: bool,
    overlay: bool,
    load_options: dict[str, Any] | None = None,
    naming: NamingOptions | None = None,
) -> RunSummary:
    """The body of ``zeroseg segment``: returns what happened; raises ZeroSegError only for fatal problems."""
    from zeroseg.inputs import expand_inputs, input_roots, output_stems
    from zeroseg.outputs import ensure_folder, output_exists
    from zeroseg.registry import config_class

    start = time.perf_counter()
    config = config_class(method)(**method_settings(method, settings))
    naming = naming or NamingOptions()
    naming.check()
    files, problems = expand_inputs(inputs, recursive=recursive)
    summary = RunSummary()
    for line in problems:
        summary.fail(line)
    matched = [p for p in inputs if Path(p).is_dir() or glob.glob(p, recursive=recursive)]
    stems = output_stems(files, roots=input_roots(matched))
    folder = ensure_folder(out)
    jobs = []
    for path, stem in zip(files, stems, strict=True):
        targets = _targets(folder, stem, overlay, named=naming.enabled)
        if not overwrite and all(output_exists(t) for t in targets):
            summary.skipped += 1
            continue
        jobs.append((path, targets))
    if jobs:
        segmenter = _load_segmenter(method, config, device, dtype, load_options or {})
        namer = naming.build(segmenter.device) if naming.enabled else None
        _write_settings(folder, {**segmenter.settings(), **naming.settings()})
        _process(
            segmenter,
            jobs,
            summary,
            batch_size=batch_size,
            overwrite=overwrite,
            namer=namer,
            merge_same_label=naming.merge_same_label,
        )
    elapsed = time.perf_counter() - start
    _err.print(_summary_line(summary, folder, elapsed), soft_wrap=True, highlight=False)
    return summary


def _targets(folder: Path, stem: str, overlay: bool, *, named: bool = False) -> list[Path]:
    """Output paths of one image: label map first, then the overlay, then the naming outputs."""
    targets = [folder / f"{stem}.png"]
    if overlay:
        targets.append(folder / f"{stem}_overlay.jpg")
    if named:
        targets += [folder / f"{stem}.json", folder / f"{stem}_labelled.jpg"]
    return targets


def _load_segmenter(method: str, config: Any, device: str, dtype: str, load_options: dict[str, Any]) -> Any:
    from zeroseg.registry import create_segmenter

    with _err.status(f"Loading {config.model} ...", spinner="dots"):
        return create_segmenter(method, config=config, device=device, dtype=dtype, **load_options)


def _write_settings(folder: Path, settings: dict[str, Any]) -> None:
    from zeroseg._version import __version__
    from zeroseg.outputs import atomic_write

    with atomic_write(folder / "zeroseg-settings.json") as temp:
        temp.write_text(json.dumps({"zeroseg": __version__, **settings}, indent=2) + "\n")


def _process(
    segmenter: Any,
    jobs: list[tuple[Path, list[Path]]],
    summary: RunSummary,
    *,
    batch_size: int,
    overwrite: bool,
    namer: Any = None,
    merge_same_label: bool = False,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )

    def write(image: Any, labels: Any, targets: list[Path]) -> None:
        _write_outputs(image, labels, targets, overwrite=overwrite, namer=namer, merge_same_label=merge_same_label)

    with Progress(*columns, console=_err, disable=len(jobs) < 2, transient=False) as progress:
        task = progress.add_task("Segmenting", total=len(jobs))
        for begin in range(0, len(jobs), batch_size):
            batch = jobs[begin : begin + batch_size]
            _process_batch(segmenter, batch, summary, write=write)
            progress.advance(task, len(batch))


def _process_batch(segmenter: Any, batch: list[tuple[Path, list[Path]]], summary: RunSummary, *, write: Any) -> None:

    from zeroseg.image import load_image, to_tensor

    loaded = []
    for path, targets in batch:
        try:
            image = load_image(path)
        except ZeroSegError as exc:
            summary.fail(str(exc))
            continue
        loaded.append((path, targets, image, to_tensor(image)))
    if not loaded:
        return
    try:
        captures = segmenter.capture_images([tensor for *_, tensor in loaded])
    except (RuntimeError, ValueError, ZeroSegError) as exc:
        for path, *_ in loaded:
            summary.fail(f"{path}: segmentation failed ({type(exc).__name__}: {one_line(exc)})")
        return
    for (path, targets, image, tensor), capture in zip(loaded, captures, strict=True):
        try:
            labels = segmenter.segment_capture(capture, output_size=tuple(tensor.shape[1:]), image=tensor)
            write(image, labels.numpy(), targets)
        except ZeroSegError as exc:
            summary.fail(str(exc))
            continue
        except (RuntimeError, ValueError, OSError) as exc:
            summary.fail(f"{path}: {type(exc).__name__}: {one_line(exc)}")
            continue
        summary.done += 1


def _write_outputs(
    image: Any,
    labels: Any,
    targets: list[Path],
    *,
    overwrite: bool,
    namer: Any = None,
    merge_same_label: bool = False,
) -> None:
    """Write the label map and overlay; with a namer, name the segments first (merging shares the label map)."""
    from zeroseg.outputs import check_output, save_label_map, save_overlay

    if namer is not None:
        from zeroseg.openvocab import name_and_export

        for target in targets:
            check_output(target, overwrite=overwrite)
        stem = targets[0].with_suffix("")
        labels, _ = name_and_export(labels, image, namer, stem, merge_same_label=merge_same_label)
    save_label_map(labels, targets[0], overwrite=overwrite)
    if len(targets) > 1 and targets[1].name.endswith("_overlay.jpg"):
        save_overlay(image, labels, targets[1], overwrite=overwrite)


@dataclass
class NamingOptions:
    """Open-vocabulary naming of segments (the ``clip`` extra), off unless labels or a vocabulary is given."""

    labels: str | None = None
    vocabulary: str | None = None
    merge_same_label: bool = False
    background: bool = False
    clip_model: str = "convnext_large_d_320"
    clip_weights: str = "laion2b_s29b_b131k_ft_soup"
    clip_size: int = 1024

    @property
    def enabled(self) -> bool:
        return bool(self.labels or self.vocabulary)

    def check(self) -> None:
        """Refuse contradictory options before any model is loaded."""
        if self.labels and self.vocabulary:
            raise ConfigError("give either `--labels` or `--vocabulary`, not both")
        if not self.enabled and (self.merge_same_label or self.background):
            raise ConfigError("`--merge-same-label` and `--background` need `--labels` or `--vocabulary`")
        if self.clip_size < 32:
            raise ConfigError(f"`--clip-size` must be at least 32 (got {self.clip_size})")

    def build(self, device: Any) -> Any:
        """Load the CLIP namer (once per run)."""
        from zeroseg.openvocab import SegmentNamer

        with _err.status(f"Loading {self.clip_model} ({self.clip_weights}) ...", spinner="dots"):
            return SegmentNamer(
                self.clip_model,
                self.clip_weights,
                vocabulary=self.labels or self.vocabulary,
                device=device,
                add_background=self.background,
                image_size=self.clip_size,
            )

    def settings(self) -> dict[str, Any]:
        """What to record in the run's settings file."""
        if not self.enabled:
            return {}
        return {
            "naming": {
                "labels": self.labels,
                "vocabulary": self.vocabulary,
                "clip_model": self.clip_model,
                "clip_weights": self.clip_weights,
                "clip_size": self.clip_size,
                "merge_same_label": self.merge_same_label,
                "background": self.background,
            }
        }


def _summary_line(summary: RunSummary, folder: Path, elapsed: float) -> str:
    parts = [f"{summary.done} segmented"]
    if summary.skipped:
        parts.append(f"{summary.skipped} skipped (outputs exist; --overwrite to redo)")
    if summary.failures:
        parts.append(f"{len(summary.failures)} failed")
    colour = "red" if summary.failures else "green"
    return f"[{colour}]{', '.join(parts)}[/{colour}] in {elapsed:.1f} s -> {escape(str(folder))}"


def register(app: typer.Typer) -> None:
    """Add the ``segment`` command to the root app."""
    app.command("segment")(segment_command)
