"""Relabelling of integer label maps."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_LOOKUP_MIN_SIZE = 1 << 16
"""Value ranges up to max(this, numel) are relabelled through a lookup table instead of a sort."""


def relabel_sequential(labels: torch.Tensor) -> torch.Tensor:
    """Map the values present in ``labels`` to 0..K-1, keeping their order.

    Non-negative labels with a small range (every label map here) go through a ``bincount`` lookup table,
    linear in the pixel count; anything else through ``torch.unique``, which sorts. Both give the same result.

    Args:
        labels: integer tensor of any shape.

    Returns:
        A ``torch.long`` tensor of the same shape whose values are contiguous from 0; the smallest input
        value becomes 0, the next one 1, and so on.
    """
    if labels.numel() > 0 and not labels.dtype.is_floating_point and labels.dtype != torch.bool:
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high < max(_LOOKUP_MIN_SIZE, labels.numel()):
            flat = labels.reshape(-1).to(torch.long)
            lookup = torch.cumsum(torch.bincount(flat, minlength=high + 1) > 0, 0) - 1
            return lookup[flat].reshape(labels.shape)
    _, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    return inverse.reshape(labels.shape).to(torch.long)


_SCAN_CHUNK = 1 << 16
"""Pixels looked at per step while finding each segment's first pixel."""


def canonical_labels(labels: Any) -> np.ndarray:
    """Renumber the segments of a label map in raster order of their first pixel: the segment of the top-left
    pixel is 0, the next segment met reading row by row is 1, and so on; negative (unlabelled) pixels stay.

    This is the one order of segment ids every result carries. A method's own order (NCut recursion, proposal
    order) follows float noise, so two runs that agree on every segment could write different ids; the first
    pixel of a segment moves only when the segment itself changes.

    Args:
        labels: ``(H, W)`` integer label map (array or tensor), any ids.

    Returns:
        An int32 array of the same shape with ids ``0..K-1`` (``labels`` itself when already canonical int32).
    """
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.dtype.kind not in "iu":
        raise TypeError(f"`labels` must be integers (got {array.dtype})")
    flat = array.reshape(-1)
    mask = flat >= 0
    whole = bool(mask.all())
    valid = flat if whole else flat[mask]
    if valid.size == 0:
        return np.array(array, dtype=np.int32)
    sparse = int(valid.max()) >= 4 * valid.size + _SCAN_CHUNK
    ids = np.unique(valid) if sparse else None  # far-apart ids: work on their ranks
    dense = valid if ids is None else np.searchsorted(ids, valid)
    count = int(dense.max()) + 1
    first = _first_positions(dense, count)
    present = np.flatnonzero(first < dense.size)
    lookup = np.full(count, -1, dtype=np.int32)
    lookup[present[np.argsort(first[present], kind="stable")]] = np.arange(present.size, dtype=np.int32)
    if whole and not sparse and array.dtype == np.int32 and np.array_equal(lookup, np.arange(count)):
        return array  # already canonical
    if whole:
        return lookup[dense].reshape(array.shape)
    out = flat.astype(np.int32)
    out[mask] = lookup[dense]
    return out.reshape(array.shape)


def _first_positions(dense: np.ndarray, count: int) -> np.ndarray:
    """Index of the first occurrence of every id ``0..count-1`` in ``dense`` (``dense.size`` where absent).

    Scans in chunks and stops once every id has been met (at once for contiguous ids, the usual case), so no
    temporary of the image's size is made; a chunk is sorted only when it holds an id not met before.
    """
    first = np.full(count, dense.size, dtype=np.int64)
    seen = np.zeros(count, dtype=bool)
    found = 0
    for start in range(0, dense.size, _SCAN_CHUNK):
        chunk = dense[start : start + _SCAN_CHUNK]
        if seen[np.bincount(chunk, minlength=count) > 0].all():
            continue
        values, index = np.unique(chunk, return_index=True)
        new = ~seen[values]
        first[values[new]] = start + index[new]
        seen[values[new]] = True
        found += int(new.sum())
        if found == count:
            break
    return first
