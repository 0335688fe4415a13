"""Open-vocabulary evaluation (DiffCut Tab. 4): segments named with CLIP, scored by per-image IoU.

Per image (official ``eval_diffcut_openvoc.py``, spec §4):

1. Centre square crop (side min(H, W) - 1 for DiffCut, min(H, W) for DiffSeg), bilinear to the method's input
   side, UNet capture (from the feature cache when stored).
2. Segments at the method's own side (DiffCut: 1024 = the official ``mask_size``; DiffSeg: 512), upsampled
   with nearest-exact to the evaluation side 1024. PAMR at 1024: DiffCut's own ``pamr`` setting (on, 15
   iterations, dilations 1..64 as the official code); DiffSeg only when asked.
3. Each segment gets the argmax of CLIP's softmax over the benchmark's classes (image at 1024, COCO-Object
   bilinearly upsampled to 2048), see :func:`zeroseg.openvocab.predict_open_vocabulary`.
4. Ground truth: crop, nearest-exact to 1024, dataset ids -> vocabulary ids (background 0, as the official
   ``label + 1``). The datasets keep background as their *last* class (for the unsupervised background merge),
   the vocabularies as their *first*: :func:`vocabulary_lookup` maps one onto the other and checks the names.
5. Multiclass IoU per image (classes absent from both maps left out, torchmetrics ``JaccardIndex``), averaged
   over images.

References:
    DiffCut (Couairon et al., NeurIPS 2024), Sec. 4.4, Tab. 4 and official ``eval_diffcut_openvoc.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError
from zeroseg.eval.cache import FeatureCache, hash_key, source_signature
from zeroseg.eval.datasets.base import IGNORE, SegmentationDataset
from zeroseg.eval.metrics import class_overlaps, iou_per_class, nanmean
from zeroseg.eval.protocols import Protocol, center_crop_square, resize_image, resize_labels
from zeroseg.eval.report import EvaluationReport
from zeroseg.eval.run import (
    ProgressCallback,
    ResultsLog,
    RunTiming,
    Segmenter,
    load_captures,
    method_settings,
    save_prediction_pngs,
)
from zeroseg.eval.run import run_settings as unsupervised_run_settings

logger = logging.getLogger(__name__)

PROTOCOL_NAME = "open-vocabulary"

DATASET_VOCABULARIES = {"voc": "voc", "context": "context", "coco-object": "coco-object"}
"""Datasets with an open-vocabulary class set: dataset name -> shipped vocabulary (background at index 0)."""

EVAL_SIZE = 1024
"""Side at which predictions and targets are compared (official ``mask_size`` and label resize)."""

CLIP_IMAGE_SIZE = {"voc": 1024, "context": 1024, "coco-object": 2048}
"""CLIP input side per dataset at the official evaluation size (COCO-Object upsampled to 2048)."""

PAMR_ITERS = 15
PAMR_DILATIONS = (1, 2, 4, 8, 12, 24, 32, 64)
"""PAMR of the official open-vocabulary evaluation (always on there)."""

METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "diffcut": {"pamr": True, "pamr_iters": PAMR_ITERS, "pamr_dilations": PAMR_DILATIONS},
    "diffseg": {},
}
"""Method settings the open-vocabulary protocol starts from (explicit settings override them)."""

CROP_MARGINS = {"diffcut": 1, "diffseg": 0}
"""Centre-crop margin of each method's own protocol (DiffCut min(H, W) - 1, DiffSeg min(H, W))."""

METRIC_NOTE = (
    "miou: multiclass IoU per image (classes absent from both the prediction and the ground truth left out, "
    "torchmetrics JaccardIndex macro), averaged over images; per_class_iou: per class over the dataset "
    "(summed intersections over summed unions); pixel_accuracy: correct over valid pixels of the dataset"
)


@dataclass(frozen=True)
class OpenVocabularyOptions:
    """Settings of an open-vocabulary evaluation run.

    Attributes:
        clip_model: open_clip model naming the segments (``convnext_large_d_320``, official code).
        clip_weights: open_clip pretrained tag or a local checkpoint file (``laion2b_s29b_b131k_ft_soup``,
            official code); ``None`` for random weights (tests only).
        clip_image_size: CLIP input side; ``None`` = 1024, 2048 for COCO-Object (official code), scaled by
            ``eval_size / 1024``.
        eval_size: side of the square at which predictions and ground truth are compared (1024, official code).
        exact_reference: feed CLIP the image without its mean/std normalisation and pool vanished segments to a
            zero vector, as the official code does (needed to reproduce Tab. 4); by default the image is
            normalised as CLIP was trained.
        pamr: ``None`` = the method's own choice (DiffCut: its ``pamr`` setting, on; DiffSeg: off); ``True`` or
            ``False`` forces PAMR at the evaluation size on or off (DiffSeg: 15 iterations, dilations 1..64).
    """

    clip_model: str = "convnext_large_d_320"
    clip_weights: str | None = "laion2b_s29b_b131k_ft_soup"
    clip_image_size: int | None = None
    eval_size: int = EVAL_SIZE
    exact_reference: bool = False
    pamr: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.eval_size, bool) or not isinstance(self.eval_size, int) or self.eval_size < 32:
            raise ConfigError(f"`eval_size` must be an int >= 32, got {self.eval_size!r}")
        size = self.clip_image_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 32):
            raise ConfigError(f"`clip_image_size` must be an int >= 32 or None, got {size!r}")
        if not isinstance(self.clip_model, str) or not self.clip_model.strip():
            raise ConfigError(f"`clip_model` must be an open_clip model name, got {self.clip_model!r}")
        if self.clip_weights is not None:
            object.__setattr__(self, "clip_weights", str(self.clip_weights))

    def clip_side(self, dataset: str) -> int:
        """CLIP input side for ``dataset`` (explicit, or the official side scaled to :attr:`eval_size`)."""
        if self.clip_image_size is not None:
            return self.clip_image_size
        return CLIP_IMAGE_SIZE.get(dataset, EVAL_SIZE) * self.eval_size // EVAL_SIZE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return dataclasses.asdict(self)


def make_options(
    options: OpenVocabularyOptions | dict[str, Any] | None = None, **overrides: Any
) -> OpenVocabularyOptions:
    """Options from a dict or an instance, with ``overrides`` (``None`` values ignored) applied."""
    base = options if isinstance(options, OpenVocabularyOptions) else OpenVocabularyOptions(**(options or {}))
    changes = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in dataclasses.fields(OpenVocabularyOptions)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(
            f"unknown open-vocabulary option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
        )
    return dataclasses.replace(base, **changes)


def vocabulary_name(dataset: str) -> str:
    """The shipped vocabulary of ``dataset``.

    Raises:
        ConfigError: the dataset has no open-vocabulary class set.
    """
    try:
        return DATASET_VOCABULARIES[dataset]
    except KeyError:
        raise ConfigError(
            f"`dataset` {dataset!r} has no open-vocabulary class set; --open-vocabulary supports "
            f"{', '.join(DATASET_VOCABULARIES)} (DiffCut Tab. 4)"
        ) from None


def _normalise_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def vocabulary_lookup(dataset: SegmentationDataset, class_names: Sequence[str]) -> np.ndarray:
    """Table mapping the dataset's class ids to vocabulary class ids, after checking that the names agree.

    The dataset's background class (its last index) goes to the vocabulary's background (index 0) and
    foreground class ``c`` to ``c + 1``. Names are compared without case, spaces or punctuation
    (``diningtable`` = ``dining table``).

    Args:
        dataset: a dataset with a background class (``voc``, ``context``, ``coco-object``).
        class_names: the vocabulary's display names, background first.

    Returns:
        ``(N,)`` int64 table: vocabulary id of each dataset class id.

    Raises:
        ConfigError: class counts or names disagree, or the dataset has no background class.
    """
    num_classes = dataset.num_classes
    background = dataset.background_class
    if num_classes is None or background is None:
        raise ConfigError(f"{dataset.display_name} has no background class; it cannot use a benchmark vocabulary")
    if len(class_names) != num_classes:
        raise ConfigError(f"{dataset.display_name} has {num_classes} classes but the vocabulary has {len(class_names)}")
    foreground = [c for c in range(num_classes) if c != background]
    table = np.empty(num_classes, dtype=np.int64)
    table[background] = 0
    table[foreground] = np.arange(1, num_classes)
    mismatched = [
        (dataset.class_name(c), class_names[table[c]])
        for c in range(num_classes)
        if _normalise_name(dataset.class_name(c)) != _normalise_name(class_names[table[c]])
    ]
    if mismatched:
        raise ConfigError(
            f"{dataset.display_name} classes and the vocabulary disagree, e.g. dataset {mismatched[0][0]!r} vs "
            f"vocabulary {mismatched[0][1]!r} ({len(mismatched)} mismatches)"
        )
    return table


def to_vocabulary_ids(labels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Dataset class ids -> vocabulary ids through ``table``; :data:`IGNORE` (and anything unknown) stays ignore."""
    labels = np.asarray(labels).astype(np.int64)
    valid = (labels >= 0) & (labels < table.size)
    return np.where(valid, table[np.clip(labels, 0, table.size - 1)], IGNORE)


def prepare_target(labels: np.ndarray, table: np.ndarray, *, crop_margin: int, eval_size: int) -> np.ndarray:
    """Ground truth as the metric sees it: centre crop, nearest-exact to ``eval_size``, vocabulary ids.

    Args:
        labels: ``(H, W)`` dataset class map (:data:`IGNORE` for unscored pixels).
        table: :func:`vocabulary_lookup` table.
        crop_margin: the crop has side ``min(H, W) - crop_margin``.
        eval_size: output side (1024, official code).

    Returns:
        ``(eval_size, eval_size)`` int64 vocabulary ids, background 0, ignore :data:`IGNORE`.
    """
    crop = center_crop_square(np.asarray(labels), crop_margin)
    return to_vocabulary_ids(resize_labels(crop, eval_size, "nearest-exact"), table)


def protocol_for(method: str) -> Protocol:
    """The crop and input size of ``method`` under the open-vocabulary protocol (segments at the input side)."""
    if method not in CROP_MARGINS:
        raise ConfigError(
            f"`method` must be one of {', '.join(CROP_MARGINS)} for open-vocabulary evaluation, got {method!r}"
        )
    return Protocol(
        name=PROTOCOL_NAME,
        crop_margin=CROP_MARGINS[method],
        eval_divisor=1,
        label_steps=("eval",),
        eval_label_mode="nearest-exact",
        background_merge=False,
        pamr_after_merge=False,
    )


def score_image(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> dict[str, Any]:
    """One image's record: its IoU, per-class intersections and unions, correct and valid pixels."""
    inter, union = class_overlaps(gt, pred, num_classes)
    valid = (gt >= 0) & (gt < num_classes)
    present = union > 0
    iou = float((inter[present] / union[present]).mean()) if present.any() else None
    return {
        "iou": iou,
        "intersection": inter.tolist(),
        "union": union.tolist(),
        "correct": int((pred[valid] == gt[valid]).sum()),
        "valid": int(valid.sum()),
    }


def summarize(records: Iterable[dict[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    """Dataset metrics from per-image records: per-image mIoU averaged over images, per-class IoU, accuracy."""
    records = list(records)
    scores = np.array([math.nan if r["iou"] is None else r["iou"] for r in records], dtype=np.float64)
    num_classes = len(class_names)
    inter = np.zeros(num_classes, dtype=np.float64)
    union = np.zeros(num_classes, dtype=np.float64)
    correct = valid = 0
    for record in records:
        inter += np.asarray(record["intersection"], dtype=np.float64)
        union += np.asarray(record["union"], dtype=np.float64)
        correct += record["correct"]
        valid += record["valid"]
    ious = iou_per_class(inter, union - inter, np.zeros(num_classes))
    return {
        "miou": nanmean(scores),
        "pixel_accuracy": correct / valid if valid else math.nan,
        "per_class_iou": {
            name: (None if math.isnan(v) else float(v)) for name, v in zip(class_names, ious, strict=True)
        },
        "num_images": len(records),
    }


def _weights_identity(weights: str | None) -> Any:
    if weights is not None and Path(weights).is_file():
        return [weights, *source_signature(Path(weights)).tolist()]
    return weights


def run_settings(
    segmenter: Segmenter, dataset: SegmentationDataset, protocol: Protocol, options: OpenVocabularyOptions
) -> dict[str, Any]:
    """Everything that determines the scores of an open-vocabulary run (its hash names the results log)."""
    settings = unsupervised_run_settings(segmenter, dataset, protocol, None, "open-vocabulary")
    settings["open_vocabulary"] = {**options.to_dict(), "clip_weights": _weights_identity(options.clip_weights)}
    return settings


def _segment(
    segmenter: Segmenter,
    capture: dict[str, torch.Tensor],
    eval_image: torch.Tensor,
    *,
    mask_side: int,
    eval_size: int,
    extra_pamr: bool,
) -> torch.Tensor:
    """Segments at the method's side, nearest-exact to ``eval_size``, PAMR there when the harness adds it."""
    with torch.inference_mode():
        labels = segmenter.segment_capture(capture, output_size=(mask_side, mask_side), image=eval_image)
        labels = labels.long().cpu()
        if tuple(labels.shape) != (eval_size, eval_size):
            labels = F.interpolate(labels[None, None].float(), size=(eval_size, eval_size), mode="nearest-exact")
            labels = labels[0, 0].long()
        if extra_pamr:
            from zeroseg.refine.pamr import refine_labels

            labels = refine_labels(labels, eval_image, num_iter=PAMR_ITERS, dilations=PAMR_DILATIONS)
    return labels


def evaluate_open_vocabulary(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    namer: Any,
    *,
    options: OpenVocabularyOptions | None = None,
    cache: FeatureCache | None = None,
    results_dir: Path | None = None,
    save_predictions: Path | None = None,
    limit: int | None = None,
    batch_size: int = 1,
    progress: ProgressCallback | None = None,
    shard: tuple[int, int] | None = None,
    preset: str | None = None,
    restart: bool = False,
) -> EvaluationReport:
    """Score ``segmenter`` + CLIP naming on ``dataset`` with the open-vocabulary protocol.

    Args:
        segmenter: a DiffCut or DiffSeg segmenter (``zeroseg.create_segmenter``), settings already set.
        dataset: ``voc``, ``context`` or ``coco-object`` (:func:`zeroseg.eval.datasets.create_dataset`).
        namer: a :class:`zeroseg.openvocab.SegmentNamer` with the dataset's vocabulary.
        options: CLIP, size and PAMR settings (``exact_reference`` must match the namer's).
        cache: feature cache for the UNet captures (shared with the unsupervised runs of the same method).
        results_dir: folder of the resumable per-image results logs; ``None`` keeps results in memory only.
        save_predictions: folder receiving ``<id>.png`` (predicted class ids at the evaluation size) and
            ``<id>_gt.png`` (ground truth as scored: vocabulary ids, background 0, ignore 255).
        limit: evaluate only the first ``limit`` images.
        batch_size: images per UNet pass.
        progress: called after each image with (done, total, running mIoU).
        shard: ``(rank, world)`` evaluates images ``rank, rank + world, ...`` only.
        preset: preset name recorded in the report.
        restart: ignore and overwrite the results of an earlier identical run.

    Returns:
        The report: ``miou`` is the per-image IoU averaged over images, ``protocol`` is ``"open-vocabulary"``.

    Raises:
        ConfigError: the dataset has no vocabulary, the namer's classes do not line up with the dataset's, or a
            bad argument.
    """
    options = options or OpenVocabularyOptions()
    if batch_size < 1:
        raise ConfigError(f"`batch_size` must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ConfigError(f"`limit` must be >= 1, got {limit}")
    vocabulary = vocabulary_name(dataset.name)
    class_names = list(namer.class_names)
    table = vocabulary_lookup(dataset, class_names)
    if bool(getattr(namer, "exact_reference", options.exact_reference)) != options.exact_reference:
        raise ConfigError(
            "`namer.exact_reference` and `options.exact_reference` disagree; build the namer from the options"
        )
    has_own_pamr = hasattr(segmenter.config, "pamr")
    if options.pamr is not None and has_own_pamr and bool(segmenter.config.pamr) != options.pamr:
        segmenter = segmenter.with_config(pamr=options.pamr)
    extra_pamr = bool(options.pamr) and not has_own_pamr
    protocol = protocol_for(segmenter.method)
    input_side, _ = protocol.sizes(segmenter.image_size)
    eval_size, clip_side = options.eval_size, options.clip_side(dataset.name)
    settings = run_settings(segmenter, dataset, protocol, options)
    run_hash = hash_key(settings)[:24]
    log = ResultsLog(results_dir, run_hash, rank=None if shard is None else shard[0]) if results_dir else None
    if log is not None and restart:
        log.clear()
    done = log.read(own_only=restart) if log is not None else {}
    samples = list(dataset)[:limit] if limit else list(dataset)
    selected = samples if shard is None else samples[shard[0] :: shard[1]]
    pending = [s for s in selected if s.id not in done]
    if done:
        logger.info(
            "resuming run %s: %d of %d images already done", run_hash, len(selected) - len(pending), len(selected)
        )
    records = {s.id: done[s.id] for s in selected if s.id in done}
    scores = [r["iou"] for r in records.values() if r["iou"] is not None]
    cache_key = settings["capture"]
    timing = RunTiming()
    clip_seconds = 0.0
    start = time.perf_counter()
    for batch_start in range(0, len(pending), batch_size):
        batch = pending[batch_start : batch_start + batch_size]
        crops = []
        for sample in batch:
            array = center_crop_square(dataset.load_image(sample), protocol.crop_margin)
            crops.append(torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1).float() / 255.0)
        images = [resize_image(crop, input_side) for crop in crops]
        captures = load_captures(segmenter, batch, images, cache=cache, cache_key=cache_key, timing=timing)
        for sample, crop, image, capture in zip(batch, crops, images, captures, strict=True):
            t0 = time.perf_counter()
            eval_image = image if input_side == eval_size else resize_image(crop, eval_size)
            segments = _segment(
                segmenter, capture, eval_image, mask_side=input_side, eval_size=eval_size, extra_pamr=extra_pamr
            )
            t1 = time.perf_counter()
            pred = _name(namer, eval_image, segments, eval_size=eval_size, clip_side=clip_side)
            clip_seconds += time.perf_counter() - t1
            target = prepare_target(
                dataset.load_labels(sample)[0], table, crop_margin=protocol.crop_margin, eval_size=eval_size
            )
            record = {"id": sample.id, "run": run_hash, **score_image(target, pred, len(class_names))}
            timing.cluster_s += time.perf_counter() - t0
            timing.clustered += 1
            records[sample.id] = record
            if log is not None:
                log.append(record)
            if save_predictions is not None:
                save_prediction_pngs(Path(save_predictions), sample, pred, [target])
            if record["iou"] is not None:
                scores.append(record["iou"])
            if progress is not None:
                progress(len(records), len(selected), nanmean(np.array(scores)) if scores else math.nan)
    elapsed = time.perf_counter() - start
    ordered = [records[s.id] for s in selected if s.id in records]
    return EvaluationReport(
        **summarize(ordered, class_names),
        method=segmenter.method,
        preset=preset,
        dataset=dataset.settings(),
        settings=method_settings(segmenter),
        capture=cache_key["capture"],
        protocol=PROTOCOL_NAME,
        matching=PROTOCOL_NAME,
        open_vocabulary=describe(segmenter, options, vocabulary, class_names, protocol, input_side, clip_side),
        run_id=run_hash,
        timing={
            "seconds": elapsed,
            "images_per_second": timing.clustered / elapsed if elapsed > 0 else math.nan,
            "capture_seconds": timing.capture_s,
            "cluster_seconds": timing.cluster_s,
            "clip_seconds": clip_seconds,
            "images_captured": timing.captured,
            "images_from_cache": timing.cached,
            "images_resumed": len(selected) - len(pending),
        },
    )


def _name(
    namer: Any, eval_image: torch.Tensor, segments: torch.Tensor, *, eval_size: int, clip_side: int
) -> np.ndarray:
    from zeroseg.openvocab.protocol import predict_open_vocabulary

    prediction = predict_open_vocabulary(namer, eval_image, segments, size=eval_size, clip_image_size=clip_side)
    return prediction.numpy().astype(np.int64)


def describe(
    segmenter: Segmenter,
    options: OpenVocabularyOptions,
    vocabulary: str,
    class_names: Sequence[str],
    protocol: Protocol,
    input_side: int,
    clip_side: int,
) -> dict[str, Any]:
    """The report's ``open_vocabulary`` section: every setting that shaped the run, and how it was scored."""
    config = segmenter.config
    if hasattr(config, "pamr"):
        pamr = {
            "enabled": bool(config.pamr),
            "by": "method setting",
            "iterations": int(getattr(config, "pamr_iters", PAMR_ITERS)),
            "dilations": list(getattr(config, "pamr_dilations", PAMR_DILATIONS)),
        }
    else:
        pamr = {"enabled": bool(options.pamr), "by": "evaluation", "iterations": PAMR_ITERS,
                "dilations": list(PAMR_DILATIONS)}  # fmt: skip
    return {
        **options.to_dict(),
        "clip_image_size": clip_side,
        "vocabulary": vocabulary,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "background_class": 0,
        "crop_margin": protocol.crop_margin,
        "input_size": input_side,
        "mask_size": input_side,
        "pamr": pamr,
        "metric": METRIC_NOTE,
    }
