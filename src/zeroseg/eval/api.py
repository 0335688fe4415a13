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
from zeroseg.eval.open_vocabulary import (
    METHOD_DEFAULTS,
    PROTOCOL_NAME,
    OpenVocabularyOptions,
    evaluate_open_vocabulary,
    make_options,
    vocabulary_name,
)
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
        open_vocabulary: open-vocabulary protocol options (``None`` = the unsupervised protocol).
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
    open_vocabulary: OpenVocabularyOptions | None = None


def make_plan(
    *,
    dataset: str | None,
    root: str | Path,
    method: str | None = None,
    preset: str | None = None,
    settings: dict[str, Any] | None = None,
    dataset_options: dict[str, Any] | None = None,
    open_vocabulary: bool | OpenVocabularyOptions | dict[str, Any] | None = None,
    clip_model: str | None = None,
    clip_weights: str | Path | None = None,
    clip_image_size: int | None = None,
    clip_exact_reference: bool | None = None,
    eval_size: int | None = None,
    open_vocabulary_pamr: bool | None = None,
    **options: Any,
) -> EvaluationPlan:
    """Merge a preset with explicit options (explicit ones win) into an :class:`EvaluationPlan`.

    Args:
        dataset / root / method / preset / settings / dataset_options: see :func:`evaluate_dataset`.
        open_vocabulary: evaluate with the open-vocabulary protocol (``True``, or its options as a dict or
            :class:`OpenVocabularyOptions`); implied by an ``*-openvocab`` preset.
        clip_model / clip_weights / clip_image_size / clip_exact_reference / eval_size / open_vocabulary_pamr:
            override the open-vocabulary options (``clip_exact_reference`` sets ``exact_reference`` and
            ``open_vocabulary_pamr`` sets ``pamr``).
        **options: the other :class:`EvaluationPlan` fields.

    Raises:
        ConfigError: when neither a method nor a preset is given, they disagree, or open-vocabulary options
            are given without the open-vocabulary protocol or for a dataset without a vocabulary.
    """
    merged_settings: dict[str, Any] = {}
    merged_options: dict[str, Any] = {}
    protocol = None
    chosen = None
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
    overrides = {
        "clip_model": clip_model,
        "clip_weights": None if clip_weights is None else str(clip_weights),
        "clip_image_size": clip_image_size,
        "exact_reference": clip_exact_reference,
        "eval_size": eval_size,
        "pamr": open_vocabulary_pamr,
    }
    ov_options = None
    if protocol == PROTOCOL_NAME or (open_vocabulary is not None and open_vocabulary is not False):
        if open_vocabulary is False:
            raise ConfigError(f"`preset` {preset!r} is an open-vocabulary row; `open_vocabulary` cannot be False")
        if chosen is not None and protocol != PROTOCOL_NAME:
            raise ConfigError(
                f"`preset` {preset!r} is an unsupervised protocol row; for open-vocabulary evaluation use one of "
                "diffcut-voc-openvocab, diffcut-context-openvocab, diffcut-coco-object-openvocab or no preset"
            )
        vocabulary_name(dataset)
        if options.get("baseline"):
            raise ConfigError("`baseline` cannot be scored with the open-vocabulary protocol (it names no segments)")
        if options.get("matching", "per-image") != "per-image":
            raise ConfigError("`matching` does not apply to the open-vocabulary protocol: classes come from CLIP")
        base = open_vocabulary if isinstance(open_vocabulary, OpenVocabularyOptions | dict) else None
        ov_options = make_options(chosen.open_vocabulary if chosen and base is None else base, **overrides)
        merged_settings = {**METHOD_DEFAULTS.get(method, {}), **merged_settings}
        protocol = PROTOCOL_NAME
    else:
        given = [name for name, value in overrides.items() if value is not None]
        if given:
            names = ", ".join(f"`{'clip_exact_reference' if n == 'exact_reference' else n}`" for n in given)
            raise ConfigError(f"{names} apply only to open-vocabulary evaluation; add `open_vocabulary=True`")
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
        open_vocabulary=ov_options,
        **options,
    )


def open_dataset(plan: EvaluationPlan) -> SegmentationDataset:
    """The plan's dataset."""
    return create_dataset(plan.dataset, plan.root, split=plan.split, **plan.dataset_options)


def build_segmenter(plan: EvaluationPlan, device: str = "cpu") -> Any:
    """The plan's segmenter (``zeroseg.create_segmenter``)."""
    from zeroseg import create_segmenter

    return create_segmenter(plan.method, model=plan.model, device=device, **plan.settings)


def build_namer(plan: EvaluationPlan, device: str = "cpu") -> Any:
    """The CLIP namer of an open-vocabulary plan, with its dataset's vocabulary (``zeroseg[clip]``).

    Raises:
        MissingDependencyError: open_clip is not installed.
        WeightsNotFoundError: the CLIP weights are neither cached nor downloadable.
    """
    from zeroseg.openvocab.naming import SegmentNamer

    options = plan.open_vocabulary or OpenVocabularyOptions()
    return SegmentNamer(
        options.clip_model,
        options.clip_weights,
        vocabulary=vocabulary_name(plan.dataset),
        device=device,
        exact_reference=options.exact_reference,
    )


def run_plan(
    plan: EvaluationPlan,
    *,
    segmenter: Any = None,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
    save_predictions: str | Path | None = None,
    shard: tuple[int, int] | None = None,
    namer: Any = None,
) -> EvaluationReport:
    """Run one plan (``segmenter`` given: reuse its loaded backbone, with the plan's settings applied;
    ``namer`` given: reuse that loaded CLIP for an open-vocabulary plan)."""
    dataset = open_dataset(plan)
    if plan.open_vocabulary is None:
        namer = None
    elif namer is None:
        namer = build_namer(plan, device)  # before the UNet, so a missing CLIP fails fast
    if segmenter is None:
        segmenter = build_segmenter(plan, device)
    elif plan.settings:
        segmenter = segmenter.with_config(**plan.settings)
    cache_root = Path(plan.cache_dir).expanduser() if plan.cache_dir else default_cache_dir()
    common: dict[str, Any] = {
        "cache": FeatureCache(cache_root) if plan.use_cache else None,
        "results_dir": cache_root / "runs",
        "restart": not plan.resume,
        "save_predictions": Path(save_predictions) if save_predictions else None,
        "limit": plan.limit,
        "batch_size": plan.batch_size,
        "progress": progress,
        "shard": shard,
        "preset": plan.preset,
    }
    if namer is not None:
        return evaluate_open_vocabulary(segmenter, dataset, namer, options=plan.open_vocabulary, **common)
    return evaluate(
        segmenter,
        dataset,
        protocol=get_protocol(plan.protocol or plan.method),
        baseline=Baseline(plan.baseline, k=plan.kmeans_k) if plan.baseline else None,
        matching=plan.matching,
        **common,
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
    namer: Any = None,
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
        namer: open vocabulary: an already built :class:`~zeroseg.openvocab.SegmentNamer` with the dataset's
            vocabulary to reuse (its ``exact_reference`` must match ``clip_exact_reference``).
        **options: the other :class:`EvaluationPlan` fields (split, model, baseline, kmeans_k, matching,
            cache_dir, use_cache, resume, limit, batch_size) and the open-vocabulary options of
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
    if len(devices) > 1:
        from zeroseg.eval.parallel import run_on_devices

        report = run_on_devices(plan, list(devices), progress=progress, save_predictions=save_predictions)
    else:
        report = run_plan(
            plan,
            segmenter=segmenter,
            namer=namer,
            device=devices[0],
            progress=progress,
            save_predictions=save_predictions,
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
