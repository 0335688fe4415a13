"""K-Means-C / K-Means-S / AutoSC baselines on planted structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroseg.errors import ConfigError
from zeroseg.eval.baselines import Baseline
from zeroseg.eval.matching import match_image

pytest.importorskip("sklearn")


def _planted_features(seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """(16, 8, 8) features: four quadrants around four orthogonal directions, plus small noise."""
    gen = torch.Generator().manual_seed(seed)
    truth = np.zeros((8, 8), dtype=np.int64)
    truth[:4, 4:], truth[4:, :4], truth[4:, 4:] = 1, 2, 3
    feats = torch.zeros(16, 8, 8)
    for k in range(4):
        feats[k][torch.from_numpy(truth == k)] = 1.0
    return feats + 0.05 * torch.rand(16, 8, 8, generator=gen), truth


def test_kmeans_s_on_features_recovers_planted_quadrants():
    feats, truth = _planted_features()
    labels = Baseline("kmeans-s").predict({"features": feats}, output_size=(16, 16), num_gt_classes=4)
    assert labels.shape == (16, 16)
    gt = np.kron(truth, np.ones((2, 2), dtype=np.int64))
    counts = match_image(gt, labels.numpy(), 4)
    assert counts.fp.sum() == 0 and counts.fn.sum() == 0


def test_kmeans_c_uses_a_constant_k():
    feats, _ = _planted_features()
    labels = Baseline("kmeans-c", k=2).predict({"features": feats}, output_size=(8, 8), num_gt_classes=4)
    assert np.unique(labels.numpy()).size == 2


def test_kmeans_on_diffseg_attention_recovers_planted_regions():
    pytest.importorskip("zeroseg.diffseg.aggregate")
    # 8x8 grid: each query attends uniformly to its own half (left / right); a 4x4 map with the same structure
    truth = np.zeros((8, 8), dtype=np.int64)
    truth[:, 4:] = 1

    def attention(side: int) -> torch.Tensor:
        halves = torch.zeros(side, side)
        halves[:, side // 2 :] = 1
        flat = halves.reshape(-1)
        rows = torch.stack([(flat == flat[q]).float() for q in range(side * side)])
        return rows / rows.sum(1, keepdim=True)

    capture = {"attn_8": attention(8), "attn_4": attention(4)}
    labels = Baseline("kmeans-c", k=2).predict(capture, output_size=(8, 8), num_gt_classes=2)
    counts = match_image(truth, labels.numpy(), 2)
    assert counts.fp.sum() == 0 and counts.fn.sum() == 0


def test_autosc_on_planted_features():
    pytest.importorskip("zeroseg.diffcut.autosc")
    feats, truth = _planted_features()
    labels = Baseline("autosc").predict({"features": feats}, output_size=(8, 8), num_gt_classes=4)
    counts = match_image(truth, labels.numpy(), 4)
    assert counts.tp.sum() / counts.valid > 0.9


def test_baseline_errors():
    with pytest.raises(ConfigError, match="`baseline` must be one of"):
        Baseline("kmeans")
    with pytest.raises(ConfigError, match="DiffCut features"):
        Baseline("autosc").predict({"attn_8": torch.ones(64, 64)}, output_size=(8, 8), num_gt_classes=2)
