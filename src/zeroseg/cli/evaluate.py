"""``zeroseg evaluate`` and ``zeroseg sweep``: reproduce the papers' tables, measure settings on any dataset.

Heavy imports (torch, the evaluation package) happen inside the commands, so ``zeroseg --help`` stays fast.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from zeroseg.errors import ConfigError, ZeroSegError

_err = Console(stderr=True)
_out = Console()


def parse_value(text: str) -> Any:
    """A command-line value: int, float, true/false, none, a comma list (tuple) or a string."""
    text = text.strip()
    if "," in text:
        return tuple(parse_value(part) for part in text.split(",") if part.strip())
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_assignments(items: list[str] | None, option: str) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict with parsed values."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"`{option}` expects key=value, got {item!r}")
        out[key.strip().replace("-", "_")] = parse_value(value)
    return out


def parse_values(text: str, option: str) -> list[Any]:
    """Sweep values: ``start:stop:step`` (stop included) or a comma list (``1,5,10``) or one value."""
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ConfigError(f"`{option}` range must be start:stop:step, got {text!r}")
        try:
            start, stop, step = (float(p) for p in parts)
        except ValueError:
            raise ConfigError(f"`{option}` range must hold numbers, got {text!r}") from None
        if step <= 0 or stop < start:
            raise ConfigError(f"`{option}` range needs step > 0 and stop >= start, got {text!r}")
        count = int(math.floor((stop - start) / step + 1e-9)) + 1
        integral = all(p.lstrip("-").isdigit() for p in parts)
        values = [start + i * step for i in range(count)]
        return [int(v) for v in values] if integral else [round(v, 10) for v in values]
    value = parse_value(text)
    return list(value) if isinstance(value, tuple) else [value]


def resolve_devices(device: str) -> list[str]:
    """``auto`` (first GPU, else CPU), ``all`` (every GPU), or a comma list of torch devices."""
    from zeroseg.eval.parallel import available_devices

    if device == "auto":
        return available_devices()[:1]
    if device == "all":
        return available_devices()
    return [d.strip() for d in device.split(",") if d.strip()]


class _ProgressBar:
    """A rich progress bar whose description shows images per second and the running mIoU."""

    def __init__(self, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.fields[label]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeRemainingColumn(),
            console=_err,
            transient=False,
        )
        self.label = label
        self.task: Any = None
        self.start = time.perf_counter()
        self.first_done: int | None = None

    def __enter__(self) -> _ProgressBar:
        self.progress.__enter__()
        self.task = self.progress.add_task("", total=None, label=self.label)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, done: int, total: int, miou: float) -> None:
        if self.first_done is None:
            self.first_done, self.start = done - 1, time.perf_counter() - 1e-9
        elapsed = time.perf_counter() - self.start
        rate = (done - self.first_done) / elapsed if elapsed > 0 else 0.0
        shown = "n/a" if math.isnan(miou) else f"{100 * miou:.2f}"
        self.progress.update(self.task, completed=done, total=total, description=f"{rate:.2f} img/s  mIoU {shown}")


def _fail(exc: Exception) -> typer.Exit:
    from rich.markup import escape

    _err.print(f"[red]Error: {escape(str(exc))}[/red]", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _common_settings(
    settings: list[str] | None, tau: float | None, alpha: float | None, kl_threshold: float | None
) -> dict[str, Any]:
    out = parse_assignments(settings, "--set")
    for name, value in (("tau", tau), ("alpha", alpha), ("kl_threshold", kl_threshold)):
        if value is not None:
            out[name] = value
    return out


DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", help="Dataset name (coco-stuff-27, cityscapes-27, voc, context, "
                             "coco-object, ade20k, bsds500, camvid, folder); implied by --preset.")
]  # fmt: skip
RootOpt = Annotated[Path, typer.Option("--root", help="Dataset folder, in the dataset's official layout.")]
MethodOpt = Annotated[str | None, typer.Option("--method", help="diffseg or diffcut; implied by --preset.")]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help="A paper table row: diffseg-coco, diffseg-cityscapes, diffcut-{voc, context, coco-object, coco, "
        "cityscapes, ade20k} (+PAMR, Tab. 1) or the same with -nopamr (Tab. 2/5); "
        "diffcut-{voc, context, coco-object}-openvocab (open vocabulary with CLIP, Tab. 4).",
    ),
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Backbone (preset name, hub id or local folder).")]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Dataset split; default: the papers' split.")]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="Feature cache folder (default $ZEROSEG_CACHE or ~/.cache/zeroseg)."),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not store or reuse UNet captures.")]
RestartOpt = Annotated[bool, typer.Option("--restart", help="Ignore results of an interrupted identical run.")]
BaselineOpt = Annotated[
    str | None, typer.Option("--baseline", help="Score a baseline instead: kmeans-c, kmeans-s or autosc.")
]
KOpt = Annotated[int, typer.Option("--kmeans-k", help="K of the kmeans-c baseline.")]
MatchingOpt = Annotated[
    str, typer.Option("--matching", help="per-image (DiffSeg/DiffCut protocol) or dataset (PiCIE/STEGO).")
]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Evaluate only the first N images.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per UNet pass.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Method setting key=value (repeatable), e.g. --set pamr=false."),
]
DatasetOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--dataset-option",
        help="Dataset option key=value (repeatable): exact_reference=true (VOC, ADE20K); "
        "ignore_value=255, class_names=a,b,c, num_classes=N (folder).",
    ),
]
TauOpt = Annotated[float | None, typer.Option("--tau", help="DiffCut NCut threshold tau.")]
AlphaOpt = Annotated[float | None, typer.Option("--alpha", help="DiffCut affinity exponent alpha.")]
KlOpt = Annotated[float | None, typer.Option("--kl-threshold", help="DiffSeg KL merge threshold.")]
OpenVocabularyOpt = Annotated[
    bool,
    typer.Option(
        "--open-vocabulary",
        help="Name each segment with CLIP and score per-image mIoU (DiffCut Tab. 4; voc, context, coco-object). "
        "Needs the clip extra (open_clip).",
    ),
]
ClipModelOpt = Annotated[
    str | None, typer.Option("--clip-model", help="open_clip model naming the segments (convnext_large_d_320).")
]
ClipWeightsOpt = Annotated[
    str | None,
    typer.Option("--clip-weights", help="open_clip pretrained tag or local checkpoint (laion2b_s29b_b131k_ft_soup)."),
]
ClipSizeOpt = Annotated[
    int | None, typer.Option("--clip-size", help="Side of the image CLIP sees (1024; COCO-Object 2048).")
]
ClipExactOpt = Annotated[
    bool | None,
    typer.Option(
        "--clip-exact-reference/--clip-normalize",
        help="Feed CLIP the image without mean/std normalisation, as the official code (the -openvocab presets).",
    ),
]
EvalSizeOpt = Annotated[
    int | None, typer.Option("--eval-size", help="Open vocabulary: side at which predictions are scored (1024).")
]
OvPamrOpt = Annotated[
    bool | None,
    typer.Option(
        "--open-vocabulary-pamr/--no-open-vocabulary-pamr",
        help="Open vocabulary: force PAMR at the evaluation size on or off (default: on for DiffCut, off for DiffSeg).",
    ),
]


def evaluate_command(
    root: RootOpt,
    dataset: DatasetOpt = None,
    method: MethodOpt = None,
    preset: PresetOpt = None,
    model: ModelOpt = None,
    split: SplitOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Report JSON path (.csv and .md are written beside it).")
    ] = None,
    save_predictions: Annotated[
        Path | None,
        typer.Option("--save-predictions", help="Write <id>.png predictions and <id>_gt.png ground truth here."),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="auto, cpu, cuda:0, all (one process per GPU) or a comma list.")
    ] = "auto",
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    restart: RestartOpt = False,
    baseline: BaselineOpt = None,
    kmeans_k: KOpt = 6,
    matching: MatchingOpt = "per-image",
    limit: LimitOpt = None,
    batch_size: BatchOpt = 1,
    settings: SetOpt = None,
    dataset_option: DatasetOptionOpt = None,
    tau: TauOpt = None,
    alpha: AlphaOpt = None,
    kl_threshold: KlOpt = None,
    open_vocabulary: OpenVocabularyOpt = False,
    clip_model: ClipModelOpt = None,
    clip_weights: ClipWeightsOpt = None,
    clip_size: ClipSizeOpt = None,
    clip_exact_reference: ClipExactOpt = None,
    eval_size: EvalSizeOpt = None,
    open_vocabulary_pamr: OvPamrOpt = None,
) -> None:
    """Evaluate a method or a paper preset on a dataset and write a report."""
    try:
        from zeroseg.eval.api import evaluate_dataset

        devices = resolve_devices(device)
        with _ProgressBar(preset or method or "evaluate") as bar:
            report = evaluate_dataset(
                dataset,
                root,
                method=method,
                preset=preset,
                settings=_common_settings(settings, tau, alpha, kl_threshold),
                dataset_options=parse_assignments(dataset_option, "--dataset-option"),
                devices=devices,
                output=output,
                save_predictions=save_predictions,
                progress=bar,
                split=split,
                model=model,
                baseline=baseline,
                kmeans_k=kmeans_k,
                matching=matching,
                cache_dir=str(cache) if cache else None,
                use_cache=not no_cache,
                resume=not restart,
                limit=limit,
                batch_size=batch_size,
                open_vocabulary=open_vocabulary or None,
                clip_model=clip_model,
                clip_weights=clip_weights,
                clip_image_size=clip_size,
                clip_exact_reference=clip_exact_reference,
                eval_size=eval_size,
                open_vocabulary_pamr=open_vocabulary_pamr,
            )
    except ZeroSegError as exc:
        raise _fail(exc) from None
    _out.print(report.headline(), highlight=False)
    if report.annotators:
        for which in ("mean", "best"):
            stats = report.annotators[which]
            _out.print(
                f"  {which} over annotators: mIoU {100 * (stats['miou'] or 0):.2f}, "
                f"pixel accuracy {100 * (stats['pixel_accuracy'] or 0):.2f}",
                highlight=False,
            )
    if output is not None:
        _out.print(f"Report: {output} (+ .csv, .md)", highlight=False)


def sweep_command(
    root: RootOpt,
    dataset: DatasetOpt = None,
    method: MethodOpt = None,
    preset: PresetOpt = None,
    model: ModelOpt = None,
    split: SplitOpt = None,
    tau: Annotated[str | None, typer.Option("--tau", help="DiffCut tau values: start:stop:step or a,b,c.")] = None,
    alpha: Annotated[
        str | None, typer.Option("--alpha", help="DiffCut alpha values: start:stop:step or a,b,c.")
    ] = None,
    kl_threshold: Annotated[
        str | None,
        typer.Option("--kl-threshold", help="DiffSeg KL threshold values: start:stop:step or a,b,c."),
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", help="Any method setting: key=start:stop:step or key=a,b (repeatable)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Sweep JSON path (.csv rows and a .md table beside it).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or one torch device.")] = "auto",
    cache: CacheOpt = None,
    restart: RestartOpt = False,
    matching: MatchingOpt = "per-image",
    limit: LimitOpt = None,
    batch_size: BatchOpt = 1,
    settings: SetOpt = None,
    dataset_option: DatasetOptionOpt = None,
) -> None:
    """Evaluate a grid of method settings; the UNet runs once per image, later steps read the feature cache."""
    try:
        from zeroseg.eval.api import sweep_dataset
        from zeroseg.eval.report import append_csv, sweep_markdown

        values: dict[str, list[Any]] = {}
        for name, text in (("tau", tau), ("alpha", alpha), ("kl_threshold", kl_threshold)):
            if text is not None:
                values[name] = parse_values(text, f"--{name.replace('_', '-')}")
        for item in grid or []:
            key, sep, text = item.partition("=")
            if not sep:
                raise ConfigError(f"`--grid` expects key=values, got {item!r}")
            values[key.strip().replace("-", "_")] = parse_values(text, "--grid")
        if not values:
            raise ConfigError("nothing to sweep: give --tau, --alpha, --kl-threshold or --grid")
        devices = resolve_devices(device)
        if len(devices) != 1:
            raise ConfigError(f"`--device` for a sweep must be one device, got {devices}")
        with _ProgressBar("sweep") as bar:
            reports = sweep_dataset(
                dataset,
                root,
                values,
                method=method,
                preset=preset,
                settings=parse_assignments(settings, "--set"),
                dataset_options=parse_assignments(dataset_option, "--dataset-option"),
                device=devices[0],
                progress=bar,
                split=split,
                model=model,
                matching=matching,
                cache_dir=str(cache) if cache else None,
                resume=not restart,
                limit=limit,
                batch_size=batch_size,
            )
        table = sweep_markdown(reports, list(values))
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps([r.to_dict() for r in reports], indent=2), encoding="utf-8")
            append_csv(reports, output.with_suffix(".csv"))
            output.with_suffix(".md").write_text(table, encoding="utf-8")
    except ZeroSegError as exc:
        raise _fail(exc) from None
    _out.print(table, highlight=False, markup=False)
    if output is not None:
        _out.print(f"Sweep: {output} (+ .csv, .md)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` and ``sweep`` commands to ``app``."""
    app.command("evaluate")(evaluate_command)
    app.command("sweep")(sweep_command)
