"""Pixel-Adaptive Mask Refinement (PAMR) and the 3x3 median filter that follows it.

PAMR (Araslanov & Roth, CVPR 2020) smooths soft masks with image-dependent weights: every pixel becomes a
weighted average of its 8 neighbours at several dilations, with weights from a softmax over colour
differences normalised by the local colour spread. DiffCut runs it on one-hot label masks and then applies
``scipy.ndimage.median_filter(labels, 3)`` (official ``tools/pamr.py``, copied from visinf/1-stage-wseg).

The official module builds every shifted copy at once with dilated convolutions ((K, 8 * |dilations|, H, W)
per iteration). Here the masks live in one replicate-padded buffer, each neighbour is a strided view of it,
and the weighted sum is accumulated with ``addcmul_`` band by band. Every hot loop works on buffers allocated
once per call: a fresh large temporary per operation is a fresh memory mapping whose pages fault in one by
one, which dominates on VMs.

Outputs larger than a working-resolution bound can be refined at a bounded size with the same aspect ratio
(``refine_labels(max_pixels=...)``); the labels then come from the refined soft masks upsampled bilinearly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from types import ModuleType

import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError
from zeroseg.refine.compiled import compiled_kernels
from zeroseg.refine.relabel import relabel_sequential
from zeroseg.refine.upsample import upsample_argmax

logger = logging.getLogger(__name__)

NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""The 8 off-centre taps of a 3x3 kernel, (row, column) offsets before dilation."""

BAND_ELEMENTS = 1 << 19
"""Output elements (masks x rows x columns) per band of the tensor-form iterations (2 MB float32)."""

AFFINITY_BAND_PIXELS = 1 << 15
"""Pixels per band while computing the neighbour weights (bounds the (P, rows, W) workspaces)."""

MEDIAN_BAND_PIXELS = 1 << 16
"""Pixels per band of the 3x3 median filter (ten int16 band buffers stay in cache)."""

StepProgress = Callable[[str, int, int], None]
"""Progress of a long step, called as ``progress(what, done, total)``: e.g. ``("PAMR iteration", 3, 10)`` after
the third of ten iterations; ``total`` is 0 while it is not known yet."""

PAMR_STEP = "PAMR iteration"
"""What :func:`pamr` reports to its ``progress`` callback, once per iteration."""


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


def _flat_workspace(numel: int, device: torch.device) -> torch.Tensor:
    """A float32 buffer allocated once per call; ``view_first`` takes contiguous views of any smaller size."""
    return torch.empty(numel, dtype=torch.float32, device=device)


def _kernels_for(tensor: torch.Tensor) -> ModuleType | None:
    """The compiled kernels for a CPU tensor (they read its memory as numpy arrays); None elsewhere."""
    return compiled_kernels() if tensor.device.type == "cpu" else None


def _view_first(buffer: torch.Tensor, *shape: int) -> torch.Tensor:
    return buffer[: math.prod(shape)].view(*shape)


def _padded_view(padded: torch.Tensor, pad: int, start: int, stop: int, width: int):
    def view(dy: int, dx: int) -> torch.Tensor:
        return padded[:, pad + start + dy : pad + stop + dy, pad + dx : pad + dx + width]

    return view


def _channel_variance(padded: torch.Tensor, offsets, num_dilations: int, pad: int, out: torch.Tensor) -> None:
    """Unbiased variance per channel of the dilated 3x3 window samples (tensor form), into (3, H, W) ``out``."""
    _, height, width = out.shape
    num_samples = 9 * num_dilations
    band = min(height, max(1, AFFINITY_BAND_PIXELS // width))
    mean_space, diff_space = (_flat_workspace(3 * band * width, padded.device) for _ in range(2))
    for start in range(0, height, band):
        stop = min(height, start + band)
        view = _padded_view(padded, pad, start, stop, width)
        mean, diff = (_view_first(space, 3, stop - start, width) for space in (mean_space, diff_space))
        spread = out[:, start:stop]
        centre = view(0, 0)
        torch.mul(centre, num_dilations, out=mean)
        for dy, dx in offsets:
            mean.add_(view(dy, dx))
        mean.div_(num_samples)
        torch.sub(centre, mean, out=spread).square_().mul_(num_dilations)
        for dy, dx in offsets:
            spread.add_(torch.sub(view(dy, dx), mean, out=diff).square_())
        spread.div_(num_samples - 1)


def _affinity_logits(padded, denom, offsets, pad: int, start: int, out: torch.Tensor, diff_space: torch.Tensor):
    """``-mean_c |I_c - I_p,c| / denom_c`` for every tap p (tensor form), into ``out``: the (P, rows, W) band
    of image rows from ``start``; ``diff_space`` is a workspace of at least 3 * rows * W floats."""
    _, rows, width = out.shape
    view = _padded_view(padded, pad, start, start + rows, width)
    diff = _view_first(diff_space, 3, rows, width)
    centre, scale = view(0, 0), denom[:, start : start + rows]
    for index, (dy, dx) in enumerate(offsets):
        torch.sub(centre, view(dy, dx), out=diff).abs_().div_(scale)
        torch.sum(diff, dim=0, out=out[index])
    out.mul_(-1.0 / 3.0)


def local_affinity(image: torch.Tensor, dilations: Sequence[int]) -> torch.Tensor:
    """Neighbour weights of PAMR: a softmax over the 8 * |dilations| neighbours of every pixel.

    Per colour channel c, sigma_c is the unbiased standard deviation of the 9 * |dilations| samples of the
    dilated 3x3 windows (the centre counted once per dilation), taken with replicate padding. The logit of
    neighbour p is ``-|I_c - I_p,c| / (1e-8 + 0.1 * sigma_c)`` averaged over the 3 channels.

    The window sums and logits run in compiled row loops (:mod:`zeroseg.refine.kernels`) or, without
    numba, as in-place tensor operations on row bands; both give the same bits. Logits and softmax go band by
    band through two workspaces allocated once: a fresh large temporary per operation would be a fresh memory
    mapping whose pages fault in one by one.

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
    variance = torch.empty(3, height, width, dtype=torch.float32, device=image.device)
    kernels = _kernels_for(image)
    if kernels is not None:
        dys, dxs = kernels.offsets_arrays(offsets)
        args = (padded.numpy(), dys, dxs, len(dils), pad, variance.numpy())
        kernels.run_rows(kernels.channel_variance, (0, height), *args)
    else:
        _channel_variance(padded, offsets, len(dils), pad, variance)
    denom = variance.sqrt_().mul_(0.1).add_(1e-8)  # torch's sqrt on the whole map, in both forms
    weights = torch.empty(len(offsets), height, width, dtype=torch.float32, device=image.device)
    band = min(height, max(1, AFFINITY_BAND_PIXELS // width))
    logit_space, soft_space = (_flat_workspace(len(offsets) * band * width, image.device) for _ in range(2))
    diff_space = _flat_workspace(3 * band * width, image.device) if kernels is None else None
    for start in range(0, height, band):
        stop = min(height, start + band)
        logits, soft = (_view_first(space, len(offsets), stop - start, width) for space in (logit_space, soft_space))
        if kernels is not None:
            args = (padded.numpy(), denom.numpy(), dys, dxs, pad, start, logits.numpy())
            kernels.run_rows(kernels.affinity_logits, (start, stop), *args)
        else:
            _affinity_logits(padded, denom, offsets, pad, start, logits, diff_space)
        torch.ops.aten._softmax.out(logits, 0, False, out=soft)  # over the taps
        weights[:, start:stop].copy_(soft)
    return weights


def _propagate(source: torch.Tensor, weights: torch.Tensor, offsets, pad: int, target: torch.Tensor) -> None:
    """One PAMR step (tensor form): the interior of padded ``target`` gets ``sum_p w_p * shifted_p(source)``,
    accumulated with ``addcmul_`` over row bands of about ``BAND_ELEMENTS`` outputs."""
    num_masks, height, width = source.shape[0], weights.shape[1], weights.shape[2]
    band = max(1, BAND_ELEMENTS // (num_masks * width))
    for start in range(0, height, band):
        stop = min(height, start + band)
        out = target[:, pad + start : pad + stop, pad : pad + width]
        for index, (dy, dx) in enumerate(offsets):
            shifted = source[:, pad + start + dy : pad + stop + dy, pad + dx : pad + dx + width]
            if index == 0:
                torch.mul(shifted, weights[index, start:stop], out=out)
            else:
                out.addcmul_(shifted, weights[index, start:stop])


def _iterate(
    masks: torch.Tensor,
    weights: torch.Tensor,
    dils: tuple[int, ...],
    num_iter: int,
    progress: StepProgress | None = None,
) -> torch.Tensor:
    """PAMR iterations on a replicate-padded double buffer: compiled row loops, or the tensor form; ``progress``
    hears ``(PAMR_STEP, i, num_iter)`` after iteration i."""
    offsets = _offsets(dils)
    pad = max(dils)
    height, width = masks.shape[1:]
    source = _replicate_pad(masks, pad)
    target = torch.empty_like(source)
    kernels = _kernels_for(masks)
    if kernels is not None:
        dys, dxs = kernels.offsets_arrays(offsets)
    for step in range(int(num_iter)):
        if kernels is not None:
            args = (source.numpy(), weights.numpy(), dys, dxs, pad, target.numpy())
            kernels.run_rows(kernels.propagate, (0, height), *args)
        else:
            _propagate(source, weights, offsets, pad, target)
        _fill_border(target, pad)
        source, target = target, source
        if progress is not None:
            progress(PAMR_STEP, step + 1, int(num_iter))
    return source[:, pad : pad + height, pad : pad + width].contiguous()


def pamr(
    image: torch.Tensor,
    masks: torch.Tensor,
    *,
    num_iter: int,
    dilations: Sequence[int],
    progress: StepProgress | None = None,
) -> torch.Tensor:
    """Refine soft masks with PAMR: ``m <- sum_p a_p * m_shift(p)``, ``num_iter`` times.

    Args:
        image: (3, H, W) float image in [0, 1].
        masks: (K, H, W) float masks at the image size (e.g. one-hot labels).
        num_iter: number of propagation steps (10 at 128x128 for the benchmarks, 15 open-vocabulary and 30
            in the demo, official code).
        dilations: kernel dilations ((1, 2, 4, 8) benchmarks, (1, 2, 4, 8, 12, 24, 32, 64) open-vocabulary
            and demo, official code).
        progress: called as ``progress("PAMR iteration", i, num_iter)`` after each iteration (a page's
            progress bar); None for silence.

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
    return _iterate(masks, weights, dils, int(num_iter), progress)


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
    if labels.dtype.is_floating_point:
        work_dtype = labels.dtype
    else:
        low, high = (int(labels.min()), int(labels.max())) if labels.numel() else (0, 0)
        small = -(1 << 15) <= low and high < (1 << 15)
        work_dtype = torch.int16 if small else torch.int32
    # replicate padding, written into one buffer (torch pads only float tensors)
    padded = torch.empty(height + 2, width + 2, dtype=work_dtype, device=labels.device)
    padded[1:-1, 1:-1] = labels
    padded[0, 1:-1], padded[-1, 1:-1] = padded[1, 1:-1], padded[-2, 1:-1]
    padded[:, 0], padded[:, -1] = padded[:, 1], padded[:, -2]
    out = torch.empty(height, width, dtype=labels.dtype, device=labels.device)
    band = min(height, max(1, MEDIAN_BAND_PIXELS // width))
    values = [torch.empty(band * width, dtype=work_dtype, device=labels.device) for _ in range(9)]
    spare = torch.empty(band * width, dtype=work_dtype, device=labels.device)
    for start in range(0, height, band):
        rows = min(height, start + band) - start
        taps = [v[: rows * width].view(rows, width) for v in values]
        for index, (dy, dx) in enumerate((dy, dx) for dy in range(3) for dx in range(3)):
            taps[index].copy_(padded[start + dy : start + dy + rows, dx : dx + width])
        free = spare[: rows * width].view(rows, width)
        for i, j in _MEDIAN9_NETWORK:  # compare-exchange: taps[i] <- min, taps[j] <- max, buffers rotate
            torch.minimum(taps[i], taps[j], out=free)
            torch.maximum(taps[i], taps[j], out=taps[j])
            taps[i], free = free, taps[i]
        out[start : start + rows] = taps[4]
    return out


def working_size(size: tuple[int, int], max_pixels: int | None) -> tuple[int, int]:
    """Largest size with the aspect ratio of ``size`` and at most ``max_pixels`` pixels (``size`` itself when
    it is within the bound, or when ``max_pixels`` is 0 or None)."""
    height, width = int(size[0]), int(size[1])
    if not max_pixels or height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    work_h, work_w = max(1, math.floor(height * scale)), max(1, math.floor(width * scale))
    while work_h * work_w > max_pixels:  # rounding guard
        work_h, work_w = max(1, work_h - (work_h >= work_w)), max(1, work_w - (work_w > work_h))
    return work_h, work_w


def check_max_pixels(max_pixels: int | None, name: str = "max_pixels") -> int | None:
    """Validate a working-resolution bound: None or an integer >= 0 (0 and None mean no bound)."""
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or int(max_pixels) != max_pixels or max_pixels < 0:
        raise ConfigError(f"`{name}` must be None or an integer >= 0 (0 = no bound), got {max_pixels!r}")
    return int(max_pixels)


def refine_masks_to_labels(
    masks: torch.Tensor,
    image: torch.Tensor,
    out_size: tuple[int, int],
    *,
    num_iter: int,
    dilations: Sequence[int],
    progress: StepProgress | None = None,
) -> torch.Tensor:
    """PAMR on ``masks`` at the image size, then labels at ``out_size`` and the 3x3 median filter.

    When ``out_size`` is the image size the labels are the argmax of the refined masks (official code);
    otherwise the refined soft masks are upsampled bilinearly to ``out_size`` and the argmax is taken there,
    so the labels follow the refined mask boundaries at the output resolution (labels are never resized).

    Args:
        masks: (K, h, w) float masks at the image size.
        image: (3, h, w) float image in [0, 1], the PAMR working image.
        out_size: (H, W) of the labels.
        num_iter / dilations: PAMR settings.
        progress: PAMR's iteration callback (see :func:`pamr`).

    Returns:
        (H, W) long labels, contiguous from 0.
    """
    refined = pamr(image, masks, num_iter=num_iter, dilations=dilations, progress=progress)
    if tuple(out_size) == tuple(refined.shape[1:]):
        labels = refined.argmax(0)
    else:
        labels = upsample_argmax(refined, out_size)
    return relabel_sequential(median_filter3(labels))


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``) resize of a (3, H, W) image; antialiased when it shrinks both sides."""
    if tuple(image.shape[1:]) == tuple(size):
        return image
    shrink = image.shape[1] > size[0] and image.shape[2] > size[1]
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=shrink)[0]


def refine_labels(
    labels: torch.Tensor,
    image: torch.Tensor,
    *,
    num_iter: int = 10,
    dilations: Sequence[int] = (1, 2, 4, 8),
    max_pixels: int | None = None,
    progress: StepProgress | None = None,
) -> torch.Tensor:
    """Refine a label map with PAMR at the image resolution, then a 3x3 median filter.

    One-hot masks of the labels present are resized bilinearly (``align_corners=True``) to the image size,
    refined by :func:`pamr`, turned back into labels by argmax, median filtered and relabelled 0..K-1 (the
    official ``pamr`` / ``mask_refinement`` helpers).

    With ``max_pixels`` set and an image larger than that, PAMR runs at a working size of at most
    ``max_pixels`` pixels with the image's aspect ratio (the image resized there, antialiased), and the labels
    at the image size come from the refined soft masks upsampled bilinearly (cost flat in the image size,
    apart from the per-pixel output work).

    Args:
        labels: (h, w) integer labels.
        image: (3, H, W) float image in [0, 1]; sets the output size.
        num_iter: PAMR iterations (10, official unsupervised evaluation).
        dilations: PAMR dilations ((1, 2, 4, 8), official unsupervised evaluation).
        max_pixels: bound on the PAMR working resolution; None or 0 (default) = the image resolution, as the
            official code.
        progress: PAMR's iteration callback (see :func:`pamr`).

    Returns:
        (H, W) long labels, contiguous from 0.
    """
    _check_image(image)
    if labels.dim() != 2 or labels.dtype.is_floating_point:
        raise ConfigError(f"`labels` must be an (h, w) integer tensor, got {labels.dtype} {tuple(labels.shape)}")
    size = (int(image.shape[1]), int(image.shape[2]))
    work = working_size(size, check_max_pixels(max_pixels))
    present = torch.unique(labels)
    masks = (labels[None] == present[:, None, None]).to(torch.float32)
    if tuple(labels.shape) != work:
        masks = F.interpolate(masks[None], size=work, mode="bilinear", align_corners=True)[0]
    work_image = resize_image(image.to(torch.float32), work) if work != size else image
    return refine_masks_to_labels(masks, work_image, size, num_iter=num_iter, dilations=dilations, progress=progress)
