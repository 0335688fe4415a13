"""One-call evaluation from names: what ``zeroseg evaluate`` and ``zeroseg sweep`` run.

Resolves a preset (paper table row) or a method + dataset into a plan (:mod:`zeroseg.eval.plan`), then runs it
on one device, on several (:mod:`zeroseg.eval.parallel`), or over a grid of settings with one loaded backbone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zeroseg.eval import plan as plans
from zeroseg.eval.loop import ProgressCallback
from zeroseg.eval.matching_scorer import expand_grid, sweep_steps
from zeroseg.eval.parallel import run_on_devices
from zeroseg.eval.plan import make_plan, run_plan
from zeroseg.eval.report import EvaluationReport, write_report

logger = logging.getLogger(__name__)


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
    namer: Any = None,
    **options: Any,
) -> EvaluationReport:
    """Evaluate a method (or a paper preset) on a dataset folder and optionally write the report files.

    Args:
        dataset: dataset name (``None`` when the preset names it).
        root: dataset folder in its official layout.
        method: a registered method (default ``diffcut``).
        preset: a paper table row (``diffseg-coco``, ``diffcut-voc``, ...), see ``zeroseg.eval.PRESETS``.
        settings: method settings overriding the preset's.
        dataset_options: dataset loader options overriding the preset's.
        devices: one device, or several (one worker process each; CUDA devices only).
        output: report path (``.json``; ``.csv`` and ``.md`` are written beside it).
        save_predictions: folder for the per-image prediction and ground-truth PNGs.
        progress: called after each image with (done, total, running mIoU).
        segmenter: an already built segmenter to reuse (its backbone is kept; settings are applied).
        namer: open vocabulary: an already built :class:`~zeroseg.openvocab.SegmentNamer` with the dataset's
            vocabulary to reuse (its ``exact_reference`` must match ``clip_exact_reference``).
        **options: the other :class:`EvaluationPlan` fields (split, model, baseline, kmeans_k, matching,
            cache_dir, use_cache, cache_storage, resume, limit, batch_size) and the open-vocabulary options of
            :func:`make_plan`: ``open_vocabulary=True`` names segments with CLIP and scores per-image mIoU
            (DiffCut Tab. 4), with ``clip_model``, ``clip_weights``, ``clip_image_size``,
            ``clip_exact_reference``, ``eval_size`` and ``open_vocabulary_pamr``.

    Returns:
        The report.
    """
    plan = make_plan(
        dataset=dataset, root=root, method=method, preset=preset, settings=settings,
        dataset_options=dataset_options, **options,
    )  # fmt: skip
    return evaluate_plan(
        plan, devices=devices, output=output, save_predictions=save_predictions, progress=progress,
        segmenter=segmenter, namer=namer,
    )  # fmt: skip


def evaluate_plan(
    plan: plans.EvaluationPlan,
    *,
    devices: Sequence[str] = ("cpu",),
    output: str | Path | None = None,
    save_predictions: str | Path | None = None,
    progress: ProgressCallback | None = None,
    segmenter: Any = None,
    namer: Any = None,
) -> EvaluationReport:
    """Run a validated plan (:func:`make_plan`) on one or several devices; arguments as :func:`evaluate_dataset`."""
    if len(devices) > 1:
        report = run_on_devices(plan, list(devices), progress=progress, save_predictions=save_predictions)
    else:
        report = run_plan(
            plan, segmenter=segmenter, namer=namer, device=devices[0], progress=progress,
            save_predictions=save_predictions,
        )  # fmt: skip
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
        method: a registered method (default ``diffcut``).
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
    base, steps = sweep_plans(
        dataset, root, grid, method=method, preset=preset, settings=settings, dataset_options=dataset_options,
        **options,
    )  # fmt: skip
    return run_sweep(base, steps, device=device, segmenter=segmenter, progress=progress)


def sweep_plans(
    dataset: str | None,
    root: str | Path,
    grid: dict[str, Sequence[Any]],
    *,
    method: str | None = None,
    preset: str | None = None,
    settings: dict[str, Any] | None = None,
    dataset_options: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[plans.EvaluationPlan, list[plans.EvaluationPlan]]:
    """The base plan and one validated plan per grid combination (arguments as :func:`sweep_dataset`)."""
    base = make_plan(
        dataset=dataset, root=root, method=method, preset=preset, settings=settings,
        dataset_options=dataset_options, **options,
    )  # fmt: skip
    steps = [
        make_plan(
            dataset=base.dataset,
            root=root,
            method=base.method,
            preset=preset,
            settings={**base.settings, **combo},
            dataset_options=base.dataset_options,
            **options,
        )  # fmt: skip
        for combo in expand_grid(grid)
    ]
    return base, steps


def run_sweep(
    base: plans.EvaluationPlan,
    steps: list[plans.EvaluationPlan],
    *,
    device: str = "cpu",
    segmenter: Any = None,
    progress: ProgressCallback | None = None,
) -> list[EvaluationReport]:
    """Run the steps of :func:`sweep_plans` with one loaded backbone (built from ``base`` unless given)."""
    if not base.use_cache:
        logger.warning("sweeping without the feature cache: every step reruns the backbone")
    if segmenter is None:
        segmenter = plans.build_segmenter(base, device)
    segmenters = sweep_steps(segmenter, [plan.settings for plan in steps])
    return [run_plan(plan, segmenter=step, progress=progress) for plan, step in zip(steps, segmenters, strict=True)]
