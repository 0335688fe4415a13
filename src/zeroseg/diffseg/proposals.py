"""Proposals to a label map: bilinear upsampling then argmax (the official "NMS", DiffSeg step 3).

The soft proposal maps are upsampled and the label of a pixel is the proposal with the largest value there;
integer labels are never resized. The output is produced in blocks of rows, so that a large
image never holds ``K * H * W`` floats at once.

References:
    Official code ``segmentor.py:generate_masks`` (``UpSampling2D`` bilinear, then ``argmax``).
"""

from __future__ import annotations

import numbers

import torch

from zeroseg.errors import ConfigError
from zeroseg.refine.upsample import BLOCK_ELEMENTS, bilinear_taps, upsample_argmax

__all__ = ["bilinear_taps", "proposals_to_labels"]


def proposals_to_labels(
    proposals: torch.Tensor, out_size: tuple[int, int], *, block_elements: int = BLOCK_ELEMENTS
) -> torch.Tensor:
    """Label map from soft proposals: bilinear upsample to ``out_size``, argmax over proposals, relabel.

    Upsampling is separable: the width pass runs once on the small ``(h, W, K)`` tensor; the height pass and
    the argmax run over blocks of output rows, so memory stays ``O(block_elements)`` whatever ``H``.

    Args:
        proposals: ``(K, s, s)`` (or ``(K, h, w)``) proposal maps.
        out_size: ``(H, W)`` of the label map.
        block_elements: floats in one ``(rows, W, K)`` block (memory cap; the result does not depend on it).

    Returns:
        ``(H, W)`` long tensor, values contiguous 0..K'-1 in proposal order (proposals that win no pixel are
        dropped, as :func:`zeroseg.refine.relabel_sequential`); the first proposal wins ties, as ``argmax``.

    Raises:
        ConfigError: on a malformed ``proposals`` or ``out_size``.
    """
    if proposals.dim() != 3 or proposals.shape[0] == 0 or 0 in proposals.shape:
        raise ConfigError(f"`proposals` must have shape (K, h, w) with K >= 1, got {tuple(proposals.shape)}")
    height, width = _check_size(out_size)
    num = proposals.shape[0]
    labels = upsample_argmax(proposals, (height, width), block_elements=block_elements)
    # contiguous relabelling (same result as relabel_sequential) through a K-entry lookup table
    present = torch.bincount(labels.view(-1), minlength=num) > 0
    lookup = torch.cumsum(present, 0) - 1
    return lookup[labels]


def _check_size(out_size: tuple[int, int]) -> tuple[int, int]:
    if (
        not isinstance(out_size, tuple | list)
        or len(out_size) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in out_size)
    ):
        raise ConfigError(f"`out_size` must be a pair of positive ints (H, W), got {out_size!r}")
    return int(out_size[0]), int(out_size[1])
