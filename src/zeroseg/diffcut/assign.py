"""High-resolution concept assignment: label every output pixel by its closest segment concept.

DiffCut clusters the low-resolution feature grid, averages the normalised features of each segment into a
"concept", bilinearly upsamples the feature map and labels each output pixel by the concept with the highest
score (spec section 3, official ``generate_masks`` steps 2 and 3).

Bilinear upsampling is linear, so upsampling the (K, h, w) score maps gives the same scores as scoring the
upsampled (C, H, W) feature map (up to float rounding) with C / K times less work; the (C, H, W) map is never
built. The output is produced in row bands of at most ``chunk_pixels`` pixels.

On the CPU a compiled kernel (:func:`zeroseg.refine.kernels.concept_argmax`) takes the argmax on the fly from
the two non-zero taps of each interpolation-matrix row, with the fused multiply-adds the matrix products use,
so it gives the same labels without writing the (K, H, W) scores (for K = 300 at 1024 x 768, 0.9 GB of
traffic per change of tau). It is used once a check on ulp-close maps shows it agrees with the matrix products
of this machine's BLAS; otherwise, without numba, or with ``ZEROSEG_TENSOR_FORM=1`` the tensor form runs.
"""

from __future__ import annotations

import functools
import logging
import threading
from types import ModuleType

import numpy as np
import torch

from zeroseg.errors import ConfigError
from zeroseg.refine.compiled import compiled_kernels

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_PIXELS = 1 << 18
"""Output pixels scored per band: 262144 pixels x K concepts x 4 bytes (10 MB for K = 10)."""


def bilinear_matrix(in_size: int, out_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Interpolation matrix of 1-D bilinear resizing with ``align_corners=False``.

    Reproduces ``F.interpolate(mode="bilinear", align_corners=False)`` without antialiasing along one axis:
    source coordinate ``(i + 0.5) * in / out - 0.5`` clamped at 0, linear weights between its two
    neighbours, the upper one clamped to the last index.

    Args:
        in_size: input length n.
        out_size: output length N.
        device: where the matrix is built.

    Returns:
        (N, n) float32 matrix R with ``resized = R @ signal``.
    """
    scale = in_size / out_size
    source = ((torch.arange(out_size, dtype=torch.float64, device=device) + 0.5) * scale - 0.5).clamp_(min=0.0)
    low = source.floor().long().clamp_(max=in_size - 1)
    high = (low + 1).clamp_(max=in_size - 1)
    frac = (source - low).to(torch.float32)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float32, device=device)
    rows = torch.arange(out_size, device=device)
    matrix.index_put_((rows, low), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix


def compute_concepts(features: torch.Tensor, labels: torch.Tensor, *, normalize: bool) -> torch.Tensor:
    """Masked means of the features per segment (official ``MaskPooling``).

    Args:
        features: (C, h, w) L2-normalised features.
        labels: (h, w) integer labels 0..K-1.
        normalize: L2-normalise the means (cosine scoring). The official code keeps them un-normalised.

    Returns:
        (K, C) float32 concepts, row k for label k (a label with no pixel gives a zero row).
    """
    channels = features.shape[0]
    flat = labels.reshape(-1).to(torch.long)
    num_labels = int(flat.max()) + 1
    one_hot = torch.zeros(num_labels, flat.numel(), dtype=torch.float32, device=features.device)
    one_hot[flat, torch.arange(flat.numel(), device=features.device)] = 1.0
    sums = one_hot @ features.reshape(channels, -1).to(torch.float32).T
    concepts = sums / one_hot.sum(1, keepdim=True).clamp_(min=1.0)
    if normalize:
        concepts = torch.nn.functional.normalize(concepts, p=2.0, dim=1)
    return concepts


def assign_concepts(
    features: torch.Tensor,
    labels: torch.Tensor,
    out_size: tuple[int, int],
    *,
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
    exact_reference: bool = False,
) -> torch.Tensor:
    """Label each pixel of an ``out_size`` grid by its best-scoring segment concept.

    Score = upsampled feature (bilinear, ``align_corners=False``, not re-normalised) times concept. The
    official code uses a dot product with the un-normalised segment means, which favours tight segments
    (larger mean norm); the paper describes cosine similarity. The default normalises the concepts, which
    makes the argmax the paper's cosine rule; ``exact_reference=True`` keeps the official dot product.

    Args:
        features: (C, h, w) L2-normalised features.
        labels: (h, w) integer segment labels on the feature grid; the K values present, in increasing
            order, give concepts 0..K-1.
        out_size: output (H, W).
        chunk_pixels: output pixels scored at once (rounded to whole rows, at least one row).
        exact_reference: score with the un-normalised concepts, as the official code.

    Returns:
        (H, W) long labels in 0..K-1 (index of the winning concept; a concept may win no pixel).

    Raises:
        ConfigError: on mismatched shapes, a non-positive ``out_size`` or ``chunk_pixels``.
    """
    if features.dim() != 3:
        raise ConfigError(f"`features` must be (C, h, w), got shape {tuple(features.shape)}")
    if labels.shape != features.shape[1:]:
        raise ConfigError(
            f"`labels` must have the feature grid shape {tuple(features.shape[1:])}, got {tuple(labels.shape)}"
        )
    if len(out_size) != 2 or any(int(s) != s or s < 1 for s in out_size):
        raise ConfigError(f"`out_size` must be two positive integers (H, W), got {out_size!r}")
    if int(chunk_pixels) != chunk_pixels or chunk_pixels < 1:
        raise ConfigError(f"`chunk_pixels` must be a positive integer, got {chunk_pixels!r}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or int(labels.min()) < 0:
        raise ConfigError("`labels` must be non-negative integers")
    height, width = int(out_size[0]), int(out_size[1])
    feats = features.to(torch.float32)
    _, segments = torch.unique(labels, return_inverse=True)  # official: one concept per present value
    concepts = compute_concepts(feats, segments.reshape(labels.shape), normalize=not exact_reference)
    scores = torch.einsum("kc,chw->khw", concepts, feats)  # (K, h, w) scores on the feature grid
    kernels = _kernels_for(scores)
    compiled = _assign_compiled(kernels, scores, (height, width)) if kernels is not None else None
    if compiled is not None:
        return compiled
    rows = bilinear_matrix(feats.shape[1], height, feats.device)  # (H, h)
    scores = scores @ bilinear_matrix(feats.shape[2], width, feats.device).T  # (K, h, W): columns resized once
    band = max(1, int(chunk_pixels) // width)
    out = torch.empty(height, width, dtype=torch.long, device=feats.device)
    for start in range(0, height, band):
        stop = min(height, start + band)
        band_scores = torch.einsum("Hh,khW->kHW", rows[start:stop], scores)
        out[start:stop] = band_scores.argmax(0)
    return out


def matrix_taps(matrix: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """The non-zero entries of an interpolation matrix as taps: per row ``(i0, i1, w0, w1)`` with ``i0 <= i1``
    the columns of its entries in order (``i1 == i0`` and ``w1 == 0`` for a row with one); None when a row has
    none or more than two."""
    nonzero = matrix != 0
    count = nonzero.sum(1)
    if bool((count == 0).any()) or bool((count > 2).any()):
        return None
    columns = torch.arange(matrix.shape[1], device=matrix.device)
    first = torch.where(nonzero, columns, matrix.shape[1]).amin(1)
    last = torch.where(nonzero, columns, -1).amax(1)
    rows = torch.arange(matrix.shape[0], device=matrix.device)
    w0 = matrix[rows, first]
    w1 = torch.where(count == 2, matrix[rows, last], torch.zeros_like(w0))
    return first.contiguous(), last.contiguous(), w0.contiguous(), w1.contiguous()


def _assign_compiled(kernels: ModuleType, scores: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor | None:
    """:func:`zeroseg.refine.kernels.concept_argmax` of (K, h, w) CPU ``scores`` through the bilinear matrices
    ``R`` (H, h) and ``C`` (W, w): the labels of ``argmax_k (R @ scores[k] @ C.T)``; None when a matrix has a row
    of more than two taps."""
    height, width = out_size
    column_taps, row_taps = _bilinear_taps(scores.shape[2], width), _bilinear_taps(scores.shape[1], height)
    if column_taps is None or row_taps is None:
        return None
    labels = torch.empty(height, width, dtype=torch.long)
    kernels.run_rows(
        kernels.concept_argmax, (0, height), scores.contiguous().numpy(), *column_taps, *row_taps, labels.numpy()
    )
    return labels


@functools.lru_cache(maxsize=32)
def _bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, ...] | None:
    """:func:`matrix_taps` of :func:`bilinear_matrix` as read-only numpy arrays, kept per size."""
    taps = matrix_taps(bilinear_matrix(in_size, out_size))
    if taps is None:
        return None
    arrays = tuple(t.numpy() for t in taps)
    for array in arrays:
        array.flags.writeable = False
    return arrays


def _assign_tensor(scores: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """The tensor form of :func:`_assign_compiled` (what :func:`assign_concepts` does without the kernel)."""
    resized = scores @ columns.T
    return torch.einsum("Hh,khW->kHW", rows, resized).argmax(0)


_agrees: list[bool] = []
_agrees_lock = threading.Lock()


def _kernels_for(scores: torch.Tensor) -> ModuleType | None:
    """The compiled kernels for CPU scores whose matrices have at most two taps per row, once they are checked to
    give the matrix products' labels on this machine; None otherwise (the tensor form runs)."""
    if scores.device.type != "cpu":
        return None
    kernels = compiled_kernels()
    if kernels is None:
        return None
    with _agrees_lock:
        if not _agrees:
            _agrees.append(_kernel_agrees(kernels))
            if not _agrees[0]:
                logger.info("concept assignment runs in its tensor form (the kernel disagrees with this BLAS)")
        return kernels if _agrees[0] else None


def _kernel_agrees(kernels: ModuleType) -> bool:
    """Whether the kernel's labels equal the matrix products' on maps a few ulps apart, where any other order
    or rounding of the sums changes many argmaxes."""
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 9, 12, generator=gen) + 0.5
    steps = torch.randint(-3, 4, (6, 9, 12), generator=gen).to(torch.float32)
    scores = (base + steps * torch.finfo(torch.float32).eps).contiguous()
    rows, columns = bilinear_matrix(9, 61), bilinear_matrix(12, 83)
    compiled = _assign_compiled(kernels, scores, (61, 83))
    return compiled is not None and bool(torch.equal(compiled, _assign_tensor(scores, rows, columns)))
