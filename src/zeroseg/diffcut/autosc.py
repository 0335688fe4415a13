"""AutoSC: the paper's k-way spectral clustering baseline with an eigengap choice of k (spec section 2).

For each exponent alpha of the DiffCut affinity, the normalised Laplacian is eigendecomposed and the
relative eigengap ``reg = (lambda - cummean(lambda)) / (cummean(lambda) + 1e-6)`` is computed; the alpha with
the largest gap wins, the number of clusters is the position of that gap, and the generalised eigenvectors
are discretised with ``cluster_qr`` (Damle et al.). The result is upsampled by concept assignment like
DiffCut.

References:
    Couairon et al., NeurIPS 2024, Tab. 2 "AutoSC" (official ``diffcut/autosc.py::DiffCut_AutoSC``).
    Damle, Minden & Ying, "Simple, direct and efficient multi-way spectral clustering", 2019.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.linalg
import torch

from zeroseg.diffcut.affinity import compute_affinity, normalize_features
from zeroseg.diffcut.assign import DEFAULT_CHUNK_PIXELS, assign_concepts
from zeroseg.errors import ConfigError
from zeroseg.refine.relabel import relabel_sequential

logger = logging.getLogger(__name__)

DEFAULT_ALPHAS = (1, 5, 10, 15)
"""Affinity exponents tried by the official baseline."""


class EigengapChoice(NamedTuple):
    """Outcome of the eigengap search.

    Attributes:
        labels: (n,) long cluster labels on the graph nodes (not yet contiguous).
        alpha: the exponent with the largest relative eigengap.
        num_clusters: k, the position of that gap (at least 1).
    """

    labels: torch.Tensor
    alpha: float
    num_clusters: int


def spectral_embedding(affinity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues of ``D^-1/2 (D - W) D^-1/2`` and the generalised eigenvectors ``D^-1/2 U``.

    Args:
        affinity: (n, n) affinity W.

    Returns:
        (n,) ascending eigenvalues and (n, n) generalised eigenvectors (columns).
    """
    degree = affinity.sum(1)
    inv_sqrt = degree.rsqrt()
    laplacian = (inv_sqrt[:, None] * (torch.diag(degree) - affinity)) * inv_sqrt[None, :]
    values, vectors = torch.linalg.eigh(laplacian)
    return values, inv_sqrt[:, None] * vectors


def relative_eigengap(values: torch.Tensor) -> torch.Tensor:
    """``(lambda_i - mean(lambda_0..i)) / (mean(lambda_0..i) + 1e-6)`` for each i (official code)."""
    cummean = torch.cumsum(values, 0) / torch.arange(1, values.numel() + 1, dtype=values.dtype)
    return (values - cummean) / (cummean + 1e-6)


def cluster_qr(vectors: np.ndarray) -> np.ndarray:
    """Discretise a spectral embedding by column-pivoted QR (Damle et al. 2019, as sklearn's cluster_qr).

    Args:
        vectors: (n, k) embedding, one row per node.

    Returns:
        (n,) int labels in 0..k-1.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    k = vectors.shape[1]
    _, _, pivots = scipy.linalg.qr(vectors.T, pivoting=True)
    left, _, right = scipy.linalg.svd(vectors[pivots[:k], :].T)
    return np.abs(vectors @ (left @ right.conj())).argmax(axis=1)


def choose_by_eigengap(
    base_affinity: torch.Tensor, *, alphas: Sequence[float] = DEFAULT_ALPHAS, exact_reference: bool = False
) -> EigengapChoice:
    """Pick alpha and k by the largest relative eigengap, then cluster with ``cluster_qr``.

    Args:
        base_affinity: (n, n) min-max rescaled cosine affinity (``compute_affinity(..., alpha=1)``).
        alphas: exponents to try, in order (ties keep the first).
        exact_reference: reproduce the official bug of clustering the eigenvectors of the **last** alpha
            with the k chosen for the selected one. The default uses the selected alpha's eigenvectors.

    Returns:
        The labels, the chosen alpha and k. k is at least 1 (the official code can reach k = 0 and crash;
        here that gives a single cluster).
    """
    best_gap, best_alpha, best_k, best_vectors = -math.inf, float(alphas[0]), 1, None
    vectors = None
    for alpha in alphas:
        values, vectors = spectral_embedding(base_affinity.pow(alpha))
        gaps = relative_eigengap(values)
        gap = float(gaps.max())
        logger.debug("alpha %s: max relative eigengap %.4f at %d", alpha, gap, int(gaps.argmax()))
        if gap > best_gap:
            best_gap, best_alpha, best_k, best_vectors = gap, float(alpha), int(gaps.argmax()), vectors
    best_k = max(best_k, 1)
    embedding = vectors if exact_reference else best_vectors
    labels = cluster_qr(embedding[:, :best_k].cpu().numpy())
    return EigengapChoice(torch.from_numpy(labels).to(torch.long), best_alpha, best_k)


def segment_autosc(
    features: torch.Tensor,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    out_size: tuple[int, int] = (128, 128),
    exact_reference: bool = False,
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
) -> torch.Tensor:
    """Segment a feature map with the AutoSC baseline, then assign concepts at ``out_size``.

    Args:
        features: (C, h, w) captured features (any float dtype; normalised here).
        alphas: affinity exponents tried ((1, 5, 10, 15), official code).
        out_size: output (H, W) ((128, 128) in the official unsupervised evaluation).
        exact_reference: reproduce the official eigenvector bug and the dot-product concept scores.
        chunk_pixels: output pixels scored at once in concept assignment.

    Returns:
        (H, W) long labels, contiguous from 0.

    Raises:
        ConfigError: if ``alphas`` is empty or holds a non-positive value.
    """
    values = tuple(alphas)
    if not values or any(isinstance(a, bool) or not math.isfinite(a) or a <= 0 for a in values):
        raise ConfigError(f"`alphas` must be a non-empty sequence of finite numbers > 0, got {alphas!r}")
    feats = normalize_features(features)
    base = compute_affinity(feats, alpha=1)
    choice = choose_by_eigengap(base, alphas=values, exact_reference=exact_reference)
    grid = choice.labels.reshape(feats.shape[1:])
    labels = assign_concepts(feats, grid, out_size, chunk_pixels=chunk_pixels, exact_reference=exact_reference)
    return relabel_sequential(labels)
