"""Open-vocabulary evaluation (DiffCut Tab. 4): segments named with CLIP, scored by per-image IoU.

Per image (official ``eval_diffcut_openvoc.py``, spec §4):

1. Centre square crop (the method's own protocol: side min(H, W) - 1 for DiffCut, min(H, W) for DiffSeg),
   bilinear to the method's input side, backbone capture (from the feature cache when stored).
2. Segments at the method's own side (DiffCut: 1024 = the official ``mask_size``; DiffSeg: 512), upsampled
   with nearest-exact to the evaluation side 1024, then refined there: a self-refining method by its own
   settings (DiffCut: on, 15 iterations, dilations 1..64 as the official code), others only when asked.
3. Each segment gets the argmax of CLIP's softmax over the benchmark's classes (image at 1024, COCO-Object
   bilinearly upsampled to 2048), see :func:`zeroseg.openvocab.predict_open_vocabulary`.
4. Ground truth: crop, nearest-exact to 1024, dataset ids -> vocabulary ids (background 0, as the official
   ``label + 1``). The datasets keep background as their *last* class (for the unsupervised background merge),
   the vocabularies as their *first*: :func:`vocabulary_lookup` maps one onto the other and checks the names.
5. Multiclass IoU per image (classes absent from both maps left out, torchmetrics ``JaccardIndex``), averaged
   over images.

The loop (resume, shards, batches, timing) is :func:`zeroseg.eval.loop.run`; this module is its scorer.

References:
    DiffCut (Couairon et al., NeurIPS 2024), Sec. 4.4, Tab. 4 and official ``eval_diffcut_openvoc.py``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError
from zeroseg.eval.cache import source_signature
from zeroseg.eval.datasets.base import IGNORE, Sample, SegmentationDataset
from zeroseg.eval.loop import RunningMean, RunTiming, Scored, Scorer, run
from zeroseg.eval.matching_scorer import refinement_of
from zeroseg.eval.metrics import class_overlaps, iou_per_class, nanmean
from zeroseg.eval.protocols import (
    OPEN_VOCABULARY,
    center_crop_square,
    open_vocabulary_protocol,
    resize_image,
    resize_labels,
)
from zeroseg.eval.report import EvaluationReport
from zeroseg.openvocab.protocol import CLIP_IMAGE_SIZE, EVAL_SIZE
from zeroseg.refine.stage import Refinement
from zeroseg.registry import get_method

if TYPE_CHECKING:
    from zeroseg.segmenter import Segmenter

PROTOCOL_NAME = OPEN_VOCABULARY

DATASET_VOCABULARIES = {"voc": "voc", "context": "context", "coco-object": "coco-object"}
"""Datasets with an open-vocabulary class set: dataset name -> shipped vocabulary (background at index 0)."""

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
            ``False`` forces PAMR at the evaluation size on or off (a method that does not refine itself gets
            the protocol's 15 iterations, dilations 1..64).
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


def open_vocabulary_settings(method: str) -> dict[str, Any]:
    """Method settings the open-vocabulary protocol starts from (explicit settings override them).

    The method's own (``MethodSpec.open_vocabulary_settings``), plus, for a self-refining method, the protocol's
    refinement defaults as its ``pamr_iters`` / ``pamr_dilations``.
    """
    spec = get_method(method)
    settings = dict(spec.open_vocabulary_settings)
    if spec.refines_itself:
        refinement = open_vocabulary_protocol(method).refinement
        settings = {"pamr_iters": refinement.iterations, "pamr_dilations": refinement.dilations, **settings}
    return settings


def segment_at_eval_size(
    segmenter: Segmenter,
    capture: dict[str, torch.Tensor],
    *,
    mask_side: int,
    eval_size: int,
) -> torch.Tensor:
    """Segments at the method's side, nearest-exact to ``eval_size`` (where the loop refines them)."""
    labels = segmenter.segment_capture(capture, output_size=(mask_side, mask_side)).long().cpu()
    if tuple(labels.shape) != (eval_size, eval_size):
        labels = F.interpolate(labels[None, None].float(), size=(eval_size, eval_size), mode="nearest-exact")
        labels = labels[0, 0].long()
    return labels


class NamingScorer(Scorer):
    """Segments named by CLIP over the benchmark's vocabulary, scored by per-image IoU (no matching).

    Args:
        segmenter: the segmenter (its ``pamr`` already set as ``options.pamr`` says, for a self-refining method).
        dataset: ``voc``, ``context`` or ``coco-object``.
        namer: a :class:`zeroseg.openvocab.SegmentNamer` with the dataset's vocabulary.
        options: CLIP, size and PAMR settings (``exact_reference`` must match the namer's).
    """

    timing_fields = ("clip_seconds",)

    def __init__(
        self, segmenter: Segmenter, dataset: SegmentationDataset, namer: Any, options: OpenVocabularyOptions
    ) -> None:
        self.segmenter = segmenter
        self.dataset = dataset
        self.namer = namer
        self.options = options
        self.vocabulary = vocabulary_name(dataset.name)
        self.class_names = list(namer.class_names)
        self.table = vocabulary_lookup(dataset, self.class_names)
        if bool(getattr(namer, "exact_reference", options.exact_reference)) != options.exact_reference:
            raise ConfigError(
                "`namer.exact_reference` and `options.exact_reference` disagree; build the namer from the options"
            )
        self.protocol = open_vocabulary_protocol(segmenter.method)
        self.input_side, _ = self.protocol.sizes(segmenter.image_size)
        self.eval_size, self.clip_side = options.eval_size, options.clip_side(dataset.name)
        self.self_refining = get_method(segmenter.method).refines_itself
        if self.self_refining:
            self.refinement = refinement_of(segmenter)
        else:
            self.refinement = self.protocol.refinement if options.pamr else None

    def check(self, dataset: SegmentationDataset) -> None:
        vocabulary_name(dataset.name)

    def run_settings(self) -> dict[str, Any]:
        weights = self.options.clip_weights
        return {
            "baseline": None,
            "matching": OPEN_VOCABULARY,
            "open_vocabulary": {**self.options.to_dict(), "clip_weights": _weights_identity(weights)},
        }

    def report_fields(self) -> dict[str, Any]:
        return {"protocol": OPEN_VOCABULARY, "matching": OPEN_VOCABULARY, "open_vocabulary": self.describe()}

    def prepare(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        array = center_crop_square(image, self.protocol.crop_margin)
        crop = torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1).float() / 255.0
        prepared = resize_image(crop, self.input_side)
        return prepared, prepared if self.input_side == self.eval_size else resize_image(crop, self.eval_size)

    def segment(self, sample: Sample, capture: dict[str, torch.Tensor]) -> tuple[torch.Tensor, np.ndarray]:
        segments = segment_at_eval_size(self.segmenter, capture, mask_side=self.input_side, eval_size=self.eval_size)
        labels = self.dataset.load_labels(sample)[0]
        return segments, prepare_target(
            labels, self.table, crop_margin=self.protocol.crop_margin, eval_size=self.eval_size
        )

    def score(self, labels: torch.Tensor, image: torch.Tensor, targets: Any, timing: RunTiming) -> Scored:
        from zeroseg.openvocab.protocol import predict_open_vocabulary

        t0 = time.perf_counter()
        named = predict_open_vocabulary(self.namer, image, labels, size=self.eval_size, clip_image_size=self.clip_side)
        timing.extra["clip_seconds"] += time.perf_counter() - t0
        pred = named.numpy().astype(np.int64)
        return Scored(score_image(targets, pred, len(self.class_names)), pred, [targets])

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return summarize(records, self.class_names)

    def running(self) -> Any:
        return RunningMean(lambda record: math.nan if record["iou"] is None else record["iou"])

    def describe(self) -> dict[str, Any]:
        """The report's ``open_vocabulary`` section: every setting that shaped the run, and how it was scored."""
        shown = self.refinement or self.protocol.refinement
        if self.self_refining:
            config = self.segmenter.config
            shown = Refinement(int(config.pamr_iters), tuple(int(d) for d in config.pamr_dilations))
        pamr = {
            "enabled": self.refinement is not None,
            "by": "method setting" if self.self_refining else "evaluation",
            **shown.to_dict(),
        }
        return {
            **self.options.to_dict(),
            "clip_image_size": self.clip_side,
            "vocabulary": self.vocabulary,
            "num_classes": len(self.class_names),
            "class_names": list(self.class_names),
            "background_class": 0,
            "crop_margin": self.protocol.crop_margin,
            "input_size": self.input_side,
            "mask_size": self.input_side,
            "pamr": pamr,
            "metric": METRIC_NOTE,
        }


def evaluate_open_vocabulary(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    namer: Any,
    *,
    options: OpenVocabularyOptions | None = None,
    **run_options: Any,
) -> EvaluationReport:
    """Score ``segmenter`` + CLIP naming on ``dataset`` with the open-vocabulary protocol.

    Args:
        segmenter: a segmenter (``zeroseg.create_segmenter``), settings already set.
        dataset: ``voc``, ``context`` or ``coco-object`` (:func:`zeroseg.eval.datasets.create_dataset`).
        namer: a :class:`zeroseg.openvocab.SegmentNamer` with the dataset's vocabulary.
        options: CLIP, size and PAMR settings (``exact_reference`` must match the namer's).
        **run_options: the run options of :func:`zeroseg.eval.loop.run`; the feature cache is shared with the
            unsupervised runs of the same method, and ``save_predictions`` receives ``<id>.png`` (predicted class
            ids at the evaluation size) and ``<id>_gt.png`` (vocabulary ids, background 0, ignore 255).

    Returns:
        The report: ``miou`` is the per-image IoU averaged over images, ``protocol`` is ``"open-vocabulary"``.

    Raises:
        ConfigError: the dataset has no vocabulary, the namer's classes do not line up with the dataset's, or a
            bad argument.
    """
    options = options or OpenVocabularyOptions()
    if options.pamr is not None and get_method(segmenter.method).refines_itself:
        if bool(segmenter.config.pamr) != options.pamr:
            segmenter = segmenter.with_config(pamr=options.pamr)
    return run(segmenter, dataset, NamingScorer(segmenter, dataset, namer, options), **run_options)
