"""DiffCut on a captured feature map: affinity, recursive NCut, concept assignment, optional PAMR."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from zeroseg.diffcut.affinity import compute_affinity, normalize_features
from zeroseg.diffcut.assign import DEFAULT_CHUNK_PIXELS, assign_concepts
from zeroseg.diffcut.ncut import recursive_ncut
from zeroseg.diffcut.tree import NCutTree
from zeroseg.errors import ConfigError
from zeroseg.refine.pamr import (
    StepProgress,
    check_max_pixels,
    refine_labels,
    refine_masks_to_labels,
    resize_image,
    working_size,
)
from zeroseg.refine.relabel import relabel_sequential

logger = logging.getLogger(__name__)

DEFAULT_PAMR_MAX_PIXELS = 1024 * 1024
"""PAMR working-resolution bound: the pixel count of DiffCut's 1024x1024 input (official demo size)."""


def _check_out_size(out_size: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = out_size
        valid = all(not isinstance(s, bool) and int(s) == s and s >= 1 for s in (height, width))
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigError(f"`out_size` must be two positive integers (H, W), got {out_size!r}")
    return int(height), int(width)


def _ncut_on_host(affinity: torch.Tensor, *, tau: float, exact_reference: bool) -> torch.Tensor:
    """Recursive NCut of an affinity on any device, run on the CPU; the labels come back to that device.

    The recursion is many small data-dependent steps around one LAPACK eigensolve per split (scipy's for the
    default path, torch's CPU ``eigh`` with ``exact_reference``), so the small ``(n, n)`` affinity (4 MiB for a
    32x32 grid) goes to the host once rather than every step waiting for the accelerator.
    """
    return recursive_ncut(affinity.cpu(), tau=tau, exact_reference=exact_reference).to(affinity.device)


def segment_features(
    features: torch.Tensor,
    *,
    tau: float = 0.5,
    alpha: float = 10,
    out_size: tuple[int, int] = (128, 128),
    image: torch.Tensor | None = None,
    pamr_iters: int = 10,
    pamr_dilations: Sequence[int] = (1, 2, 4, 8),
    exact_reference: bool = False,
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
    pamr_max_pixels: int | None = DEFAULT_PAMR_MAX_PIXELS,
    tree: NCutTree | None = None,
    progress: StepProgress | None = None,
) -> torch.Tensor:
    """Segment one captured feature map with DiffCut (official ``generate_masks`` plus PAMR).

    Steps: L2-normalise the features over channels; affinity ``minmax(cos) ** alpha``; recursive two-way
    NCut on the h x w grid while NCut < ``tau``; concept assignment to ``out_size``; if ``image`` is given,
    PAMR at ``out_size`` followed by a 3x3 median filter.

    PAMR's cost grows with its pixel count, so when ``out_size`` has more than ``pamr_max_pixels`` pixels
    the concepts are assigned and refined at a working size of at most that many pixels with the same
    aspect ratio (about the model's input size; the official demo refines at 1024x1024), and the labels at
    ``out_size`` come from the refined soft masks upsampled bilinearly. Sizes within the bound (every
    evaluation protocol) run exactly as the official code.

    Args:
        features: (C, h, w) features as captured (any float dtype), e.g. (1280, 32, 32) for SSD-1B at 1024.
        tau: NCut threshold; larger gives more segments (0.5, official code and paper, all datasets).
        alpha: affinity exponent (10, official code and paper).
        out_size: output (H, W) ((128, 128) official unsupervised evaluation; (1024, 1024) open-vocabulary).
        image: optional (3, H', W') float image in [0, 1] for PAMR; resized bilinearly to ``out_size`` when
            its size differs.
        pamr_iters: PAMR iterations (10, official unsupervised evaluation).
        pamr_dilations: PAMR dilations ((1, 2, 4, 8), official unsupervised evaluation).
        exact_reference: keep the official code's quirks (the ``idx2keep`` node dropping in the recursion and
            dot-product concept scores) instead of the fixed behaviour.
        chunk_pixels: output pixels scored at once in concept assignment (bounds memory).
        pamr_max_pixels: bound on the PAMR working resolution (default 1024 * 1024); 0 or None refines at
            ``out_size`` whatever its size.
        tree: the NCut tree of these features (``ncut_tree_from_features``) built with this ``alpha`` and
            ``exact_reference`` at a ``max_tau >= tau``; the cut is then read from it (same labels, no eigensolve).
        progress: called as ``progress("PAMR iteration", i, pamr_iters)`` after each PAMR iteration (see
            :func:`zeroseg.refine.pamr.pamr`); None for silence.

    Returns:
        (H, W) long labels, contiguous from 0.

    Raises:
        ConfigError: on an invalid argument (named in the message).
    """
    height, width = _check_out_size(out_size)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau):
        raise ConfigError(f"`tau` must be a finite number, got {tau!r}")
    max_pixels = check_max_pixels(pamr_max_pixels, "pamr_max_pixels")
    if image is not None and (not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ConfigError(f"`image` must be a (3, H, W) float tensor in [0, 1], got {shape}")
    feats = normalize_features(features)
    grid = feats.shape[1:]
    if tree is not None:
        if tree.grid != tuple(grid) or not tree.fits(tau=tau, alpha=alpha, exact_reference=exact_reference):
            raise ConfigError("`tree` was built for other features or settings (grid, alpha, exact_reference, tau)")
        coarse = tree.cut(tau).to(feats.device)
    else:
        affinity = compute_affinity(feats, alpha=alpha)
        coarse = _ncut_on_host(affinity, tau=tau, exact_reference=exact_reference).reshape(grid)
    logger.debug("recursive NCut: %d segments on the %dx%d grid", int(coarse.max()) + 1, *grid)
    work = working_size((height, width), max_pixels) if image is not None else (height, width)
    labels = assign_concepts(feats, coarse, work, chunk_pixels=chunk_pixels, exact_reference=exact_reference)
    if image is None:
        return relabel_sequential(labels)
    image = image.to(device=feats.device, dtype=torch.float32)
    if work == (height, width):  # the official path: image resized to the output size, PAMR there
        if tuple(image.shape[1:]) != (height, width):
            image = F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False)[0]
        return refine_labels(labels, image, num_iter=pamr_iters, dilations=pamr_dilations, progress=progress)
    logger.debug("PAMR at a working size %dx%d for a %dx%d output", *work, height, width)
    present = torch.unique(labels)
    masks = (labels[None] == present[:, None, None]).to(torch.float32)
    return refine_masks_to_labels(
        masks,
        resize_image(image, work),
        (height, width),
        num_iter=pamr_iters,
        dilations=pamr_dilations,
        progress=progress,
    )
