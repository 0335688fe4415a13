"""COCO run-length encoding of masks, in numpy (the format of pycocotools' ``mask.encode``, without it).

Counts run over the mask in column-major order, starting with a run of zeros; the compressed string form
is COCO's (``maskApi.c`` ``rleToString``): each count, minus the count two places before it from the third
on, written as 5-bit groups with a continuation bit, offset by 48 into printable ASCII.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zeroseg.errors import ConfigError


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of an ``(H, W)`` boolean mask: ``{"size": [H, W], "counts": str}``."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ConfigError(f"`mask` must be an (H, W) array, got shape {array.shape}")
    return encode_label_rles(array.astype(bool).astype(np.int64), [1])[1]


def encode_label_rles(labels: np.ndarray, ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
    """COCO RLE of every segment of an ``(H, W)`` label map at once: ``{id: rle}``.

    The label map is scanned once (its runs in column-major order); each segment's counts follow from the
    runs that carry its id, so the cost is one pass plus a small amount per run, not one pass per segment.
    """
    array = np.asarray(labels)
    height, width = array.shape
    flat = array.ravel(order="F")
    total = flat.size
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]]) if total else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], total]
    values = flat[starts]
    wanted = [int(v) for v in np.unique(values)] if ids is None else [int(v) for v in ids]
    out = {}
    for segment_id in wanted:
        pick = values == segment_id
        run_starts, run_ends = starts[pick], ends[pick]
        counts = np.empty(2 * run_starts.size + 1, np.int64)
        counts[0::2] = np.r_[run_starts, total] - np.r_[0, run_ends]
        counts[1::2] = run_ends - run_starts
        if counts[-1] == 0 and counts.size > 1:
            counts = counts[:-1]
        out[segment_id] = {"size": [int(height), int(width)], "counts": _to_string(counts)}
    return out


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_rle`: the ``(H, W)`` bool mask (string or list counts)."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise ConfigError("an RLE must be a dict with `size` [H, W] and `counts`") from None
    runs = _from_string(counts) if isinstance(counts, (str, bytes)) else np.asarray(counts, np.int64)
    if runs.sum() != height * width or (runs < 0).any():
        raise ConfigError(f"RLE counts cover {int(runs.sum())} pixels, not {height}x{width}")
    values = np.zeros(runs.size, bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape((width, height)).T.copy()


def _to_string(counts: np.ndarray) -> str:
    chars = []
    values = counts.tolist()
    for i, x in enumerate(values):
        if i > 2:
            x -= values[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def _from_string(counts: str | bytes) -> np.ndarray:
    text = counts.decode("ascii") if isinstance(counts, bytes) else counts
    values: list[int] = []
    position = 0
    while position < len(text):
        x = shift = 0
        more = True
        while more:
            c = ord(text[position]) - 48
            x |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            position += 1
            shift += 5
            if not more and c & 0x10:
                x |= -1 << shift
        if len(values) > 2:
            x += values[-2]
        values.append(x)
    return np.asarray(values, np.int64)
