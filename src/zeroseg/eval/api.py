"""One-call evaluation from names: what ``zeroseg evaluate`` and ``zeroseg sweep`` run.

Resolves a preset (paper table row) or a method + dataset, builds the segmenter and the dataset, and runs
:func:`zeroseg.eval.run.evaluate` with the feature cache and a resumable results log under the cache folder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeroseg.errors import ConfigError
from zeroseg.eval.baselines import Baseline
from zeroseg.eval.cache import FeatureCache, default_cache_dir
from zeroseg.eval.datasets import SegmentationDataset, create_dataset
from zeroseg.eval.protocols import get_preset, get_protocol
from zeroseg.eval.report import EvaluationReport, write_report
from zeroseg.eval.run import ProgressCallback, evaluate, expand_grid

logger = logging.getLogger(__name__)

METHODS = ("diffseg", "diffcut")


@dataclass
class EvaluationPlan:
    """Everything a run needs, resolved from a preset and explicit options (picklable, for worker processes).

    Attributes:
        method: ``diffseg`` or ``diffcut``.
        dataset: dataset name.
        root: dataset folder.
        split: dataset split (``None`` = default).
        protocol: protocol name.
        settings: method settings for ``create_segmenter``.
        dataset_options: dataset loader options.
        model: backbone (``None`` = the method's default).
        preset: preset name.
        baseline: baseline name, if any.
        kmeans_k: K of K-Means-C.
        matching: ``per-image`` or ``dataset``.
        cache_dir: cache folder (captures and results logs); ``None`` = default.
        use_cache: store and reuse captures.
        resume: reuse results of images already done by an identical run (``False`` starts it afresh).
        limit: evaluate only the first images.
        batch_size: images per UNet pass.
    """

    method: str
    dataset: str
    root: str
    split: str | None = None
    protocol: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    preset: str | None = None
    baseline: str | None = None
    kmeans_k: int = 6
    matching: str = "per-image"
    cache_dir: str | None = None
    use_cache: bool = True
    resume: bool = True
    limit: int | None = None
    batch_size: int = 1


def make_plan(
    *,
    dataset: str | None,
    root: str | Path,
    method: str | None = None,
    preset: str | None = None,
    settings: dict[str, Any] | None = None,
    dataset_options: dict[str, Any] | None = None,
    **options: Any,
) -> EvaluationPlan:
    """Merge a preset with explicit options (explicit ones win) into an :class:`EvaluationPlan`.

    Raises:
        ConfigError: when neither a method nor a preset is given, or they disagree.
    """
    merged_settings: dict[str, Any] = {}
    merged_options: dict[str, Any] = {}
    protocol = None
    if preset is not None:
        chosen = get_preset(preset)
        if method is not None and method != chosen.method:
            raise ConfigError(f"`method` {method!r} contradicts `preset` {preset!r} (method {chosen.method!r})")
        if dataset is not None and dataset != chosen.dataset:
            raise ConfigError(f"`dataset` {dataset!r} contradicts `preset` {preset!r} (dataset {chosen.dataset!r})")
        method, dataset, protocol = chosen.method, chosen.dataset, chosen.protocol
        merged_settings.update(chosen.settings)
        merged_options.update(chosen.dataset_options)
    if method is None:
        method = "diffcut"  # the package default method (zeroseg.registry.DEFAULT_METHOD)
    if method not in METHODS:
        raise ConfigError(f"`method` must be one of {', '.join(METHODS)}, got {method!r}")
    if dataset is None:
        raise ConfigError("`dataset` is required when no `preset` is given")
    merged_settings.update(settings or {})
    merged_options.update(dataset_options or {})
    return EvaluationPlan(
        method=method,
        dataset=dataset,
        root=str(root),
        protocol=protocol or method,
        settings=merged_settings,
        dataset_options=merged_options,
        preset=preset,
        **options,
    )


def open_dataset(plan: EvaluationPlan) -> SegmentationDataset:
    """The plan's dataset."""
    return create_dataset(plan.dataset, plan.root, split=plan.split, **plan.dataset_options)


def build_segmenter(plan: EvaluationPlan, device: str = "cpu") -> Any:
    """The plan's segmenter (``zeroseg.create_segmenter``)."""
    from zeroseg import create_segmenter

    return create_segmenter(plan.method, model=plan.model, device=device, **plan.settings)


def run_plan(
    plan: EvaluationPlan,
    *,
    segmenter: Any = None,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
    save_predictions: str | Path | None = None,
    shard: tuple[int, int] | None = None,
) -> EvaluationReport:
    """Run one plan (``segmenter`` given: reuse its loaded backbone, with the plan's settings applied)."""
    dataset = open_dataset(plan)
    if segmenter is None:
        segmenter = build_segmenter(plan, device)
    elif plan.settings:
        segmenter = segmenter.with_config(**plan.settings)
    cache_root = Path(plan.cache_dir).expanduser() if plan.cache_dir else default_cache_dir()
    return evaluate(
        segmenter,
        dataset,
        protocol=get_protocol(plan.protocol or plan.method),
        baseline=Baseline(plan.baseline, k=plan.kmeans_k) if plan.baseline else None,
        matching=plan.matching,
        cache=FeatureCache(cache_root) if plan.use_cache else None,
        results_dir=cache_root / "runs",
        restart=not plan.resume,
        save_predictions=Path(save_predictions) if save_predictions else None,
        limit=plan.limit,
        batch_size=plan.batch_size,
        progress=progress,
        shard=shard,
        preset=plan.preset,
    )


def evaluate_dataset(
    dataset: str | None,
    root: str | Path,
    *,
    method: str | None = None,
    preset: str | None = None,
    settings: dict[str, Any] | None = None,
    dataset_options: dict[str, Any] | None = None,
    devices: Sequence[str] = ("cpu",),
    output: str | Path | None = None,
    save_predictions: str | Path | None = None,
    progress: ProgressCallback | None = None,
    segmenter: Any = None,
    **options: Any,
) -> EvaluationReport:
    """Evaluate a method (or a paper preset) on a dataset folder and optionally write the report files.

    Args:
        dataset: dataset name (``None`` when the preset names it).
        root: dataset folder in its official layout.
        method: ``diffseg`` or ``diffcut``.
        preset: a paper table row (``diffseg-coco``, ``diffcut-voc``, ...), see ``zeroseg.eval.PRESETS``.
        settings: method settings overriding the preset's.
        dataset_options: dataset loader options overriding the preset's.
        devices: one device, or several (one worker process each; CUDA devices only).
        output: report path (``.json``; ``.csv`` and ``.md`` are written beside it).
        save_predictions: folder for the per-image prediction and ground-truth PNGs.
        progress: called after each image with (done, total, running mIoU).
        segmenter: an already built segmenter to reuse (its backbone is kept; settings are applied).
        **options: the other :class:`EvaluationPlan` fields (split, model, baseline, kmeans_k, matching,
            cache_dir, use_cache, resume, limit, batch_size).

    Returns:
        The report.
    """
    plan = make_plan(
        dataset=dataset, root=root, method=method, preset=preset, settings=settings,
        dataset_options=dataset_options, **options,
    )  # fmt: skip
    if len(devices) > 1:
        from zeroseg.eval.parallel import run_on_devices

        report = run_on_devices(plan, list(devices), progress=progress, save_predictions=save_predictions)
    else:
        report = run_plan(
            plan, segmenter=segmenter, device=devices[0], progress=progress, save_predictions=save_predictions
        )
    if output is not None:
        write_report(report, output)
    return report


def sweep_dataset(
    dataset: str | None,
    root: str | Path,
    grid: dict[str, Sequence[Any]],
    *,
    method: str | None = None,
    preset: str | None = None,
    settings: dict[str, Any] | None = None,
    dataset_options: dict[str, Any] | None = None,
    device: str = "cpu",
    segmenter: Any = None,
    progress: ProgressCallback | None = None,
    **options: Any,
) -> list[EvaluationReport]:
    """Evaluate every combination of ``grid`` with one loaded backbone; only the first step runs the UNet.

    Args:
        dataset: dataset name (``None`` when the preset names it).
        root: dataset folder.
        grid: method setting -> values (e.g. ``{"tau": [0.3, 0.4], "alpha": [10]}``).
        method: ``diffseg`` or ``diffcut``.
        preset: base preset.
        settings: fixed method settings.
        dataset_options: dataset loader options.
        device: torch device.
        segmenter: an already built segmenter to reuse.
        progress: per-image callback.
        **options: the other :class:`EvaluationPlan` fields.

    Returns:
        One report per combination, in grid order.
    """
    base = make_plan(
        dataset=dataset, root=root, method=method, preset=preset, settings=settings,
        dataset_options=dataset_options, **options,
    )  # fmt: skip
    if not base.use_cache:
        logger.warning("sweeping without the feature cache: every step reruns the UNet")
    if segmenter is None:
        segmenter = build_segmenter(base, device)
    reports = []
    for combo in expand_grid(grid):
        plan = make_plan(
            dataset=base.dataset, root=root, method=base.method, preset=preset,
            settings={**base.settings, **combo}, dataset_options=base.dataset_options, **options,
        )  # fmt: skip
        reports.append(run_plan(plan, segmenter=segmenter, progress=progress))
    return reports
