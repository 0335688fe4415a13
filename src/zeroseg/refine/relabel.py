"""Relabelling of integer label maps."""

from __future__ import annotations

import torch

_LOOKUP_MIN_SIZE = 1 << 16
"""Value ranges up to max(this, numel) are relabelled through a lookup table instead of a sort."""


def relabel_sequential(labels: torch.Tensor) -> torch.Tensor:
    """Map the values present in ``labels`` to 0..K-1, keeping their order.

    Non-negative labels with a small range (every label map here) go through a ``bincount`` lookup table,
    linear in the pixel count; anything else through ``torch.unique``, which sorts. Both give the same result.

    Args:
        labels: integer tensor of any shape.

    Returns:
        A ``torch.long`` tensor of the same shape whose values are contiguous from 0; the smallest input
        value becomes 0, the next one 1, and so on.
    """
    if labels.numel() > 0 and not labels.dtype.is_floating_point and labels.dtype != torch.bool:
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high < max(_LOOKUP_MIN_SIZE, labels.numel()):
            flat = labels.reshape(-1).to(torch.long)
            lookup = torch.cumsum(torch.bincount(flat, minlength=high + 1) > 0, 0) - 1
            return lookup[flat].reshape(labels.shape)
    _, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    return inverse.reshape(labels.shape).to(torch.long)
