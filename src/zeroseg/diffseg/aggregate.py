"""Multi-resolution aggregation of self-attention maps into one 4-D attention tensor (DiffSeg, step 1).

Each side ``r`` contributes its ``(r*r, r*r)`` head- and layer-averaged self-attention. The key dims are
upsampled bilinearly to the largest side ``S`` and renormalised, the query dims are block-replicated, and
the sides are summed with weights proportional to ``r``.

References:
    Tian et al., "Diffuse, Attend, and Segment", CVPR 2024; official code ``segmentor.py:aggregate_weights``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import torch

from zeroseg.diffseg.proposals import bilinear_taps
from zeroseg.errors import ConfigError

logger = logging.getLogger(__name__)

# Query rows of the largest side normalised at once (bounds the temporaries to about 16 MiB at S=64).
_ROWS_PER_CHUNK = 1024


def validate_attention_maps(maps: Mapping[int, torch.Tensor]) -> list[int]:
    """Check ``maps`` and return its grid sides, largest first.

    Args:
        maps: grid side ``r`` -> ``(r*r, r*r)`` row-stochastic self-attention.

    Raises:
        ConfigError: on an empty dict, a shape that does not match its key, a non-float tensor, or sides
            that are not nested (query dims are block-replicated by an integer factor).
    """
    if not isinstance(maps, Mapping) or len(maps) == 0:
        raise ConfigError(f"`maps` must be a non-empty dict {{side: (side*side, side*side) tensor}}, got {maps!r}")
    for side, attn in maps.items():
        if not isinstance(side, int) or side < 1:
            raise ConfigError(f"`maps` keys must be positive grid sides, got {side!r}")
        if not isinstance(attn, torch.Tensor) or not attn.is_floating_point():
            raise ConfigError(f"`maps[{side}]` must be a floating-point tensor, got {type(attn).__name__}")
        expected = (side * side, side * side)
        if tuple(attn.shape) != expected:
            raise ConfigError(f"`maps[{side}]` must have shape {expected}, got {tuple(attn.shape)}")
    sides = sorted(maps, reverse=True)
    for larger, smaller in zip(sides, sides[1:], strict=False):
        if larger % smaller != 0:
            raise ConfigError(
                f"grid side {smaller} in `maps` does not divide the larger side {larger}; sides must be "
                f"nested (each a multiple of the next smaller one), e.g. 64/32/16/8"
            )
    return sides


def aggregation_weights(sides: Sequence[int]) -> list[float]:
    """Weight of each grid side, proportional to the side: ``r / sum(r)`` (official code default).

    For SD 1.x sides (64, 32, 16, 8) this is [8, 4, 2, 1] / 15.
    """
    total = float(sum(sides))
    return [side / total for side in sides]


def aggregate_attention(maps: Mapping[int, torch.Tensor], *, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Aggregate per-resolution self-attention into one ``(S*S, S, S)`` float32 tensor.

    Row ``q`` (query pixel of the ``S x S`` grid, row-major; ``S`` = largest side present) is a distribution
    over the ``S x S`` key grid. For each side ``r``: key maps are upsampled bilinearly (half-pixel centres,
    no antialias, as ``tf.image.resize``) and renormalised to sum 1; query dims are repeated ``S/r`` times
    (nearest); the results are summed with ``weights``. Computed in float32 whatever the input dtype, in
    chunks of query rows so the extra memory stays small beside the 64 MiB output at ``S = 64``.

    Args:
        maps: grid side ``r`` -> ``(r*r, r*r)`` row-stochastic attention, averaged over heads and layers.
        weights: one weight per side, largest side first (the official ``weight_ratio`` order). Default
            ``r / sum(r)`` (official code). Custom weights are rescaled to sum 1 so rows stay distributions.

    Returns:
        ``(S*S, S, S)`` float32 tensor on the device of the largest map.

    Raises:
        ConfigError: on malformed ``maps`` or ``weights``.
    """
    sides = validate_attention_maps(maps)
    if weights is None:
        weights = aggregation_weights(sides)
    else:
        weights = [float(w) for w in weights]
        if len(weights) != len(sides):
            raise ConfigError(
                f"`weights` must have one value per grid side {sides} (largest first), got {len(weights)} values"
            )
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"`weights` must be finite, non-negative and not all zero, got {weights}")
        total = sum(weights)
        weights = [w / total for w in weights]
    largest = sides[0]
    device = maps[largest].device
    # Smaller sides first: a side's query grid is a block-repeat of the next smaller one, so the weighted
    # key maps are accumulated coarse to fine and the (S*S, S*S) result is written in a single pass.
    coarse: torch.Tensor | None = None
    coarse_side = 0
    for side, weight in sorted(zip(sides, weights, strict=True)):
        if side == largest:
            break
        keys = _upsample_keys(maps[side].to(device=device, dtype=torch.float32), side, largest, weight)
        if coarse is not None:
            _add_repeated(keys, coarse, side, coarse_side, 0)
        coarse, coarse_side = keys, side
    out = torch.empty(largest * largest, largest, largest, dtype=torch.float32, device=device)
    flat_out = out.view(largest * largest, largest * largest)
    factor = largest // coarse_side if coarse is not None else 1
    rows_per_chunk = max(factor, (_ROWS_PER_CHUNK // largest) // factor * factor)
    for row_start in range(0, largest, rows_per_chunk):
        row_stop = min(largest, row_start + rows_per_chunk)
        block = maps[largest][row_start * largest : row_stop * largest].to(device=device, dtype=torch.float32)
        target = flat_out[row_start * largest : row_stop * largest]
        scale = weights[0] / block.sum(dim=1, keepdim=True)
        if coarse is None:
            torch.mul(block, scale, out=target)
        else:
            # target = block * scale + coarse block-repeated, in one pass
            grid_rows = (row_stop - row_start) // factor
            shape = (grid_rows, factor, coarse_side, factor, -1)
            first = row_start // factor
            source = coarse.view(coarse_side, coarse_side, -1)[first : first + grid_rows, None, :, None, :]
            torch.addcmul(source, block.view(shape), scale.view(shape[:-1] + (1,)), out=target.view(shape))
    logger.debug("aggregated attention of sides %s with weights %s", sides, weights)
    return out


def _add_repeated(target: torch.Tensor, coarse: torch.Tensor, side: int, coarse_side: int, row_start: int) -> None:
    """Add ``coarse`` ``(c*c, K)`` block-repeated onto query rows ``row_start..`` of a side-``side`` grid.

    ``target`` holds whole query-grid rows of the finer grid, ``(rows * side, K)``; ``row_start`` is a
    multiple of the repeat factor ``side // coarse_side``.
    """
    factor = side // coarse_side
    rows = target.shape[0] // side
    first = row_start // factor
    source = coarse.view(coarse_side, coarse_side, -1)[first : first + rows // factor]
    target.view(rows // factor, factor, coarse_side, factor, -1).add_(source[:, None, :, None, :])


def _upsample_keys(block: torch.Tensor, side: int, largest: int, weight: float) -> torch.Tensor:
    """Key maps of ``block`` ``(n, r*r)`` upsampled to ``(n, S*S)``, renormalised to sum ``weight``.

    Bilinear resizing is separable, ``U = W A W^T`` with ``W`` the ``(S, r)`` interpolation matrix, so it
    runs as two small matmuls, and the mass of ``U`` is known before upsampling: ``sum(U) = c^T A c`` with
    ``c`` the column sums of ``W``.
    """
    n = block.shape[0]
    interp = interpolation_matrix(side, largest, device=block.device)
    col_sums = interp.sum(0)
    mass = block @ torch.outer(col_sums, col_sums).view(-1)
    scaled = block.view(n, side, side) * (weight / mass).view(n, 1, 1)
    keys = torch.matmul(interp, torch.matmul(scaled, interp.T))
    return keys.view(n, largest * largest)


def interpolation_matrix(in_size: int, out_size: int, device: torch.device | None = None) -> torch.Tensor:
    """``(out, in)`` float32 matrix of 1-D bilinear resizing, half-pixel centres (``align_corners=False``)."""
    i0, i1, w0, w1 = bilinear_taps(in_size, out_size, device)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float32, device=device)
    rows = torch.arange(out_size, device=device)
    matrix.index_put_((rows, i0), w0, accumulate=True)
    matrix.index_put_((rows, i1), w1, accumulate=True)
    return matrix
