"""DiffSeg on captured self-attention: aggregate, merge, optionally refine, and label (tensor level).

References:
    Tian et al., "Diffuse, Attend, and Segment: Unsupervised Zero-Shot Segmentation using Stable
    Diffusion", CVPR 2024 (arXiv 2308.12469); official code ``segmentor.py:DiffSeg.segment``.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Mapping, Sequence

import torch

from zeroseg.diffseg.aggregate import aggregate_attention
from zeroseg.diffseg.kmeans import refine_proposals
from zeroseg.diffseg.merge import merge_by_kl
from zeroseg.diffseg.proposals import proposals_to_labels
from zeroseg.errors import ConfigError

logger = logging.getLogger(__name__)


def per_iteration_thresholds(
    kl_threshold: float | Sequence[float], iterations: int, *, exact_reference: bool = False
) -> list[float]:
    """Expand ``kl_threshold`` to one value per merging iteration and validate both.

    Args:
        kl_threshold: one tau for every iteration, or one per iteration (its length must equal
            ``iterations``).
        iterations: merging iterations including the anchor pass (official 3). ``1`` (anchor pass only) is
            allowed in the default mode; ``exact_reference`` needs ``>= 2`` as the official code.

    Raises:
        ConfigError: on a non-positive threshold, a length mismatch or too few iterations.
    """
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise ConfigError(f"`iterations` must be an integer >= 1, got {iterations!r}")
    if exact_reference and iterations < 2:
        raise ConfigError(
            f"`iterations` must be >= 2 with `exact_reference=True` (the official code fails with a single "
            f"merging iteration), got {iterations}"
        )
    if isinstance(kl_threshold, numbers.Real) and not isinstance(kl_threshold, bool):
        thresholds = [float(kl_threshold)] * iterations
    else:
        try:
            thresholds = [float(t) for t in kl_threshold]  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ConfigError(
                f"`kl_threshold` must be a number or a sequence of numbers, got {kl_threshold!r}"
            ) from None
        if len(thresholds) != iterations:
            raise ConfigError(
                f"`kl_threshold` has {len(thresholds)} values but `iterations` is {iterations}; "
                f"give one value per iteration (or pass iterations={len(thresholds)})"
            )
    if any(not math.isfinite(t) or t <= 0 for t in thresholds):
        raise ConfigError(f"`kl_threshold` values must be finite and > 0, got {thresholds}")
    return thresholds


def segment_attention(
    maps: Mapping[int, torch.Tensor],
    *,
    kl_threshold: float | Sequence[float] = 1.1,
    iterations: int = 3,
    anchors: int = 16,
    refine: bool = False,
    exact_reference: bool = False,
    out_size: int | tuple[int, int] = 512,
) -> torch.Tensor:
    """Segment one image from its self-attention maps with DiffSeg.

    Args:
        maps: grid side ``r`` -> ``(r*r, r*r)`` row-stochastic self-attention averaged over heads and layers
            (rows = query pixels, row-major). Any set of sides whose largest ``S`` is a multiple of each (SD
            1.x at 512 px: 64/32/16/8; SDXL-family: e.g. 32/16); sides weigh ``r / sum(r)``.
        kl_threshold: merge threshold tau, one value or one per iteration (official 1.1 COCO-Stuff, 0.9
            Cityscapes and demo).
        iterations: merging iterations including the anchor pass (official 3).
        anchors: anchors per side of the anchor grid (official 16).
        refine: K-Means refinement of the proposals (official: off for benchmarks, on in the demo).
        exact_reference: reproduce the official numerics (float16 anchor pass with its NaN dropping,
            float64 later passes); default float32 with floored logs.
        out_size: side of the square label map (official 512), or ``(H, W)``.

    Returns:
        ``(H, W)`` long label map, values contiguous 0..K-1.

    Raises:
        ConfigError: on malformed maps or settings.
    """
    thresholds = per_iteration_thresholds(kl_threshold, iterations, exact_reference=exact_reference)
    if isinstance(out_size, numbers.Integral) and not isinstance(out_size, bool):
        out_size = (int(out_size), int(out_size))
    elif isinstance(out_size, list):
        out_size = tuple(out_size)
    if not isinstance(refine, bool):
        raise ConfigError(f"`refine` must be a bool, got {refine!r}")
    aggregated = aggregate_attention(maps)
    proposals = merge_by_kl(aggregated, anchors=anchors, kl_thresholds=thresholds, exact_reference=exact_reference)
    if refine:
        proposals = refine_proposals(aggregated, proposals)
    labels = proposals_to_labels(proposals, out_size)  # type: ignore[arg-type]
    logger.debug("DiffSeg: %d proposals -> %d segments", proposals.shape[0], int(labels.max()) + 1)
    return labels
