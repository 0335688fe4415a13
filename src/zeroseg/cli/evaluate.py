"""``zeroseg evaluate`` and ``zeroseg sweep``: reproduce the papers' tables, measure settings on any dataset.

The method options (``--tau``, ``--kl-threshold``, ``--exact-reference`` ...) are generated from the method
configs (:mod:`zeroseg.cli.options`) and parse as in ``zeroseg segment``. Heavy imports (torch, the evaluation
package) happen inside the commands, so ``zeroseg --help`` stays fast.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from zeroseg.cli.options import check_device, fail, method_choice, with_method_options
from zeroseg.errors import ConfigError, ZeroSegError
from zeroseg.options import Option

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


def split_assignments(items: list[str] | None, option: str) -> dict[str, str]:
    """``["key=value", ...]`` -> ``{key: "value"}`` (keys with ``-`` read as ``_``), values left as text."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"`{option}` expects key=value, got {item!r}")
        out[key.strip().replace("-", "_")] = value
    return out


def parse_assignments(items: list[str] | None, option: str) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict with parsed values (dataset options, whose types no config declares)."""
    return {key: parse_value(value) for key, value in split_assignments(items, option).items()}


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


def sweep_values(option: Option, text: str) -> list[Any]:
    """The values a sweep takes for one method option, in the option's own syntax.

    ``a;b;c`` lists values of any option; ``start:stop:step`` (stop included) is a range of a number option;
    a comma list is several values of a single-number option (``--tau 0.3,0.5``) but one value of a list option
    (``--kl-threshold 1.1,0.9,0.9``), exactly as ``zeroseg evaluate`` and ``zeroseg segment`` read it.
    """
    if ";" in text:
        return [option.parse(part) for part in text.split(";") if part.strip()]
    if ":" in text:
        return parse_values(text, option.cli)
    if option.kind in ("int", "float") and "," in text:
        return [option.parse(part) for part in text.split(",") if part.strip()]
    return [option.parse(text)]


def resolve_devices(device: str) -> list[str]:
    """``auto`` (first GPU, else CPU), ``all`` (every GPU), or a comma list of devices (``cuda:1``, ...)."""
    from zeroseg.eval.parallel import available_devices

    if device == "auto":
        return available_devices()[:1]
    if device == "all":
        return available_devices()
    devices = [check_device(d.strip()) for d in device.split(",") if d.strip() and d.strip() != "auto"]
    if not devices:
        raise ConfigError(
            f"must be auto, all, or a comma list of cpu, cuda, cuda:N, mps (got {device!r})", setting="device"
        )
    return devices


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


def method_of(method: str | None, preset: str | None) -> str:
    """The method a command runs: ``--method``, else the preset's, else the default method."""
    from zeroseg.registry import DEFAULT_METHOD

    if method is None and preset is not None:
        from zeroseg.eval.protocols import get_preset

        return get_preset(preset).method
    return method or DEFAULT_METHOD


def method_settings(values: dict[str, Any] | None, assignments: list[str] | None) -> dict[str, Any]:
    """Method settings from the generated options and ``--set key=value`` (both raw, parsed by the config)."""
    given = {name: value for name, value in (values or {}).items() if value is not None}
    return {**split_assignments(assignments, "--set"), **given}


DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", help="Dataset name (coco-stuff-27, cityscapes-27, voc, context, "
                             "coco-object, ade20k, bsds500, camvid, folder); implied by --preset.")
]  # fmt: skip
RootOpt = Annotated[Path, typer.Option("--root", help="Dataset folder, in the dataset's official layout.")]
MethodOpt = Annotated[str | None, method_choice()]
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
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not store or reuse backbone captures.")]
CacheStorageOpt = Annotated[
    str,
    typer.Option(
        "--cache-storage",
        help="How the feature cache stores captures: lossless (as computed, results equal fresh captures) or "
        "float16 (half the disk for float32 captures, lossy; a separate run id, named in the report).",
    ),
]
RestartOpt = Annotated[bool, typer.Option("--restart", help="Ignore results of an interrupted identical run.")]
BaselineOpt = Annotated[
    str | None, typer.Option("--baseline", help="Score a baseline instead: kmeans-c, kmeans-s or autosc.")
]
KOpt = Annotated[int, typer.Option("--kmeans-k", help="K of the kmeans-c baseline.")]
MatchingOpt = Annotated[
    str, typer.Option("--matching", help="per-image (DiffSeg/DiffCut protocol) or dataset (PiCIE/STEGO).")
]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Evaluate only the first N images.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per backbone pass.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Method setting key=value (repeatable), e.g. --set pamr=false (same as --no-pamr)."),
]
DatasetOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--dataset-option",
        help="Dataset option key=value (repeatable): exact_reference=true (VOC, ADE20K); "
        "ignore_value=255, class_names=a,b,c, num_classes=N (folder).",
    ),
]
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
        help="Open vocabulary: force PAMR at the evaluation size on or off (default: the method's own choice; "
        "on for DiffCut, off for methods that do not refine themselves).",
    ),
]


@with_method_options
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
        str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps, all (one process per GPU) or a comma list.")
    ] = "auto",
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    cache_storage: CacheStorageOpt = "lossless",
    restart: RestartOpt = False,
    baseline: BaselineOpt = None,
    kmeans_k: KOpt = 6,
    matching: MatchingOpt = "per-image",
    limit: LimitOpt = None,
    batch_size: BatchOpt = 1,
    settings: SetOpt = None,
    dataset_option: DatasetOptionOpt = None,
    open_vocabulary: OpenVocabularyOpt = False,
    clip_model: ClipModelOpt = None,
    clip_weights: ClipWeightsOpt = None,
    clip_size: ClipSizeOpt = None,
    clip_exact_reference: ClipExactOpt = None,
    eval_size: EvalSizeOpt = None,
    open_vocabulary_pamr: OvPamrOpt = None,
    method_values: dict[str, Any] | None = None,
) -> None:
    """Evaluate a method or a paper preset on a dataset and write a report."""
    chosen = method
    try:
        from zeroseg.eval.api import evaluate_plan
        from zeroseg.eval.plan import make_plan

        chosen = method_of(method, preset)
        devices = resolve_devices(device)
        plan_options = {
            "split": split, "model": model, "baseline": baseline, "kmeans_k": kmeans_k, "matching": matching,
            "cache_dir": str(cache) if cache else None, "use_cache": not no_cache, "cache_storage": cache_storage,
            "resume": not restart, "limit": limit, "batch_size": batch_size, "open_vocabulary": open_vocabulary or None,
            "clip_model": clip_model, "clip_weights": clip_weights, "clip_image_size": clip_size,
            "clip_exact_reference": clip_exact_reference, "eval_size": eval_size,
            "open_vocabulary_pamr": open_vocabulary_pamr,
        }  # fmt: skip
        arguments = {
            "method": method, "preset": preset, "settings": method_settings(method_values, settings),
            "dataset_options": parse_assignments(dataset_option, "--dataset-option"),
        }  # fmt: skip
        plan = make_plan(dataset=dataset, root=root, **arguments, **plan_options)  # every setting checked first
        with _ProgressBar(preset or chosen) as bar:
            report = evaluate_plan(
                plan, devices=devices, output=output, save_predictions=save_predictions, progress=bar
            )
    except ZeroSegError as exc:
        raise fail(exc, chosen) from None
    if report.resumed:
        _err.print(report.resume_line(), highlight=False, markup=False)
    for line in report.notices():
        _err.print(line, highlight=False, markup=False)
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


def sweep_grid(
    method: str, values: dict[str, Any] | None, assignments: list[str] | None, grid: list[str] | None
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Fixed settings and the grid of swept ones, from the method options, ``--set`` and ``--grid``.

    An option given several values (see :func:`sweep_values`) is swept; one value is a fixed setting.
    """
    from zeroseg.options import method_options

    own = {o.name: o for o in method_options(method)} | {o.flag.replace("-", "_"): o for o in method_options(method)}
    fixed: dict[str, Any] = {}
    swept: dict[str, list[Any]] = {}
    given = method_settings(values, assignments)
    for key, text in split_assignments(grid, "--grid").items():
        if key not in own:
            raise ConfigError(f"`--grid` names no {method} setting {key!r}; allowed: {', '.join(sorted(own))}")
        swept[own[key].name] = sweep_values(own[key], text)
    for name, value in given.items():
        option = own.get(name)
        parsed = sweep_values(option, value) if option is not None and isinstance(value, str) else [value]
        if len(parsed) > 1:
            swept[name] = parsed
        else:
            fixed[name] = parsed[0]
    return fixed, swept


@with_method_options
def sweep_command(
    root: RootOpt,
    dataset: DatasetOpt = None,
    method: MethodOpt = None,
    preset: PresetOpt = None,
    model: ModelOpt = None,
    split: SplitOpt = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid", help="Any method setting: key=start:stop:step, key=a,b or key=a;b for list settings (repeatable)."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Sweep JSON path (.csv rows and a .md table beside it).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps (one device).")] = "auto",
    cache: CacheOpt = None,
    cache_storage: CacheStorageOpt = "lossless",
    restart: RestartOpt = False,
    matching: MatchingOpt = "per-image",
    limit: LimitOpt = None,
    batch_size: BatchOpt = 1,
    settings: SetOpt = None,
    dataset_option: DatasetOptionOpt = None,
    method_values: dict[str, Any] | None = None,
) -> None:
    """Evaluate a grid of method settings; the backbone runs once per image, later steps read the feature cache.

    Any method option takes several values to sweep over: a range start:stop:step (--tau 0.3:0.8:0.05), a comma
    list of numbers (--tau 0.4,0.5) or values separated by ';' (--kl-threshold "1.1,0.9,0.9;1.0").
    """
    chosen = method
    try:
        from zeroseg.eval.api import run_sweep, sweep_plans
        from zeroseg.eval.report import append_csv, sweep_markdown

        chosen = method_of(method, preset)
        fixed, values = sweep_grid(chosen, method_values, settings, grid)
        if not values:
            raise ConfigError("nothing to sweep: give a method option several values (--tau 0.3:0.8:0.1) or --grid")
        devices = resolve_devices(device)
        if len(devices) != 1:
            raise ConfigError(f"must be one device for a sweep (got {', '.join(devices)})", setting="device")
        base, steps = sweep_plans(
            dataset, root, values, method=method, preset=preset, settings=fixed,
            dataset_options=parse_assignments(dataset_option, "--dataset-option"), split=split, model=model,
            matching=matching, cache_dir=str(cache) if cache else None, cache_storage=cache_storage,
            resume=not restart, limit=limit, batch_size=batch_size,
        )  # fmt: skip
        with _ProgressBar("sweep") as bar:
            reports = run_sweep(base, steps, device=devices[0], progress=bar)
        table = sweep_markdown(reports, list(values))
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps([r.to_dict() for r in reports], indent=2), encoding="utf-8")
            append_csv(reports, output.with_suffix(".csv"))
            output.with_suffix(".md").write_text(table, encoding="utf-8")
    except ZeroSegError as exc:
        raise fail(exc, chosen) from None
    for line in dict.fromkeys(line for report in reports for line in report.notices()):
        _err.print(line, highlight=False, markup=False)
    _out.print(table, highlight=False, markup=False)
    if output is not None:
        _out.print(f"Sweep: {output} (+ .csv, .md)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``evaluate`` and ``sweep`` commands to ``app``."""
    app.command("evaluate")(evaluate_command)
    app.command("sweep")(sweep_command)
