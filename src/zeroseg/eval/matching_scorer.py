"""Unsupervised evaluation (DiffSeg and DiffCut tables): clusters scored by Hungarian matching, and sweeps.

Per image: crop/resize (protocol) -> capture (from the feature cache when possible) -> clustering with the
segmenter's current settings (or a baseline) -> background merge -> refinement (PAMR, when the method's
settings ask for it; applied by the loop) -> matching. The loop itself (resume, shards, batches, timing) is
:func:`zeroseg.eval.loop.run`.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from zeroseg.errors import ConfigError
from zeroseg.eval.background import merge_background
from zeroseg.eval.baselines import Baseline
from zeroseg.eval.datasets.base import IGNORE, Sample, SegmentationDataset
from zeroseg.eval.loop import RunningMean, RunTiming, Scored, Scorer, run
from zeroseg.eval.matching import DatasetMatcher, confusion_matrix, counts_from_matching, match_clusters
from zeroseg.eval.metrics import IoUAccumulator, as_counts, image_scores, nanmean
from zeroseg.eval.protocols import Protocol, get_protocol, method_protocol, prepare_image, prepare_labels, resize_image
from zeroseg.eval.report import EvaluationReport
from zeroseg.refine.relabel import canonical_labels
from zeroseg.refine.stage import Refinement, method_refinement
from zeroseg.registry import get_method

if TYPE_CHECKING:
    from zeroseg.segmenter import Segmenter

logger = logging.getLogger(__name__)

MATCHINGS = ("per-image", "dataset")


def refinement_of(segmenter: Segmenter) -> Refinement | None:
    """The refinement evaluation applies to ``segmenter``'s labels: its own settings if it refines itself."""
    return method_refinement(segmenter.config) if get_method(segmenter.method).refines_itself else None


def _num_classes(dataset: SegmentationDataset, gt: np.ndarray) -> int:
    if dataset.num_classes is not None:
        return dataset.num_classes
    return max(1, int(gt.max()) + 1)  # per-image regions (BSDS500)


def _counts_record(counts: Any) -> dict[str, Any]:
    return {"tp": counts.tp.tolist(), "fp": counts.fp.tolist(), "fn": counts.fn.tolist(), "valid": int(counts.valid)}


def _as_counts(entry: dict[str, Any]) -> Any:
    return as_counts(entry["tp"], entry["fp"], entry["fn"], entry["valid"])


def score_image(pred: np.ndarray, gts: list[np.ndarray], dataset: SegmentationDataset, matching: str) -> dict[str, Any]:
    """The record of one image: matched counts per annotation (and its confusion matrix for dataset matching)."""
    annotations = []
    hist_record = None
    for gt in gts:
        hist = confusion_matrix(gt, pred, _num_classes(dataset, gt))
        annotations.append(_counts_record(counts_from_matching(hist, match_clusters(hist))))
        if matching == "dataset" and hist_record is None:
            rows, cols = np.nonzero(hist)
            hist_record = [[int(r), int(c), int(hist[r, c])] for r, c in zip(rows, cols, strict=True)]
    record: dict[str, Any] = {"counts": annotations}
    if hist_record is not None:
        record["hist"] = hist_record
    return record


def summarize(records: Iterable[dict[str, Any]], dataset: SegmentationDataset, matching: str) -> dict[str, Any]:
    """Dataset metrics from per-image records: mIoU, pixel accuracy, per-class IoU (and per-annotator stats)."""
    records = list(records)
    if dataset.multi_annotator:
        mean_iou, best_iou, mean_acc, best_acc = [], [], [], []
        for record in records:
            scores = [image_scores(_as_counts(c)) for c in record["counts"]]
            ious = np.array([s[0] for s in scores])
            accs = np.array([s[1] for s in scores])
            mean_iou.append(nanmean(ious))
            mean_acc.append(nanmean(accs))
            best_iou.append(float(np.nanmax(ious)) if np.isfinite(ious).any() else math.nan)
            best_acc.append(float(np.nanmax(accs)) if np.isfinite(accs).any() else math.nan)
        return {
            "miou": nanmean(np.array(mean_iou)),
            "pixel_accuracy": nanmean(np.array(mean_acc)),
            "per_class_iou": {},
            "num_images": len(records),
            "annotators": {
                "mean": {"miou": nanmean(np.array(mean_iou)), "pixel_accuracy": nanmean(np.array(mean_acc))},
                "best": {"miou": nanmean(np.array(best_iou)), "pixel_accuracy": nanmean(np.array(best_acc))},
                "note": "per-image Hungarian matching against each annotator; mIoU and accuracy averaged over "
                "images, then mean or best over the image's annotators",
            },
        }
    num_classes = dataset.num_classes or 1
    acc = IoUAccumulator(num_classes)
    if matching == "dataset":
        matcher = DatasetMatcher(num_classes)
        for record in records:
            width = 1 + max((c for _, c, _ in record.get("hist", [])), default=0)
            hist = np.zeros((num_classes, max(width, num_classes)), dtype=np.int64)
            for r, c, n in record.get("hist", []):
                hist[r, c] = n
            matcher.add_hist(hist)
        acc.add(matcher.counts())
    else:
        for record in records:
            acc.add(_as_counts(record["counts"][0]))
    ious = acc.per_class_iou()
    return {
        "miou": acc.miou,
        "pixel_accuracy": acc.pixel_accuracy,
        "per_class_iou": {dataset.class_name(i): (None if math.isnan(v) else float(v)) for i, v in enumerate(ious)},
        "num_images": len(records),
    }


class _RunningAccumulator:
    """Running dataset mIoU of per-image matched counts (the first annotation of each record)."""

    def __init__(self, num_classes: int) -> None:
        self.accumulator = IoUAccumulator(num_classes)

    def add(self, record: dict[str, Any]) -> None:
        self.accumulator.add(_as_counts(record["counts"][0]))

    @property
    def miou(self) -> float:
        return self.accumulator.miou


class MatchingScorer(Scorer):
    """Clusters matched to classes by the Hungarian algorithm (per image, or once over the dataset).

    Args:
        segmenter: the segmenter whose clustering (or whose capture, for a baseline) is scored.
        dataset: the dataset scored.
        protocol: crop, sizes, background merge and refinement defaults.
        baseline: score this baseline on the method's capture instead of the method's clustering.
        matching: ``per-image`` (DiffSeg/DiffCut protocol) or ``dataset`` (PiCIE/STEGO).
    """

    def __init__(
        self,
        segmenter: Segmenter,
        dataset: SegmentationDataset,
        protocol: Protocol,
        *,
        baseline: Baseline | None = None,
        matching: str = "per-image",
    ) -> None:
        if matching not in MATCHINGS:
            raise ConfigError(f"`matching` must be one of {', '.join(MATCHINGS)}, got {matching!r}")
        self.segmenter = segmenter
        self.dataset = dataset
        self.protocol = protocol
        self.baseline = baseline
        self.matching = matching
        self.input_side, self.eval_side = protocol.sizes(segmenter.image_size)
        self.refinement = refinement_of(segmenter)

    def check(self, dataset: SegmentationDataset) -> None:
        if self.matching == "dataset" and dataset.multi_annotator:
            raise ConfigError(f"`matching`='dataset' needs fixed classes; {dataset.display_name} has per-image regions")

    def run_settings(self) -> dict[str, Any]:
        return {"baseline": self.baseline.to_dict() if self.baseline else None, "matching": self.matching}

    def report_fields(self) -> dict[str, Any]:
        return {"protocol": self.protocol.to_dict(), **self.run_settings()}

    def prepare(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        prepared = prepare_image(image, self.protocol, self.input_side)
        return prepared, resize_image(prepared, self.eval_side)

    def segment(self, sample: Sample, capture: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[np.ndarray]]:
        gts = [
            prepare_labels(gt, self.protocol, self.input_side, self.eval_side)
            for gt in self.dataset.load_labels(sample)
        ]
        return torch.from_numpy(self.cluster(capture, gts[0])), gts

    def score(self, labels: torch.Tensor, image: torch.Tensor, targets: Any, timing: RunTiming) -> Scored:
        pred = labels.cpu().numpy().astype(np.int64)
        # Scored in the method's own segment order, as the official evaluation does (matching ties break by
        # order); the saved prediction carries the canonical ids every other output has.
        return Scored(score_image(pred, targets, self.dataset, self.matching), canonical_labels(pred), targets)

    def cluster(self, capture: dict[str, torch.Tensor], gt: np.ndarray) -> np.ndarray:
        """Cluster one capture at the evaluation size (the method, or a baseline) and merge the background."""
        size = (self.eval_side, self.eval_side)
        if self.baseline is not None:
            valid = gt[gt != IGNORE]
            labels = self.baseline.predict(capture, output_size=size, num_gt_classes=int(np.unique(valid).size))
        else:
            labels = self.segmenter.segment_capture(capture, output_size=size)
        pred = labels.cpu().numpy().astype(np.int64)
        if pred.shape != size:
            raise ConfigError(f"the segmenter returned labels of shape {pred.shape}, expected {size}")
        dataset = self.dataset
        if self.protocol.background_merge and dataset.background_class is not None:
            background = dataset.background_class
            pred = merge_background(pred, gt, num_classes=dataset.num_classes or 1, background_class=background)
        return pred

    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return summarize(records, self.dataset, self.matching)

    def running(self) -> Any:
        if self.dataset.multi_annotator or self.matching == "dataset":
            return RunningMean(lambda record: image_scores(_as_counts(record["counts"][0]))[0])
        return _RunningAccumulator(self.dataset.num_classes or 1)


def evaluate(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    *,
    protocol: Protocol | str | None = None,
    baseline: Baseline | None = None,
    matching: str = "per-image",
    **options: Any,
) -> EvaluationReport:
    """Score ``segmenter`` on ``dataset`` by Hungarian matching.

    Args:
        segmenter: a segmenter (``zeroseg.create_segmenter``), with its method settings already set.
        dataset: an opened dataset (:func:`zeroseg.eval.datasets.create_dataset`).
        protocol: protocol or its name; ``None`` = the protocol of the segmenter's method (registry).
        baseline: score a baseline on the method's capture instead of the method's clustering.
        matching: ``per-image`` (DiffSeg/DiffCut protocol) or ``dataset`` (PiCIE/STEGO).
        **options: the run options of :func:`zeroseg.eval.loop.run` (cache, results_dir, save_predictions,
            limit, batch_size, progress, shard, preset, restart); ``save_predictions`` receives ``<id>.png``
            (prediction at the evaluation size, before matching) and ``<id>_gt.png`` (ground truth as scored).

    Returns:
        The :class:`EvaluationReport` of all images done so far for this run (all of them unless sharded).

    Raises:
        ConfigError: for an unknown matching or protocol, or a bad run option.
    """
    if protocol is None:
        protocol = method_protocol(segmenter.method)
    elif isinstance(protocol, str):
        protocol = get_protocol(protocol)
    scorer = MatchingScorer(segmenter, dataset, protocol, baseline=baseline, matching=matching)
    return run(segmenter, dataset, scorer, **options)


def expand_grid(grid: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All combinations of a settings grid, in order (last key fastest)."""
    if not grid:
        return [{}]
    names = list(grid)
    for name in names:
        if len(grid[name]) == 0:
            raise ConfigError(f"sweep values for `{name}` are empty")
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def sweep_steps(segmenter: Segmenter, steps: Sequence[dict[str, Any]]) -> Iterator[Segmenter]:
    """One segmenter per step's settings, sharing the loaded backbone (every sweep runs its steps from here).

    This is the place for a method that answers several values of a setting from one computation (DiffCut's
    NCut tree cut at every ``tau``, :mod:`zeroseg.diffcut.tree`): today every step clusters afresh.
    """
    for settings in steps:
        logger.info("sweep step %s", settings)
        yield segmenter.with_config(**settings)


def sweep(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    grid: dict[str, Sequence[Any]],
    **options: Any,
) -> list[EvaluationReport]:
    """Evaluate every combination of ``grid`` (method settings); captures come from the shared cache.

    The first combination fills the feature cache, the others rerun only the clustering.
    Keyword options are those of :func:`evaluate`.
    """
    return [evaluate(step, dataset, **options) for step in sweep_steps(segmenter, expand_grid(grid))]
