"""Relabelling of integer label maps."""

from __future__ import annotations

import torch


def relabel_sequential(labels: torch.Tensor) -> torch.Tensor:
    """Map the values present in ``labels`` to 0..K-1, keeping their order.

    Args:
        labels: integer tensor of any shape.

    Returns:
        A ``torch.long`` tensor of the same shape whose values are contiguous from 0; the smallest input
        value becomes 0, the next one 1, and so on.
    """
    _, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    return inverse.reshape(labels.shape).to(torch.long)
