"""Many-to-one background merge for datasets with a background class (VOC, Context, COCO-Object).

A class-agnostic method splits the background into many segments while the ground truth has one background
class. DiffCut (``eval_diffcut.py``; paper Supp. H) therefore keeps, per image, the one cluster matched to each
foreground class and merges every other cluster into a single new background cluster before the final
matching. The official rule, followed here:

1. Hungarian matching over the N-1 foreground classes only (background pixels ignored).
2. A foreground class is "present" when ``hist[:, matched].max(1) > 0``; it keeps its matched cluster.
3. All other clusters become one new id ``pred.max() + 1``.
"""

from __future__ import annotations

import numpy as np

from zeroseg.errors import ConfigError
from zeroseg.eval.matching import confusion_matrix, match_clusters


def merge_background(pred: np.ndarray, gt: np.ndarray, *, num_classes: int, background_class: int) -> np.ndarray:
    """Merge every cluster not matched to a present foreground class into one background cluster.

    Args:
        pred: ``(H, W)`` cluster map (values >= 0).
        gt: ``(H, W)`` class map with ``background_class`` for background and values outside
            ``0..num_classes-1`` for ignored pixels.
        num_classes: number of classes N, background included.
        background_class: index of the background class in ``gt``.

    Returns:
        ``(H, W)`` int64 cluster map: kept clusters keep their ids, the rest share the id ``pred.max() + 1``.

    Raises:
        ConfigError: if ``background_class`` is not a class index.
    """
    if not 0 <= background_class < num_classes:
        raise ConfigError(f"`background_class` must be in 0..{num_classes - 1}, got {background_class}")
    pred = np.asarray(pred).astype(np.int64)
    gt = np.asarray(gt).astype(np.int64)
    # Foreground classes renumbered 0..N-2; background and ignore pixels become -1 (skipped by the histogram).
    fg = np.where(gt > background_class, gt - 1, gt)
    fg = np.where((gt == background_class) | (gt < 0) | (gt >= num_classes), -1, fg)
    hist = confusion_matrix(fg, pred, num_classes - 1)
    matched = match_clusters(hist)
    present = hist[:, matched].max(axis=1) > 0
    keep = np.unique(matched[present])
    merged_id = int(pred.max()) + 1 if pred.size else 0
    return np.where(np.isin(pred, keep), pred, merged_id)
