"""Recursive two-way Normalized Cut (Shi & Malik) as run by DiffCut.

One split: the generalised Fiedler vector of ``(D - W) y = lambda D y`` from a dense symmetric eigensolver,
then the best of 100 thresholds by the discrete NCut, evaluated for all thresholds at once. Splits are
accepted while the NCut stays below ``tau`` and explored depth first, as in the official
``recursive_ncut``; the accepted "y > threshold" masks are assembled into leaf labels exactly as the
official ``assemble_clusters`` does.

References:
    Couairon et al., "DiffCut: Catalyzing Zero-Shot Semantic Segmentation with Diffusion Features and
    Recursive Normalized Cut", NeurIPS 2024 (official code ``diffcut/recursive_normalized_cut.py``).
    Shi & Malik, "Normalized Cuts and Image Segmentation", TPAMI 2000.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import ThreadpoolController

from zeroseg.errors import ConfigError
from zeroseg.refine.relabel import relabel_sequential

logger = logging.getLogger(__name__)

NUM_THRESHOLDS = 100
"""Thresholds tried per split (``k=100`` in the official ``get_bipartition``)."""

THRESHOLD_SHRINK = 0.99
"""Thresholds span ``linspace(0.99 * min(y), 0.99 * max(y))`` (official code), so no side is empty."""


class Bipartition(NamedTuple):
    """Best two-way split of a graph.

    Attributes:
        side: (m,) bool, the "y > threshold" side (the one the official code appends and explores first).
        ncut: discrete NCut value of the split, cut(A,B)/assoc(A,V) + cut(A,B)/assoc(B,V).
        threshold: the threshold on the Fiedler vector that produced ``side``.
    """

    side: torch.Tensor
    ncut: float
    threshold: float


def fiedler_vector(affinity: torch.Tensor, *, exact_reference: bool = False) -> torch.Tensor | None:
    """Generalised Fiedler vector of a graph: the 2nd-smallest solution of ``(D - W) y = lambda D y``.

    Computed as in the official ``second_smallest_eigenvector``: ``u1``, the eigenvector of the second-smallest
    eigenvalue of ``D^-1/2 (D - W) D^-1/2``, mapped back by ``y = D^-1/2 u1``, then the sign fixed so that the
    entry of largest magnitude is positive (``deterministic_vector_sign_flip``). ``exact_reference`` computes
    the whole spectrum with ``torch.linalg.eigh``, as the official code; the default asks LAPACK for that one
    eigenpair only (``scipy.linalg.eigh`` with ``subset_by_index``, the MRRR driver), which skips the
    back-transformation of the other eigenvectors: 2-3x faster, the same vector up to rounding wherever the
    eigenvalue is separated from its neighbours (in an exactly degenerate eigenspace any vector of it is a
    Fiedler vector, and the two solvers may return different ones).

    Args:
        affinity: (m, m) symmetric non-negative affinity with m >= 2.
        exact_reference: use the official whole-spectrum solver.

    Returns:
        (m,) float vector, or None when the eigensolver fails or gives non-finite values (the official code
        crashes there; here the caller treats the region as a leaf).
    """
    degree = affinity.sum(1)
    inv_sqrt = degree.rsqrt()
    laplacian = torch.diag(degree) - affinity
    # Same operation order as D^-1/2 @ (D - W) @ D^-1/2 with diagonal matrices (exact products).
    laplacian = (inv_sqrt[:, None] * laplacian) * inv_sqrt[None, :]
    if not bool(torch.isfinite(laplacian).all()):
        logger.debug("non-finite normalised Laplacian (zero degree?): region kept as a leaf")
        return None
    try:
        u1 = _whole_spectrum_vector(laplacian) if exact_reference else _one_eigenvector(laplacian)
    except (torch.linalg.LinAlgError, np.linalg.LinAlgError, ValueError) as exc:
        logger.warning("eigensolver failed on a %d-node graph (%s): region kept as a leaf", len(degree), exc)
        return None
    y = inv_sqrt * u1
    if not bool(torch.isfinite(y).all()):
        logger.warning("eigensolver returned non-finite values on a %d-node graph: leaf", len(degree))
        return None
    sign = torch.sign(y[torch.argmax(y.abs())])
    return y * sign


def _whole_spectrum_vector(laplacian: torch.Tensor) -> torch.Tensor:
    """Eigenvector of the second-smallest eigenvalue from the whole spectrum (official ``torch.linalg.eigh``)."""
    return torch.linalg.eigh(laplacian)[1][:, 1]


def _one_eigenvector(laplacian: torch.Tensor) -> torch.Tensor:
    """Eigenvector of the second-smallest eigenvalue alone (LAPACK ``?syevr`` on that index).

    scipy's OpenBLAS runs on one thread here: its threads would contend with torch's OpenMP workers, which
    keep spinning between torch operations (on 2 cores the recursion then takes twice as long).
    """
    with _openblas().limit(limits=1):
        _, vector = scipy.linalg.eigh(
            laplacian.numpy(), subset_by_index=[1, 1], driver="evr", overwrite_a=True, check_finite=False
        )
    return torch.from_numpy(vector[:, 0])


@functools.cache
def _openblas() -> ThreadpoolController:
    """The OpenBLAS libraries loaded in this process (scipy's LAPACK among them), found once."""
    return ThreadpoolController().select(internal_api="openblas")


def ncut_values(affinity: torch.Tensor, degree: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Discrete NCut of many candidate splits at once.

    ``NCut(A) = cut(A, B) / assoc(A, V) + cut(A, B) / assoc(B, V)`` with ``B = V \\ A``; this equals the
    official Shi-Malik quadratic form ``z^T (D - W) z / z^T D z``. All candidates are evaluated with one
    (T, m) x (m, m) matrix product instead of a loop over thresholds.

    Args:
        affinity: (m, m) affinity W.
        degree: (m,) degrees, ``W.sum(1)``.
        candidates: (T, m) bool, True for the nodes in A.

    Returns:
        (T,) NCut values; NaN for a one-sided candidate (A or B empty), as in the official formula.
    """
    inside = candidates.to(affinity.dtype)
    outside = 1.0 - inside
    cut = ((inside @ affinity) * outside).sum(1)
    assoc_a = inside @ degree
    assoc_b = outside @ degree
    values = cut / assoc_a + cut / assoc_b
    count = candidates.sum(1)
    one_sided = (count == 0) | (count == candidates.shape[1])
    return values.masked_fill(one_sided, float("nan"))


def bipartition(
    affinity: torch.Tensor, *, num_thresholds: int = NUM_THRESHOLDS, exact_reference: bool = False
) -> Bipartition | None:
    """Best two-way split of a graph by thresholding its Fiedler vector (official ``get_bipartition``).

    Args:
        affinity: (m, m) affinity with m >= 2.
        num_thresholds: thresholds tried, evenly spaced in [0.99 min(y), 0.99 max(y)] (100, official code).
        exact_reference: the official whole-spectrum eigensolver (see :func:`fiedler_vector`).

    Returns:
        The split with the smallest discrete NCut (first one on ties), or None if the eigensolver failed or
        no threshold gives a two-sided split.
    """
    y = fiedler_vector(affinity, exact_reference=exact_reference)
    if y is None:
        return None
    thresholds = torch.linspace(
        float(y.min()) * THRESHOLD_SHRINK, float(y.max()) * THRESHOLD_SHRINK, num_thresholds, dtype=y.dtype
    )
    candidates = y[None, :] > thresholds[:, None]
    values = ncut_values(affinity, affinity.sum(1), candidates)
    finite = torch.isfinite(values)
    if not bool(finite.any()):
        return None
    best = int(torch.argmin(values.masked_fill(~finite, math.inf)))
    return Bipartition(side=candidates[best], ncut=float(values[best]), threshold=float(thresholds[best]))


def assemble_clusters(masks: Sequence[torch.Tensor], num_nodes: int) -> torch.Tensor:
    """Turn the accepted split masks into contiguous leaf labels (official ``assemble_clusters``).

    The official code runs ``mask += v * B; v = mask.max() + 1`` over the masks in DFS order, then maps the
    sorted unique values to 0..K-1. The weights ``v`` grow faster than the sum of all earlier ones, so the
    final order is that of the membership bits read from the last mask to the first; this is computed with
    ranks, which stay exact where the official float values would overflow or lose precision.

    Args:
        masks: accepted "y > threshold" sides in DFS order, each (num_nodes,) bool.
        num_nodes: number of graph nodes n.

    Returns:
        (n,) long labels 0..K-1 with K = 1 + len(masks) when every split is two-sided; all zeros if
        ``masks`` is empty.
    """
    rank = torch.zeros(num_nodes, dtype=torch.long)
    for mask in masks:
        rank = relabel_sequential(mask.to(torch.long) * (num_nodes + 1) + rank)
    return rank


def recursive_ncut(affinity: torch.Tensor, *, tau: float, exact_reference: bool = False) -> torch.Tensor:
    """Segment a graph by recursive two-way NCut (DiffCut, spec section 2).

    A region is split while its best discrete NCut is below ``tau``; the "y > threshold" side is explored
    first, then the other side (depth first, as the official recursion). Each child graph is the affinity
    restricted to the child's nodes, with edges to the outside dropped and degrees recomputed. There is no
    minimum size or depth limit; a region of one node, or one whose eigensolve fails, is a leaf.

    Args:
        affinity: (n, n) symmetric non-negative affinity (see ``compute_affinity``).
        tau: NCut threshold; larger values give finer segmentations (0.5, official code and paper).
        exact_reference: emulate the official ``idx2keep`` quirk: below the top level, a node whose row of
            the affinity holds an exact zero (e.g. the globally least similar pair, which min-max maps to 0)
            is left out of every sub-graph and keeps its parent's label; and solve for the whole spectrum, as
            the official code. The default keeps all nodes and computes only the Fiedler eigenpair.

    Returns:
        (n,) long labels, contiguous 0..K-1.

    Raises:
        ConfigError: if ``affinity`` is not square or ``tau`` is not a finite number.
    """
    if affinity.dim() != 2 or affinity.shape[0] != affinity.shape[1] or affinity.shape[0] == 0:
        raise ConfigError(f"`affinity` must be a non-empty (n, n) tensor, got shape {tuple(affinity.shape)}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau):
        raise ConfigError(f"`tau` must be a finite number, got {tau!r}")
    affinity = affinity.to(torch.float32)
    num_nodes = affinity.shape[0]
    has_zero = (affinity == 0).any(1) if exact_reference else None

    accepted: list[torch.Tensor] = []
    stack: list[tuple[torch.Tensor, int]] = [(torch.arange(num_nodes), 0)]
    while stack:
        nodes, level = stack.pop()
        if has_zero is not None and level > 0:
            nodes = nodes[~has_zero[nodes]]
        if nodes.numel() <= 1:
            continue
        graph = affinity if nodes.numel() == num_nodes else affinity[nodes][:, nodes]
        split = bipartition(graph, exact_reference=exact_reference)
        if split is None or not split.ncut < tau:
            continue
        side = torch.zeros(num_nodes, dtype=torch.bool)
        side[nodes[split.side]] = True
        accepted.append(side)
        logger.debug("level %d: split %d nodes (ncut %.4f)", level, nodes.numel(), split.ncut)
        # LIFO: the "y > threshold" side is explored first, then the other side.
        stack.append((nodes[~split.side], level + 1))
        stack.append((nodes[split.side], level + 1))
    return assemble_clusters(accepted, num_nodes)
