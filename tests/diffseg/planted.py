"""Planted-structure self-attention: every query attends uniformly to its own region (plus a small floor)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def quadrants(side: int) -> torch.Tensor:
    """``(side, side)`` labels: four equal quadrants 0, 1 / 2, 3."""
    half = side // 2
    labels = torch.zeros(side, side, dtype=torch.long)
    labels[:half, half:] = 1
    labels[half:, :half] = 2
    labels[half:, half:] = 3
    return labels


def stripes(side: int, heights: list[int]) -> torch.Tensor:
    """``(side, side)`` labels: horizontal stripes of the given heights (in pixels of ``side``)."""
    assert sum(heights) == side
    return torch.repeat_interleave(torch.arange(len(heights)), torch.tensor(heights))[:, None].expand(side, side)


def planted_attention(region: torch.Tensor, sides: list[int], *, floor: float = 0.05) -> dict[int, torch.Tensor]:
    """Self-attention for each grid side: ``(1 - floor)`` uniform over the query's region + ``floor`` uniform.

    ``region`` is the ``(S, S)`` label map at the largest side; region borders must be aligned with the
    blocks of every smaller side, so the coarse grids see the same regions.
    """
    size = region.shape[0]
    maps = {}
    for side in sides:
        coarse = region[:: size // side, :: size // side].reshape(-1)
        same = (coarse[:, None] == coarse[None, :]).to(torch.float64)
        attn = (1 - floor) * same / same.sum(1, keepdim=True) + floor / (side * side)
        maps[side] = attn.to(torch.float32)
    return maps


def labels_at(region: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Planted labels resampled to ``out_size`` by the nearest source pixel centre."""
    resized = F.interpolate(region[None, None].float(), size=out_size, mode="nearest-exact")
    return resized[0, 0].long()


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two label maps are equal up to a permutation of the label values."""
    if a.shape != b.shape:
        return False
    pairs = torch.unique(torch.stack([a.reshape(-1), b.reshape(-1)]), dim=1)
    return pairs.shape[1] == torch.unique(a).numel() == torch.unique(b).numel()
