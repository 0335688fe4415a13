"""Iterative attention merging by symmetric KL distance (DiffSeg, step 2).

Iteration 0 compares an anchor grid of attention maps with every pixel's map and averages each anchor's
matches into a proposal. Iterations >= 1 merge proposals greedily in scan order. Distances use the
identity ``D(x, y) = 0.5 * [sum x log x + sum y log y - x . log y - y . log x]``, so each pass is a pair of
matrix products instead of an elementwise broadcast.

References:
    Tian et al., "Diffuse, Attend, and Segment", CVPR 2024; official code ``segmentor.py:mask_merge``,
    ``generate_sampling_grid`` and ``KL``.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from zeroseg.errors import ConfigError

logger = logging.getLogger(__name__)

LOG_EPS = 1e-12
"""Floor applied before the log in the default mode, so zero entries give finite distances, never NaN."""

# Default anchor pass: float32 elements of the per-chunk logs (2M elements = 8 MiB).
_ANCHOR_CHUNK_ELEMENTS = 1 << 21

# Exact-reference anchor pass: float16 elements held at once per chunk (8M elements = 16 MiB each).
_EXACT_CHUNK_ELEMENTS = 1 << 23


def anchor_grid(num_per_side: int, side: int = 64, device: torch.device | None = None) -> torch.Tensor:
    """Evenly spaced ``(row, col)`` anchors on a ``side x side`` grid, row-major, shape ``(M*M, 2)`` on ``device``.

    The official ``generate_sampling_grid`` for a 64 grid, generalised from 63 to ``side - 1``: step
    ``(side-1) // (M-1)``, centred. M=16, side 64 gives rows/cols 1, 5, ..., 61; M=4 gives 0, 21, 42, 63.

    Raises:
        ConfigError: unless ``2 <= num_per_side <= side``.
    """
    if not isinstance(side, int) or side < 2:
        raise ConfigError(f"`side` must be an integer >= 2, got {side!r}")
    if not isinstance(num_per_side, int) or isinstance(num_per_side, bool) or not 2 <= num_per_side <= side:
        raise ConfigError(f"`num_per_side` (anchors per side) must be an integer in [2, {side}], got {num_per_side!r}")
    step = (side - 1) // (num_per_side - 1)
    start = (side - 1 - step * (num_per_side - 1)) // 2
    coords = start + step * torch.arange(num_per_side, device=device)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)


def symmetric_kl(p: torch.Tensor, q: torch.Tensor, *, dim: int | tuple[int, ...] = -1) -> torch.Tensor:
    """Half-symmetric KL divergence ``0.5 * (KL(p||q) + KL(q||p))`` over ``dim`` (broadcasting).

    Zero entries are floored at :data:`LOG_EPS` before the log, so the result is finite for any
    non-negative inputs.
    """
    log_ratio = torch.log(p.clamp_min(LOG_EPS)) - torch.log(q.clamp_min(LOG_EPS))
    return 0.5 * ((p - q) * log_ratio).sum(dim=dim)


def pairwise_symmetric_kl(x: torch.Tensor, y: torch.Tensor, *, eps: float | None = LOG_EPS) -> torch.Tensor:
    """All pairs ``D[i, j] = symmetric_kl(x[i], y[j])`` for ``x`` ``(A, D)`` and ``y`` ``(B, D)``, as matmuls.

    Args:
        x: ``(A, D)`` distributions.
        y: ``(B, D)`` distributions, same dtype.
        eps: floor before the log; ``None`` takes the raw log (the official numerics: any zero entry then
            makes every distance involving that row NaN, set explicitly rather than left to the BLAS).

    Returns:
        ``(A, B)`` distances in the inputs' dtype.
    """
    if eps is None:
        log_x, log_y = torch.log(x), torch.log(y)
    else:
        log_x, log_y = x.clamp_min(eps).log_(), y.clamp_min(eps).log_()
    # 0 * log(eps) = 0; with raw logs 0 * -inf = NaN, which marks a bad row below
    neg_entropy_x = _rowwise_dot(x, log_x)
    neg_entropy_y = _rowwise_dot(y, log_y)
    dist = torch.addmm(neg_entropy_x[:, None] + neg_entropy_y[None, :], x, log_y.T, alpha=-1.0)
    dist = torch.addmm(dist, log_x, y.T, alpha=-1.0)
    dist *= 0.5
    if eps is None:
        bad_x = ~torch.isfinite(log_x).all(1) | ~torch.isfinite(x).all(1)
        bad_y = ~torch.isfinite(log_y).all(1) | ~torch.isfinite(y).all(1)
        dist[bad_x] = float("nan")
        dist[:, bad_y] = float("nan")
    return dist


def _rowwise_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum(1)`` for ``(N, D)`` tensors without an ``(N, D)`` temporary."""
    return torch.bmm(a[:, None, :], b[:, :, None]).view(-1)


def greedy_merge(proposals: torch.Tensor, *, kl_threshold: float, exact_reference: bool = False) -> torch.Tensor:
    """One greedy merging pass over ``proposals`` ``(K, ...)`` (official iterations >= 1).

    Scan ``i = 0..K-1``; skip ``i`` if already matched, else mark it matched and form the group
    ``{j : D(P_i, P_j) < kl_threshold}`` over ALL proposals (earlier groups included, so groups may
    overlap); append the plain mean of the group and mark its members matched. Distances come from one
    ``K x K`` matrix in float64.

    Args:
        proposals: ``(K, ...)`` distributions over the trailing dims.
        kl_threshold: merge threshold (tau).
        exact_reference: raw logs as the official code (NaN rows match nothing, so they vanish); otherwise
            logs are floored and every proposal matches at least itself.

    Returns:
        ``(K', ...)`` merged proposals, ``K' <= K``, in the dtype of ``proposals``.
    """
    num = proposals.shape[0]
    if num == 0:
        return proposals
    flat = proposals.reshape(num, -1).to(torch.float64)
    dist = pairwise_symmetric_kl(flat, flat, eps=None if exact_reference else LOG_EPS)
    if not exact_reference:
        dist.fill_diagonal_(0.0)
    close = (dist < kl_threshold).cpu().numpy()
    matched = np.zeros(num, dtype=bool)
    groups = []
    for i in range(num):
        if matched[i]:
            continue
        matched[i] = True
        group = close[i]
        if group.any():
            matched |= group
            groups.append(group)
    if not groups:
        return proposals[:0]
    members = torch.from_numpy(np.stack(groups)).to(device=flat.device, dtype=torch.float64)
    merged = (members @ torch.nan_to_num(flat)) / members.sum(1, keepdim=True)
    return merged.to(proposals.dtype).reshape(len(groups), *proposals.shape[1:])


def merge_by_kl(
    aggregated: torch.Tensor,
    *,
    anchors: int | torch.Tensor,
    kl_thresholds: Sequence[float],
    exact_reference: bool = False,
) -> torch.Tensor:
    """Merge aggregated attention into segment proposals: anchor pass, then greedy passes.

    Args:
        aggregated: ``(N, S, S)`` attention, ``N = S*S``, row ``q`` = distribution of query pixel ``q``.
        anchors: anchors per side ``M`` (official 16) for :func:`anchor_grid`, or explicit ``(A, 2)``
            ``(row, col)`` anchor coordinates.
        kl_thresholds: one threshold per iteration (official ``[1.1] * 3`` COCO-Stuff, ``[0.9] * 3``
            Cityscapes); the first is the anchor pass.
        exact_reference: official numerics: anchor pass in float16 elementwise (an underflowed zero gives
            NaN distances, so that anchor's proposal is NaN and is dropped in the next pass), later passes
            in float64. Default: float32 matrix products with floored logs, never NaN.

    Returns:
        ``(K, S, S)`` proposals, float32 (float64 with ``exact_reference``). Never empty in the default mode;
        if nothing survives in the reference mode, one uniform proposal (a single segment) is returned.

    Raises:
        ConfigError: on a malformed tensor, anchors or thresholds.
    """
    if aggregated.dim() != 3 or aggregated.shape[1] != aggregated.shape[2]:
        raise ConfigError(f"`aggregated` must have shape (S*S, S, S), got {tuple(aggregated.shape)}")
    side = aggregated.shape[1]
    if aggregated.shape[0] != side * side:
        raise ConfigError(f"`aggregated` must have shape (S*S, S, S), got {tuple(aggregated.shape)}")
    thresholds = _check_thresholds(kl_thresholds)
    if exact_reference and len(thresholds) < 2:
        raise ConfigError(
            f"`kl_thresholds` must have at least 2 values with `exact_reference=True` (the official code "
            f"fails with a single iteration), got {thresholds}"
        )
    if isinstance(anchors, numbers.Integral) and not isinstance(anchors, bool):
        coords = anchor_grid(int(anchors), side, aggregated.device)
    else:
        coords = _check_anchor_coords(anchors, side)
    anchor_index = (coords[:, 0] * side + coords[:, 1]).to(aggregated.device)

    if exact_reference:
        flat = aggregated.reshape(side * side, -1).to(torch.float64)
        matches = _anchor_matches_reference(flat, anchor_index, thresholds[0])
        matches64 = matches.to(torch.float64)
        proposals = (matches64 @ flat) / matches64.sum(1, keepdim=True)  # 0/0 -> NaN, as the official code
    else:
        flat = aggregated.reshape(side * side, -1).to(torch.float32)
        dist = _anchor_distances(flat, anchor_index)
        rows = torch.arange(len(anchor_index), device=dist.device)
        dist[rows, anchor_index] = 0.0  # D(x, x) = 0 exactly: never unmatched
        matches = (dist < thresholds[0]).to(torch.float32)
        del dist
        proposals = (matches @ flat) / matches.sum(1, keepdim=True)
    logger.debug("anchor pass: %d proposals from %d anchors", proposals.shape[0], len(anchor_index))

    for threshold in thresholds[1:]:
        proposals = greedy_merge(proposals, kl_threshold=threshold, exact_reference=exact_reference)
        logger.debug("merge pass (tau=%g): %d proposals", threshold, proposals.shape[0])

    if proposals.shape[0] == 0:
        logger.warning("no proposal survived merging (official code would fail); returning a single segment")
        proposals = torch.full((1, side * side), 1.0 / (side * side), dtype=proposals.dtype, device=flat.device)
    return proposals.reshape(-1, side, side)


def _anchor_distances(flat: torch.Tensor, anchor_index: torch.Tensor) -> torch.Tensor:
    """``(A, N)`` symmetric KL between the anchor rows and all rows of ``flat`` ``(N, D)``, floored logs.

    Same as ``pairwise_symmetric_kl(flat[anchor_index], flat)``, computed over chunks of rows so the logs
    of all ``N`` maps are never held at once (less memory, and the chunk buffers stay in cache).
    """
    anchors = flat[anchor_index]
    log_anchors = anchors.clamp_min(LOG_EPS).log_()
    neg_entropy_anchors = _rowwise_dot(anchors, log_anchors)
    dist = torch.empty(anchors.shape[0], flat.shape[0], dtype=flat.dtype, device=flat.device)
    rows_per_chunk = min(flat.shape[0], max(1, _ANCHOR_CHUNK_ELEMENTS // flat.shape[1]))
    log_space = torch.empty(rows_per_chunk, flat.shape[1], dtype=flat.dtype, device=flat.device)
    entropy_space = torch.empty(rows_per_chunk, 1, 1, dtype=flat.dtype, device=flat.device)
    for start in range(0, flat.shape[0], rows_per_chunk):  # workspaces reused: no per-chunk allocation
        maps = flat[start : start + rows_per_chunk]
        log_maps = torch.clamp_min(maps, LOG_EPS, out=log_space[: maps.shape[0]]).log_()
        block = dist[:, start : start + rows_per_chunk]
        neg_entropy = torch.bmm(maps[:, None, :], log_maps[:, :, None], out=entropy_space[: maps.shape[0]])
        torch.add(neg_entropy_anchors[:, None], neg_entropy.view(1, -1), out=block)
        block.addmm_(anchors, log_maps.T, alpha=-1.0)
        block.addmm_(log_anchors, maps.T, alpha=-1.0)
    dist *= 0.5
    return dist


def _anchor_matches_reference(flat: torch.Tensor, anchor_index: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(A, N)`` bool: official ``KL(fp16(anchor), fp16(map)) < tau``, elementwise in float16, chunked."""
    half = flat.to(torch.float16)
    log_half = torch.log(half)
    num, dim = half.shape
    anchor_maps, anchor_logs = half[anchor_index], log_half[anchor_index]
    rows_per_chunk = max(1, _EXACT_CHUNK_ELEMENTS // dim)
    matches = torch.empty(len(anchor_index), num, dtype=torch.bool, device=flat.device)
    for a in range(len(anchor_index)):
        x, log_x = anchor_maps[a], anchor_logs[a]
        for start in range(0, num, rows_per_chunk):
            y = half[start : start + rows_per_chunk]
            quotient = log_x - log_half[start : start + rows_per_chunk]
            dist = (x * quotient).sum(1) / 2 - (y * quotient).sum(1) / 2
            matches[a, start : start + rows_per_chunk] = dist < threshold
    return matches


def _check_thresholds(kl_thresholds: Sequence[float]) -> list[float]:
    try:
        thresholds = [float(t) for t in kl_thresholds]
    except (TypeError, ValueError):
        raise ConfigError(f"`kl_thresholds` must be a sequence of numbers, got {kl_thresholds!r}") from None
    if not thresholds or any(not math.isfinite(t) or t <= 0 for t in thresholds):
        raise ConfigError(f"`kl_thresholds` must be a non-empty list of finite values > 0, got {thresholds}")
    return thresholds


def _check_anchor_coords(anchors: torch.Tensor, side: int) -> torch.Tensor:
    if not isinstance(anchors, torch.Tensor) or anchors.dim() != 2 or anchors.shape[1] != 2 or len(anchors) == 0:
        raise ConfigError(f"`anchors` must be an int or a (A, 2) tensor of (row, col), got {anchors!r}")
    coords = anchors.to(torch.long)
    if bool((coords < 0).any()) or bool((coords >= side).any()):
        raise ConfigError(
            f"`anchors` coordinates must lie in [0, {side - 1}], got min/max {coords.min()}/{coords.max()}"
        )
    return coords
