"""Optional K-Means refinement of the merged proposals (DiffSeg ``refine=True``).

The official code fits ``sklearn.cluster.KMeans(n_clusters=K, init=P, n_init=1)`` on the ``S*S`` rows of
the aggregated attention and replaces each proposal by the mean of the rows in its cluster. This module
reimplements scikit-learn's Lloyd iteration in torch (same tolerance, convergence test, empty-cluster
relocation and final assignment) so scikit-learn stays an optional dependency.

References:
    Official code ``segmentor.py:generate_masks`` (refine branch); scikit-learn ``_kmeans_single_lloyd``.
"""

from __future__ import annotations

import logging

import torch

from zeroseg.errors import ConfigError

logger = logging.getLogger(__name__)

MAX_ITER = 300
"""Lloyd iterations at most (scikit-learn default, used by the official code)."""

TOL = 1e-4
"""Relative tolerance on the squared centre shift (scikit-learn default)."""

# Rows assigned at once; bounds the (rows, K) distance block and the row norms' temporaries.
_ROWS_PER_CHUNK = 1024


def lloyd_kmeans(
    data: torch.Tensor, init: torch.Tensor, *, max_iter: int = MAX_ITER, tol: float = TOL
) -> tuple[torch.Tensor, torch.Tensor]:
    """K-Means (Lloyd) from fixed initial centres with scikit-learn's semantics, in float64.

    The data are centred first (as scikit-learn does for dense input). Stops when the labels no longer
    change or when the summed squared centre shift is ``<= tol * mean(var(data, axis=0))``; unless the
    labels converged strictly, a final assignment step makes the labels match the returned centres. An
    empty cluster takes the sample farthest from its centre as its new centre.

    Args:
        data: ``(N, D)`` samples.
        init: ``(K, D)`` initial centres.
        max_iter: iteration cap (scikit-learn default 300).
        tol: relative tolerance (scikit-learn default 1e-4).

    Returns:
        ``(labels (N,) long, centres (K, D) float64)``.

    Raises:
        ConfigError: on mismatched shapes or ``K > N``.
    """
    if data.dim() != 2 or init.dim() != 2 or data.shape[1] != init.shape[1]:
        raise ConfigError(
            f"`data` (N, D) and `init` (K, D) must share D, got {tuple(data.shape)} and {tuple(init.shape)}"
        )
    if not 1 <= init.shape[0] <= data.shape[0]:
        raise ConfigError(f"number of clusters must be in [1, {data.shape[0]}], got {init.shape[0]}")
    x = data.to(torch.float64)
    mean = x.mean(0)
    x = x - mean
    centres = init.to(device=x.device, dtype=torch.float64) - mean
    threshold = float(x.var(0, unbiased=False).mean()) * tol
    sq_norms = (x * x).sum(1)

    labels_old = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
    strict = False
    for _ in range(max_iter):
        labels, sq_dists = _assign(x, sq_norms, centres)
        new_centres = _update_centres(x, labels, sq_dists, centres.shape[0])
        shift = float(((new_centres - centres) ** 2).sum())
        centres = new_centres
        if torch.equal(labels, labels_old):
            strict = True
            break
        if shift <= threshold:
            break
        labels_old = labels
    if not strict:
        labels, _ = _assign(x, sq_norms, centres)
    return labels, centres + mean


def refine_proposals(aggregated: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
    """Refine proposals by K-Means over the aggregated attention rows, initialised at the proposals.

    Args:
        aggregated: ``(N, S, S)`` aggregated attention (``N = S*S`` rows, each a distribution).
        proposals: ``(K, S, S)`` merged proposals, used as initial centres.

    Returns:
        ``(K', S, S)`` float32 proposals: the mean of the rows of each non-empty cluster, in cluster order
        (the official code assumes all ``K`` clusters are non-empty; empty ones are skipped here).

    Raises:
        ConfigError: on mismatched shapes.
    """
    if aggregated.dim() != 3 or proposals.dim() != 3 or aggregated.shape[1:] != proposals.shape[1:]:
        raise ConfigError(
            f"`aggregated` (N, S, S) and `proposals` (K, S, S) must share (S, S), got "
            f"{tuple(aggregated.shape)} and {tuple(proposals.shape)}"
        )
    num = aggregated.shape[0]
    rows = aggregated.reshape(num, -1).to(torch.float64)
    init = proposals.reshape(proposals.shape[0], -1)
    labels, _ = lloyd_kmeans(rows, init)
    counts = torch.bincount(labels, minlength=init.shape[0])
    sums = torch.zeros(init.shape[0], rows.shape[1], dtype=torch.float64, device=rows.device)
    sums.index_add_(0, labels, rows)
    keep = counts > 0
    refined = sums[keep] / counts[keep, None].to(torch.float64)
    logger.debug("K-Means refinement: %d -> %d proposals", init.shape[0], refined.shape[0])
    return refined.to(torch.float32).reshape(-1, *proposals.shape[1:])


def _assign(x: torch.Tensor, sq_norms: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of each row (first on ties) and the squared distance to it."""
    centre_norms = (centres * centres).sum(1)
    labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    sq_dists = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], _ROWS_PER_CHUNK):
        stop = start + _ROWS_PER_CHUNK
        dist = sq_norms[start:stop, None] - 2.0 * (x[start:stop] @ centres.T) + centre_norms[None, :]
        best, idx = dist.min(1)
        labels[start:stop] = idx
        sq_dists[start:stop] = best.clamp_min(0.0)
    return labels, sq_dists


def _update_centres(x: torch.Tensor, labels: torch.Tensor, sq_dists: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Cluster means; an empty cluster is moved onto the sample farthest from its current centre."""
    sums = torch.zeros(num_clusters, x.shape[1], dtype=x.dtype, device=x.device)
    sums.index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=num_clusters).to(x.dtype)
    empty = torch.nonzero(counts == 0).flatten()
    if len(empty) > 0:
        far = torch.topk(sq_dists, len(empty)).indices
        for cluster, sample in zip(empty.tolist(), far.tolist(), strict=True):
            old = int(labels[sample])
            sums[old] -= x[sample]
            counts[old] -= 1
            sums[cluster] = x[sample]
            counts[cluster] = 1
        logger.debug("K-Means: relocated %d empty clusters", len(empty))
    return sums / counts.clamp_min(1.0)[:, None]  # a cluster left empty keeps a zero sum, as scikit-learn
