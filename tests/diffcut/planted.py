"""Synthetic feature maps with planted segments (shared by the DiffCut tests)."""

from __future__ import annotations

import torch


def quadrant_labels(size: int) -> torch.Tensor:
    """(size, size) labels 0..3, one per quadrant."""
    half = size // 2
    rows = (torch.arange(size) >= half).long()
    return rows[:, None] * 2 + rows[None, :]


def planted_features(labels: torch.Tensor, *, channels: int = 32, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """(C, h, w) features: each label gets its own random unit direction, plus Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    num = int(labels.max()) + 1
    directions = torch.nn.functional.normalize(torch.randn(num, channels, generator=gen), dim=1)
    feats = directions[labels].permute(2, 0, 1)
    return feats + noise * torch.randn(feats.shape, generator=gen)


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when two label maps are equal up to a permutation of the labels."""
    a, b = a.reshape(-1), b.reshape(-1)
    pairs = torch.unique(torch.stack([a, b]), dim=1)
    return pairs.shape[1] == len(torch.unique(a)) == len(torch.unique(b))
