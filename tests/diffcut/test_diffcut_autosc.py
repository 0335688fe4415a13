from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroseg.diffcut import compute_affinity, normalize_features, segment_autosc
from zeroseg.diffcut.autosc import choose_by_eigengap, cluster_qr, relative_eigengap, spectral_embedding
from zeroseg.errors import ConfigError

from .planted import planted_features, quadrant_labels, same_partition


def test_relative_eigengap_by_hand():
    values = torch.tensor([0.0, 0.0, 1.0, 1.0])
    # cummean = [0, 0, 1/3, 1/2]
    expected = torch.tensor([0.0, 0.0, (1 - 1 / 3) / (1 / 3 + 1e-6), (1 - 0.5) / (0.5 + 1e-6)])
    torch.testing.assert_close(relative_eigengap(values), expected)


def test_cluster_qr_on_indicator_embedding():
    labels = np.array([0, 0, 1, 2, 2, 1, 0])
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    vectors = np.eye(3)[labels] @ rotation + 0.01 * rng.normal(size=(7, 3))
    assert same_partition(torch.from_numpy(cluster_qr(vectors)), torch.from_numpy(labels))


def test_autosc_recovers_planted_clusters():
    truth = quadrant_labels(16)
    out = segment_autosc(planted_features(truth), out_size=(16, 16))
    assert same_partition(out, truth)
    assert out.dtype == torch.long and sorted(torch.unique(out).tolist()) == [0, 1, 2, 3]


def test_exact_reference_uses_the_last_alpha_eigenvectors():
    truth = quadrant_labels(8).reshape(-1)
    feats = normalize_features(planted_features(quadrant_labels(8), channels=8, noise=0.1, seed=0))
    base = compute_affinity(feats, alpha=1)
    # alpha = 15 has the larger eigengap; listing it first makes the official bug visible (last = 1).
    fixed = choose_by_eigengap(base, alphas=(15, 1))
    quirk = choose_by_eigengap(base, alphas=(15, 1), exact_reference=True)
    assert (fixed.alpha, fixed.num_clusters) == (quirk.alpha, quirk.num_clusters) == (15, 4)
    _, selected = spectral_embedding(base.pow(15))
    _, last = spectral_embedding(base.pow(1))
    assert torch.equal(fixed.labels, torch.from_numpy(cluster_qr(selected[:, :4].numpy())))
    assert torch.equal(quirk.labels, torch.from_numpy(cluster_qr(last[:, :4].numpy())))
    assert same_partition(fixed.labels, truth)
    assert not same_partition(quirk.labels, truth)


def test_number_of_clusters_is_at_least_one():
    choice = choose_by_eigengap(torch.ones(10, 10))
    assert choice.num_clusters >= 1 and torch.equal(choice.labels, torch.zeros(10, dtype=torch.long))


def test_autosc_rejects_bad_alphas():
    with pytest.raises(ConfigError, match="`alphas`"):
        segment_autosc(torch.randn(4, 4, 4), alphas=())
