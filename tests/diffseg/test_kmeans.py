"""K-Means refinement with scikit-learn's Lloyd semantics, written in torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroseg.diffseg.aggregate import aggregate_attention
from zeroseg.diffseg.kmeans import lloyd_kmeans, refine_proposals
from zeroseg.errors import ConfigError

from .planted import planted_attention, quadrants

cluster = pytest.importorskip("sklearn.cluster")


def blobs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(4, 12))
    return np.concatenate([c + rng.normal(size=(40, 12)) for c in centres])


def sklearn_fit(data: np.ndarray, init: np.ndarray):
    return cluster.KMeans(n_clusters=len(init), init=init, n_init=1).fit(data)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_from_data_point_init(seed):
    data = blobs(seed)
    # initial centres on samples of the same blob: several Lloyd iterations are needed
    init = data[[0, 1, 2, 80]]
    reference = sklearn_fit(data, init)
    labels, centres = lloyd_kmeans(torch.from_numpy(data), torch.from_numpy(init))
    np.testing.assert_array_equal(labels.numpy(), reference.labels_)
    np.testing.assert_allclose(centres.numpy(), reference.cluster_centers_, rtol=1e-10, atol=1e-10)


def test_matches_sklearn_with_empty_cluster_relocation():
    data = blobs(3)
    init = np.concatenate([data[[0, 40, 80]], np.full((1, 12), 1e3)])  # the last centre attracts nothing
    reference = sklearn_fit(data, init)
    labels, centres = lloyd_kmeans(torch.from_numpy(data), torch.from_numpy(init))
    np.testing.assert_array_equal(labels.numpy(), reference.labels_)
    np.testing.assert_allclose(centres.numpy(), reference.cluster_centers_, rtol=1e-10, atol=1e-10)


def test_matches_sklearn_tolerance_stop():
    data = blobs(4)
    init = data[[0, 1, 2, 3]]
    for tol in (1e-4, 0.5):
        reference = cluster.KMeans(n_clusters=4, init=init, n_init=1, tol=tol).fit(data)
        labels, centres = lloyd_kmeans(torch.from_numpy(data), torch.from_numpy(init), tol=tol)
        np.testing.assert_array_equal(labels.numpy(), reference.labels_)
        np.testing.assert_allclose(centres.numpy(), reference.cluster_centers_, rtol=1e-10, atol=1e-10)


def test_refine_on_attention_matches_sklearn_cluster_means():
    gen = torch.Generator().manual_seed(0)
    maps = {s: torch.softmax(3 * torch.randn(s * s, s * s, generator=gen), 1) for s in (8, 4)}
    aggregated = aggregate_attention(maps)
    proposals = aggregated[[0, 9, 36, 63]]
    refined = refine_proposals(aggregated, proposals)
    rows = aggregated.reshape(64, -1).double().numpy()
    reference = sklearn_fit(rows, proposals.reshape(4, -1).double().numpy())
    expected = np.stack([rows[reference.labels_ == k].mean(0) for k in np.unique(reference.labels_)])
    np.testing.assert_allclose(refined.reshape(len(expected), -1).numpy(), expected, rtol=1e-5, atol=1e-7)


def test_refine_recovers_planted_regions_from_rough_proposals():
    region = quadrants(8)
    aggregated = aggregate_attention(planted_attention(region, [8, 4]))
    # rough initial proposals: mixtures of two quadrants, mostly one
    rows = aggregated.reshape(64, 8, 8)
    quadrant_maps = torch.stack([rows[0], rows[7], rows[56], rows[63]])
    rough = 0.7 * quadrant_maps + 0.3 * quadrant_maps.roll(1, 0)
    refined = refine_proposals(aggregated, rough)
    torch.testing.assert_close(refined, quadrant_maps)


def test_refine_skips_empty_clusters():
    aggregated = aggregate_attention(planted_attention(quadrants(8), [8]))
    rows = aggregated.reshape(64, 8, 8)
    # five initial centres for four distinct row values: Lloyd ends with one empty cluster
    init = torch.stack([rows[0], rows[7], rows[56], rows[63], rows[63]])
    labels, _ = lloyd_kmeans(aggregated.reshape(64, -1), init.reshape(5, -1))
    assert len(torch.unique(labels)) == 4
    refined = refine_proposals(aggregated, init)
    assert refined.shape == (4, 8, 8) and torch.isfinite(refined).all()
    torch.testing.assert_close(refined.sum((1, 2)), torch.ones(4))


def test_mismatched_shapes_raise():
    with pytest.raises(ConfigError, match="share"):
        refine_proposals(torch.ones(16, 4, 4), torch.ones(2, 3, 3))
    with pytest.raises(ConfigError, match="clusters"):
        lloyd_kmeans(torch.ones(2, 3), torch.ones(3, 3))
