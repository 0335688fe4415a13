"""Evaluation plans: a preset (paper table row) or a method + dataset, resolved and validated before any model loads.

A plan is plain data (picklable, for worker processes). :func:`make_plan` merges a preset with explicit options
and validates the method's settings completely (:func:`zeroseg.options.build_config`); :func:`run_plan` builds
the dataset, the segmenter (and CLIP for open vocabulary) and runs the evaluation with the feature cache and a
resumable results log under the cache folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeroseg.errors import ConfigError
from zeroseg.eval.baselines import Baseline
from zeroseg.eval.cache import FeatureCache, check_storage, default_cache_dir
from zeroseg.eval.datasets import SegmentationDataset, create_dataset
from zeroseg.eval.loop import ProgressCallback, check_run_arguments
from zeroseg.eval.matching_scorer import MATCHINGS, evaluate
from zeroseg.eval.open_vocabulary import (
    PROTOCOL_NAME,
    OpenVocabularyOptions,
    evaluate_open_vocabulary,
    make_options,
    open_vocabulary_settings,
    vocabulary_name,
)
from zeroseg.eval.protocols import PRESETS, get_preset, get_protocol
from zeroseg.eval.report import EvaluationReport
from zeroseg.options import build_config
from zeroseg.registry import DEFAULT_METHOD, get_method


@dataclass
class EvaluationPlan:
    """Everything a run needs, resolved from a preset and explicit options (picklable, for worker processes).

    Attributes:
        method: a registered method (:func:`zeroseg.registry.list_methods`).
        dataset: dataset name.
        root: dataset folder.
        split: dataset split (``None`` = default).
        protocol: protocol name.
        settings: method settings for ``create_segmenter`` (validated, parsed values).
        dataset_options: dataset loader options.
        model: backbone (``None`` = the method's default).
        preset: preset name.
        baseline: baseline name, if any.
        kmeans_k: K of K-Means-C.
        matching: ``per-image`` or ``dataset``.
        cache_dir: cache folder (captures and results logs); ``None`` = default.
        use_cache: store and reuse captures.
        cache_storage: ``lossless`` (captures as computed) or ``float16`` (lossy, half the disk; part of the run
            id and reported).
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
    cache_storage: str = "lossless"
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
    method = method or DEFAULT_METHOD
    spec = get_method(method)
    baseline = options.get("baseline")
    if baseline is not None:
        Baseline(baseline, k=options.get("kmeans_k", 6))  # checks the name and K
        if baseline not in spec.baselines:
            offered = ", ".join(spec.baselines) or "none"
            raise ConfigError(f"`baseline` {baseline!r} does not run on {method} captures; {method} offers {offered}")
    if options.get("matching", "per-image") not in MATCHINGS:
        raise ConfigError(f"`matching` must be one of {', '.join(MATCHINGS)}, got {options['matching']!r}")
    check_run_arguments(limit=options.get("limit"), batch_size=options.get("batch_size", 1))
    check_storage(options.get("cache_storage", "lossless"))
    if options.get("cache_storage", "lossless") != "lossless" and not options.get("use_cache", True):
        raise ConfigError("needs the feature cache, which is turned off", setting="cache_storage")
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
            rows = ", ".join(name for name, row in PRESETS.items() if row.protocol == PROTOCOL_NAME)
            raise ConfigError(
                f"`preset` {preset!r} is an unsupervised protocol row; for open-vocabulary evaluation use one of "
                f"{rows} or no preset"
            )
        vocabulary_name(dataset)
        if options.get("baseline"):
            raise ConfigError("`baseline` cannot be scored with the open-vocabulary protocol (it names no segments)")
        if options.get("matching", "per-image") != "per-image":
            raise ConfigError("`matching` does not apply to the open-vocabulary protocol: classes come from CLIP")
        base = open_vocabulary if isinstance(open_vocabulary, OpenVocabularyOptions | dict) else None
        ov_options = make_options(chosen.open_vocabulary if chosen and base is None else base, **overrides)
        merged_settings = {**open_vocabulary_settings(method), **merged_settings}
        protocol = PROTOCOL_NAME
    else:
        given = [name for name, value in overrides.items() if value is not None]
        if given:
            names = ", ".join(f"`{'clip_exact_reference' if n == 'exact_reference' else n}`" for n in given)
            raise ConfigError(f"{names} apply only to open-vocabulary evaluation; add `open_vocabulary=True`")
    merged_settings.update({name: value for name, value in (settings or {}).items() if value is not None})
    config = build_config(method, merged_settings)  # every setting checked before any model loads
    merged_options.update(dataset_options or {})
    return EvaluationPlan(
        method=method,
        dataset=dataset,
        root=str(root),
        protocol=protocol or spec.protocol,
        settings={name: getattr(config, name) for name in merged_settings},
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
        "cache": FeatureCache(cache_root, storage=plan.cache_storage) if plan.use_cache else None,
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
        protocol=get_protocol(plan.protocol or get_method(plan.method).protocol),
        baseline=Baseline(plan.baseline, k=plan.kmeans_k) if plan.baseline else None,
        matching=plan.matching,
        **common,
    )
