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

# Floats in one (rows, W, K) block of the upsampled proposals: 2**22 floats = 16 MiB per temporary.
_BLOCK_ELEMENTS = 1 << 22


def bilinear_taps(in_size: int, out_size: int, device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
    """Source indices and weights of 1-D bilinear resizing with half-pixel centres (``align_corners=False``).

    Same formula as ``torch.nn.functional.interpolate`` and ``tf.image.resize``: source coordinate
    ``(i + 0.5) * in/out - 0.5`` clamped at 0, neighbours ``i0`` and ``min(i0 + 1, in - 1)``.

    Returns:
        ``(i0, i1, w0, w1)``, each of shape ``(out_size,)``; indices long, weights float32.
    """
    scale = in_size / out_size
    src = ((torch.arange(out_size, dtype=torch.float32, device=device) + 0.5) * scale - 0.5).clamp_min(0.0)
    i0 = src.floor().to(torch.long).clamp_max(in_size - 1)
    i1 = (i0 + 1).clamp_max(in_size - 1)
    w1 = src - i0.to(torch.float32)
    return i0, i1, 1.0 - w1, w1


def proposals_to_labels(
    proposals: torch.Tensor, out_size: tuple[int, int], *, block_elements: int = _BLOCK_ELEMENTS
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
    num, in_h, in_w = proposals.shape
    maps = proposals.to(torch.float32)
    device = maps.device
    x0, x1, wx0, wx1 = bilinear_taps(in_w, width, device)
    # Width pass once, proposals innermost: (h, W, K), so the argmax reduces over contiguous memory.
    rows = (maps[:, :, x0] * wx0 + maps[:, :, x1] * wx1).permute(1, 2, 0).contiguous()
    y0, y1, wy0, wy1 = bilinear_taps(in_h, height, device)
    labels = torch.empty(height, width, dtype=torch.long, device=device)
    rows_per_block = max(1, block_elements // (width * num))
    for start in range(0, height, rows_per_block):
        stop = min(height, start + rows_per_block)
        block = rows[y0[start:stop]] * wy0[start:stop, None, None]
        block.addcmul_(rows[y1[start:stop]], wy1[start:stop, None, None])
        labels[start:stop] = block.argmax(-1)  # first maximum wins
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
