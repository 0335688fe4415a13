"""Pixel-Adaptive Mask Refinement (PAMR) and the 3x3 median filter that follows it.

PAMR (Araslanov & Roth, CVPR 2020) smooths soft masks with image-dependent weights: every pixel becomes a
weighted average of its 8 neighbours at several dilations, with weights from a softmax over colour
differences normalised by the local colour spread. DiffCut runs it on one-hot label masks and then applies
``scipy.ndimage.median_filter(labels, 3)`` (official ``tools/pamr.py``, copied from visinf/1-stage-wseg).

The official module builds every shifted copy at once with dilated convolutions ((K, 8 * |dilations|, H, W)
per iteration). Here the masks live in one replicate-padded buffer, each neighbour is a strided view of it,
and the weighted sum is accumulated with ``addcmul_`` band by band, so each band of the output stays in cache
while its 8 * |dilations| neighbours are added.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError
from zeroseg.refine.relabel import relabel_sequential

logger = logging.getLogger(__name__)

NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""The 8 off-centre taps of a 3x3 kernel, (row, column) offsets before dilation."""

BAND_ELEMENTS = 1 << 18
"""Output elements (masks x rows x columns) accumulated per band during the iterations (1 MB float32)."""

AFFINITY_BAND_PIXELS = 1 << 15
"""Pixels per band while computing the neighbour weights (bounds the (P, rows, W) temporaries)."""


def _check_dilations(dilations: Sequence[int]) -> tuple[int, ...]:
    values = tuple(dilations)
    if not values or any(isinstance(d, bool) or int(d) != d or d < 1 for d in values):
        raise ConfigError(f"`dilations` must be a non-empty sequence of positive integers, got {dilations!r}")
    return tuple(int(d) for d in values)


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ConfigError(f"`image` must be a (3, H, W) float tensor in [0, 1], got {shape}")
    if not image.is_floating_point():
        raise ConfigError(f"`image` must be a float tensor in [0, 1], got dtype {image.dtype}")


def _offsets(dilations: tuple[int, ...]) -> list[tuple[int, int]]:
    return [(dy * d, dx * d) for d in dilations for dy, dx in NEIGHBOURS]


def _replicate_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """(K, H, W) -> contiguous (K, H + 2 pad, W + 2 pad) with replicated borders."""
    return F.pad(x[None], (pad, pad, pad, pad), mode="replicate")[0].contiguous()


def _fill_border(buffer: torch.Tensor, pad: int) -> None:
    """Re-replicate the borders of a padded (K, Hp, Wp) buffer from its interior, in place."""
    if pad == 0:
        return
    height, width = buffer.shape[1] - 2 * pad, buffer.shape[2] - 2 * pad
    inner = buffer[:, :, pad : pad + width]
    inner[:, :pad] = inner[:, pad : pad + 1]
    inner[:, pad + height :] = inner[:, pad + height - 1 : pad + height]
    buffer[:, :, :pad] = buffer[:, :, pad : pad + 1]
    buffer[:, :, pad + width :] = buffer[:, :, pad + width - 1 : pad + width]


def local_affinity(image: torch.Tensor, dilations: Sequence[int]) -> torch.Tensor:
    """Neighbour weights of PAMR: a softmax over the 8 * |dilations| neighbours of every pixel.

    Per colour channel c, sigma_c is the unbiased standard deviation of the 9 * |dilations| samples of the
    dilated 3x3 windows (the centre counted once per dilation), taken with replicate padding. The logit of
    neighbour p is ``-|I_c - I_p,c| / (1e-8 + 0.1 * sigma_c)`` averaged over the 3 channels.

    Args:
        image: (3, H, W) float image in [0, 1] (un-normalised, as in the official code).
        dilations: dilation of each 3x3 kernel.

    Returns:
        (P, H, W) float32 weights summing to 1 over P = 8 * |dilations|, in the order of the dilations,
        then row-major taps without the centre.
    """
    _check_image(image)
    dils = _check_dilations(dilations)
    offsets = _offsets(dils)
    pad = max(dils)
    height, width = image.shape[1:]
    padded = _replicate_pad(image.to(torch.float32), pad)
    num_samples = 9 * len(dils)
    weights = torch.empty(len(offsets), height, width, dtype=torch.float32)
    band = max(1, AFFINITY_BAND_PIXELS // width)
    for start in range(0, height, band):
        stop = min(height, start + band)

        def view(dy: int, dx: int, start: int = start, stop: int = stop) -> torch.Tensor:
            return padded[:, pad + start + dy : pad + stop + dy, pad + dx : pad + dx + width]

        centre = view(0, 0)
        total = centre * len(dils)
        for dy, dx in offsets:
            total += view(dy, dx)
        mean = total / num_samples
        spread = (centre - mean).square_().mul_(len(dils))
        for dy, dx in offsets:
            spread += (view(dy, dx) - mean).square_()
        sigma = spread.div_(num_samples - 1).sqrt_()
        denom = sigma.mul_(0.1).add_(1e-8)
        logits = weights[:, start:stop]
        for index, (dy, dx) in enumerate(offsets):
            diff = (centre - view(dy, dx)).abs_().div_(denom)
            torch.sum(diff, dim=0, out=logits[index])
        logits.mul_(-1.0 / 3.0)
        weights[:, start:stop] = torch.softmax(logits, dim=0)
    return weights


def pamr(image: torch.Tensor, masks: torch.Tensor, *, num_iter: int, dilations: Sequence[int]) -> torch.Tensor:
    """Refine soft masks with PAMR: ``m <- sum_p a_p * m_shift(p)``, ``num_iter`` times.

    Args:
        image: (3, H, W) float image in [0, 1].
        masks: (K, H, W) float masks at the image size (e.g. one-hot labels).
        num_iter: number of propagation steps (10 at 128x128 for the benchmarks, 15 open-vocabulary and 30
            in the demo, official code).
        dilations: kernel dilations ((1, 2, 4, 8) benchmarks, (1, 2, 4, 8, 12, 24, 32, 64) open-vocabulary
            and demo, official code).

    Returns:
        (K, H, W) float32 refined masks.

    Raises:
        ConfigError: on shapes that do not match or a negative ``num_iter``.
    """
    _check_image(image)
    dils = _check_dilations(dilations)
    if isinstance(num_iter, bool) or int(num_iter) != num_iter or num_iter < 0:
        raise ConfigError(f"`num_iter` must be a non-negative integer, got {num_iter!r}")
    if masks.dim() != 3 or masks.shape[1:] != image.shape[1:]:
        raise ConfigError(
            f"`masks` must be (K, H, W) with the image size {tuple(image.shape[1:])}, got {tuple(masks.shape)}"
        )
    masks = masks.to(torch.float32)
    if num_iter == 0 or masks.shape[0] == 0:
        return masks.clone()
    weights = local_affinity(image, dils)
    offsets = _offsets(dils)
    pad = max(dils)
    num_masks, height, width = masks.shape
    source = _replicate_pad(masks, pad)
    target = torch.empty_like(source)
    band = max(1, BAND_ELEMENTS // (num_masks * width))
    for _ in range(int(num_iter)):
        for start in range(0, height, band):
            stop = min(height, start + band)
            out = target[:, pad + start : pad + stop, pad : pad + width]
            for index, (dy, dx) in enumerate(offsets):
                shifted = source[:, pad + start + dy : pad + stop + dy, pad + dx : pad + dx + width]
                if index == 0:
                    torch.mul(shifted, weights[index, start:stop], out=out)
                else:
                    out.addcmul_(shifted, weights[index, start:stop])
        _fill_border(target, pad)
        source, target = target, source
    return source[:, pad : pad + height, pad : pad + width].contiguous()


def _sort_pair(values: list[torch.Tensor], i: int, j: int) -> None:
    low = torch.minimum(values[i], values[j])
    values[j] = torch.maximum(values[i], values[j])
    values[i] = low


# Median-of-9 selection network (19 compare-exchanges; Paeth, Graphics Gems; "opt_med9").
_MEDIAN9_NETWORK = (
    (1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3),
    (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2),
)  # fmt: skip


def median_filter3(labels: torch.Tensor) -> torch.Tensor:
    """3x3 median of a 2-D label map, equal to ``scipy.ndimage.median_filter(labels, 3)``.

    scipy's default ``mode='reflect'`` repeats the edge pixel for a 1-pixel border, i.e. replicate padding.
    The official code filters a (1, H, W) array with a 3x3x3 window; along the singleton axis the window
    holds three copies of the same slice, so the result is the 3x3 median.

    Args:
        labels: (H, W) integer labels.

    Returns:
        (H, W) tensor of the same dtype.
    """
    if labels.dim() != 2:
        raise ConfigError(f"`labels` must be a 2-D (H, W) tensor, got shape {tuple(labels.shape)}")
    height, width = labels.shape
    padded = F.pad(labels[None, None].to(torch.float32), (1, 1, 1, 1), mode="replicate")[0, 0]
    padded = padded.to(labels.dtype) if labels.dtype.is_floating_point else padded.to(torch.int32)
    values = [padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
    for i, j in _MEDIAN9_NETWORK:
        _sort_pair(values, i, j)
    return values[4].to(labels.dtype)


def refine_labels(
    labels: torch.Tensor,
    image: torch.Tensor,
    *,
    num_iter: int = 10,
    dilations: Sequence[int] = (1, 2, 4, 8),
) -> torch.Tensor:
    """Refine a label map with PAMR at the image resolution, then a 3x3 median filter.

    One-hot masks of the labels present are resized bilinearly (``align_corners=True``) to the image size,
    refined by :func:`pamr`, turned back into labels by argmax, median filtered and relabelled 0..K-1 (the
    official ``pamr`` / ``mask_refinement`` helpers).

    Args:
        labels: (h, w) integer labels.
        image: (3, H, W) float image in [0, 1]; sets the output size.
        num_iter: PAMR iterations (10, official unsupervised evaluation).
        dilations: PAMR dilations ((1, 2, 4, 8), official unsupervised evaluation).

    Returns:
        (H, W) long labels, contiguous from 0.
    """
    _check_image(image)
    if labels.dim() != 2 or labels.dtype.is_floating_point:
        raise ConfigError(f"`labels` must be an (h, w) integer tensor, got {labels.dtype} {tuple(labels.shape)}")
    present = torch.unique(labels)
    masks = (labels[None] == present[:, None, None]).to(torch.float32)
    size = tuple(image.shape[1:])
    if tuple(labels.shape) != size:
        masks = F.interpolate(masks[None], size=size, mode="bilinear", align_corners=True)[0]
    refined = pamr(image, masks, num_iter=num_iter, dilations=dilations)
    return relabel_sequential(median_filter3(refined.argmax(0)))
