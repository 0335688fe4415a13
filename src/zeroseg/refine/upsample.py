"""Soft maps to labels at a larger size: separable bilinear upsampling, then argmax, in row blocks.

Used wherever labels at the output resolution come from soft maps computed at a smaller one (DiffSeg
proposals, PAMR-refined masks at a bounded working resolution): integer labels are never resized. A compiled
kernel (:mod:`zeroseg.refine.kernels`) computes every output pixel from the width pass of its two source rows
and keeps the argmax, so nothing of the output's size but the labels is written; the tensor form beside it
gives the same labels with row blocks that reuse two buffers allocated once (memory ``O(block_elements)``).
"""

from __future__ import annotations

import torch

from zeroseg.refine.compiled import compiled_kernels

BLOCK_ELEMENTS = 1 << 22
"""Floats in one (rows, W, K) block of the upsampled maps: 2**22 floats = 16 MiB per buffer."""


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


def upsample_argmax(
    maps: torch.Tensor, out_size: tuple[int, int], *, block_elements: int = BLOCK_ELEMENTS
) -> torch.Tensor:
    """Index of the largest map at every pixel of ``maps`` bilinearly upsampled to ``out_size``.

    The width pass runs once on the small ``(h, W, K)`` tensor (maps innermost, so the argmax reduces over
    contiguous memory); the height pass and the argmax run over blocks of output rows.

    Args:
        maps: ``(K, h, w)`` float maps, K >= 1.
        out_size: ``(H, W)``.
        block_elements: floats in one ``(rows, W, K)`` block (memory cap; the result does not depend on it).

    Returns:
        ``(H, W)`` long tensor of indices in 0..K-1; the first map wins ties, as ``argmax``.
    """
    height, width = int(out_size[0]), int(out_size[1])
    num, in_h, in_w = maps.shape
    maps = maps.to(torch.float32)
    device = maps.device
    x0, x1, wx0, wx1 = bilinear_taps(in_w, width, device)
    kernels = compiled_kernels() if device.type == "cpu" else None
    if kernels is not None:
        labels = torch.empty(height, width, dtype=torch.long, device=device)
        taps = [t.numpy() for t in (x0, x1, wx0, wx1, *bilinear_taps(in_h, height, device))]
        kernels.run_rows(kernels.upsample_argmax, (0, height), maps.contiguous().numpy(), *taps, labels.numpy())
        return labels
    rows = (maps[:, :, x0] * wx0 + maps[:, :, x1] * wx1).permute(1, 2, 0).contiguous()
    y0, y1, wy0, wy1 = bilinear_taps(in_h, height, device)
    labels = torch.empty(height, width, dtype=torch.long, device=device)
    rows_per_block = min(height, max(1, block_elements // (width * num)))
    low = torch.empty(rows_per_block, width, num, dtype=torch.float32, device=device)
    high = torch.empty_like(low)
    for start in range(0, height, rows_per_block):
        stop = min(height, start + rows_per_block)
        block, upper = low[: stop - start], high[: stop - start]
        torch.index_select(rows, 0, y0[start:stop], out=block).mul_(wy0[start:stop, None, None])
        torch.index_select(rows, 0, y1[start:stop], out=upper)
        block.addcmul_(upper, wy1[start:stop, None, None])
        torch.argmax(block, -1, out=labels[start:stop])
    return labels
