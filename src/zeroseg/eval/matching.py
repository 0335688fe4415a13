"""Hungarian matching of predicted clusters to ground-truth classes.

Unsupervised segments carry no class, so each evaluation first matches clusters to classes. The DiffSeg and
DiffCut papers match **per image** (``hungarian_matching`` in both official repositories, after PiCIE's
``_fast_hist``); PiCIE and STEGO match once over the whole dataset. Both are here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from zeroseg.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchCounts:
    """Per-class pixel counts of one matched image (or of a whole dataset).

    Attributes:
        tp: ``(N,)`` pixels of class c inside the cluster matched to c.
        fp: ``(N,)`` pixels of the matched cluster that belong to another (valid) class.
        fn: ``(N,)`` pixels of class c outside its matched cluster.
        valid: number of pixels with a valid ground-truth class (ignore pixels excluded).
    """

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    valid: int


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Count pixels per (class, cluster) pair, as PiCIE's ``_fast_hist``.

    Args:
        gt: integer class map, any shape; values outside ``0..num_classes-1`` (ignore) are skipped.
        pred: non-negative integer cluster map of the same shape.
        num_classes: number of ground-truth classes N.

    Returns:
        ``(N, max(N, pred.max() + 1))`` int64 matrix; the extra columns keep clusters beyond N (official code).

    Raises:
        ConfigError: if the shapes differ or ``pred`` has negative values.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ConfigError(f"`pred` has shape {pred.shape} but `gt` has shape {gt.shape}; they must match")
    if num_classes < 1:
        raise ConfigError(f"`num_classes` must be >= 1, got {num_classes}")
    gt = gt.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    if pred.size and pred.min() < 0:
        raise ConfigError(f"`pred` must hold cluster ids >= 0, got a minimum of {pred.min()}")
    num_clusters = max(num_classes, int(pred.max()) + 1 if pred.size else 0)
    keep = (gt >= 0) & (gt < num_classes)
    flat = np.bincount(num_clusters * gt[keep] + pred[keep], minlength=num_classes * num_clusters)
    return flat.reshape(num_classes, num_clusters)


def match_clusters(hist: np.ndarray) -> np.ndarray:
    """Give each class one cluster maximising the total overlap (``linear_sum_assignment(maximize=True)``).

    Args:
        hist: ``(N, K)`` confusion matrix with ``K >= N``.

    Returns:
        ``(N,)`` int64 array: the cluster matched to each class.
    """
    rows, cols = linear_sum_assignment(hist, maximize=True)
    matched = np.empty(hist.shape[0], dtype=np.int64)
    matched[rows] = cols
    return matched


def counts_from_matching(hist: np.ndarray, matched: np.ndarray) -> MatchCounts:
    """TP/FP/FN per class given a matching; unmatched clusters add to FN only, never to FP (official code)."""
    classes = np.arange(hist.shape[0])
    tp = hist[classes, matched].astype(np.int64)
    fn = hist.sum(axis=1).astype(np.int64) - tp
    fp = hist[:, matched].sum(axis=0).astype(np.int64) - tp
    return MatchCounts(tp=tp, fp=fp, fn=fn, valid=int(hist.sum()))


def match_image(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> MatchCounts:
    """Per-image Hungarian matching, the protocol of DiffSeg and DiffCut (``hungarian_matching``).

    Args:
        gt: ``(H, W)`` class map, ignore pixels outside ``0..num_classes-1``.
        pred: ``(H, W)`` cluster map (values >= 0).
        num_classes: number of classes N.

    Returns:
        The image's :class:`MatchCounts`, to be summed over the dataset.
    """
    hist = confusion_matrix(gt, pred, num_classes)
    return counts_from_matching(hist, match_clusters(hist))


class DatasetMatcher:
    """Dataset-level matching (PiCIE/STEGO): sum one confusion matrix over all images, match once at the end.

    Cluster ids must then mean the same thing in every image (e.g. a K-Means fitted on the whole dataset).
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ConfigError(f"`num_classes` must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.hist = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add_hist(self, hist: np.ndarray) -> None:
        """Add an ``(N, K)`` confusion matrix, widening the running one when K grows."""
        if hist.shape[1] > self.hist.shape[1]:
            wider = np.zeros((self.num_classes, hist.shape[1]), dtype=np.int64)
            wider[:, : self.hist.shape[1]] = self.hist
            self.hist = wider
        self.hist[:, : hist.shape[1]] += hist

    def add(self, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """Add one image; returns its confusion matrix."""
        hist = confusion_matrix(gt, pred, self.num_classes)
        self.add_hist(hist)
        return hist

    def counts(self) -> MatchCounts:
        """Match clusters to classes on the summed matrix and return the dataset's counts."""
        return counts_from_matching(self.hist, match_clusters(self.hist))
