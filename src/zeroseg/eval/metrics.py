"""Segmentation metrics: pixel accuracy and mIoU from TP/FP/FN accumulated over a dataset.

The DiffSeg and DiffCut papers sum per-image matched counts over the dataset, then compute
``IoU_c = TP_c / (TP_c + FP_c + FN_c)``, ``mIoU = nanmean_c IoU_c`` (classes never seen nor predicted are NaN and
left out) and ``ACC = sum TP / sum valid pixels`` (official ``benchmarks.ipynb`` / ``eval_diffcut.py``).
The open-vocabulary evaluation instead averages a per-image IoU over images (:func:`image_iou`).
"""

from __future__ import annotations

import math

import numpy as np

from zeroseg.errors import ConfigError
from zeroseg.eval.matching import MatchCounts


def iou_per_class(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """``TP / (TP + FP + FN)`` per class, NaN where the denominator is 0."""
    tp = np.asarray(tp, dtype=np.float64)
    denom = tp + np.asarray(fp, dtype=np.float64) + np.asarray(fn, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, tp / np.where(denom > 0, denom, 1.0), np.nan)


def nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN when there are none (no warning)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


class IoUAccumulator:
    """Sums TP/FP/FN per class and valid pixels over a dataset (additive, so runs can be resumed or merged).

    Args:
        num_classes: number of classes N.
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ConfigError(f"`num_classes` must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.tp = np.zeros(num_classes, dtype=np.float64)
        self.fp = np.zeros(num_classes, dtype=np.float64)
        self.fn = np.zeros(num_classes, dtype=np.float64)
        self.valid = 0.0

    def add(self, counts: MatchCounts, *, weight: float = 1.0) -> None:
        """Add one image's counts (``weight`` < 1 averages several annotators of one image)."""
        if counts.tp.shape != (self.num_classes,):
            raise ConfigError(f"`counts` has {counts.tp.shape[0]} classes but the accumulator has {self.num_classes}")
        self.tp += weight * counts.tp
        self.fp += weight * counts.fp
        self.fn += weight * counts.fn
        self.valid += weight * counts.valid

    def per_class_iou(self) -> np.ndarray:
        """``(N,)`` IoU per class, NaN for classes with no pixel in ground truth nor in matched clusters."""
        return iou_per_class(self.tp, self.fp, self.fn)

    @property
    def miou(self) -> float:
        """Mean IoU over classes (``np.nanmean``, official code), a fraction in [0, 1]."""
        return nanmean(self.per_class_iou())

    @property
    def pixel_accuracy(self) -> float:
        """Correctly matched pixels over valid pixels, a fraction in [0, 1] (NaN before any pixel)."""
        return float(self.tp.sum() / self.valid) if self.valid > 0 else math.nan


def image_scores(counts: MatchCounts) -> tuple[float, float]:
    """``(mIoU, pixel accuracy)`` of one image's counts (nanmean over the classes it involves)."""
    miou = nanmean(iou_per_class(counts.tp, counts.fp, counts.fn))
    acc = float(counts.tp.sum() / counts.valid) if counts.valid > 0 else math.nan
    return miou, acc


def class_overlaps(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class intersection and union of one image whose prediction already holds class ids.

    Ignore pixels (values outside ``0..num_classes-1`` in ``gt``) are skipped.

    Args:
        gt: ``(H, W)`` ground-truth class map.
        pred: ``(H, W)`` predicted class map, values in ``0..num_classes-1``.
        num_classes: number of classes N.

    Returns:
        ``(N,)`` int64 intersections and ``(N,)`` int64 unions (pixel counts).

    Raises:
        ConfigError: the maps differ in size, or ``pred`` holds a value outside the classes.
    """
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    if gt.shape != pred.shape:
        raise ConfigError(f"`pred` has {pred.size} pixels but `gt` has {gt.size}; they must match")
    keep = (gt >= 0) & (gt < num_classes)
    gt, pred = gt[keep], pred[keep]
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ConfigError(f"`pred` must hold class ids in 0..{num_classes - 1}, got {pred.min()}..{pred.max()}")
    hist = np.bincount(num_classes * gt + pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    inter = np.diag(hist).astype(np.int64)
    union = (hist.sum(0) + hist.sum(1) - inter).astype(np.int64)
    return inter, union


def image_iou(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Mean IoU of one image whose prediction already holds class ids (no matching).

    Mirrors torchmetrics ``JaccardIndex(task="multiclass", average="macro")`` as the DiffCut open-vocabulary
    evaluation uses it: a class absent from both maps (union 0) gets weight 0, i.e. is left out of the mean;
    a class only predicted, or only in the ground truth, counts with IoU 0. Ignore pixels (outside
    ``0..num_classes-1`` in ``gt``) are skipped.

    Args:
        gt: ``(H, W)`` ground-truth class map.
        pred: ``(H, W)`` predicted class map, values in ``0..num_classes-1``.
        num_classes: number of classes N.

    Returns:
        The image's mIoU in [0, 1], NaN if it has no valid pixel.
    """
    inter, union = class_overlaps(gt, pred, num_classes)
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else math.nan


def as_counts(tp: list[float], fp: list[float], fn: list[float], valid: float) -> MatchCounts:
    """Rebuild :class:`MatchCounts` from stored lists (resume from a results log)."""
    return MatchCounts(tp=np.asarray(tp), fp=np.asarray(fp), fn=np.asarray(fn), valid=valid)  # type: ignore[arg-type]
