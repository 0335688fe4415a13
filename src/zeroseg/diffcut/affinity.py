"""Feature normalisation and the dense cosine affinity graph of DiffCut."""

from __future__ import annotations

import logging
import math

import torch

from zeroseg.errors import ConfigError

logger = logging.getLogger(__name__)


def normalize_features(features: torch.Tensor) -> torch.Tensor:
    """Cast a captured feature map to float32 and L2-normalise it over channels.

    Args:
        features: (C, h, w) feature map in any float dtype (the UNet capture is float16).

    Returns:
        (C, h, w) float32 tensor whose per-pixel vectors have unit norm (zero vectors stay zero), as
        ``F.normalize(dim=1)`` in the official ``generate_masks``.

    Raises:
        ConfigError: if ``features`` is not a non-empty 3-D float tensor.
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 3 or not features.is_floating_point():
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ConfigError(f"`features` must be a (C, h, w) float tensor, got {shape}")
    if features.numel() == 0:
        raise ConfigError(f"`features` must be non-empty, got shape {tuple(features.shape)}")
    feats = features.to(torch.float32)
    return torch.nn.functional.normalize(feats, p=2.0, dim=0)


def compute_affinity(features: torch.Tensor, *, alpha: float = 10) -> torch.Tensor:
    """Build the DiffCut affinity ``W = minmax(X^T X) ** alpha`` (paper Eq. 3, spec section 2).

    The cosine similarities of the normalised node features are rescaled to [0, 1] by one global min-max
    and raised elementwise to ``alpha`` (the paper's "soft thresholding"). There is no kNN, threshold or
    spatial term, and the diagonal (1 after the rescaling) is kept, so self-loops count in the degree.

    Args:
        features: L2-normalised node features, (C, h, w) or (C, N).
        alpha: exponent; 10 in the official code and for every dataset in the paper.

    Returns:
        (N, N) float32 affinity with N = h * w. If all similarities are equal (a constant feature map) the
        official min-max divides by zero; here the affinity is then all ones (one cluster).

    Raises:
        ConfigError: if ``alpha`` is not a finite positive number.
    """
    valid = isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
    if not valid or not math.isfinite(alpha) or alpha <= 0:
        raise ConfigError(f"`alpha` must be a finite number > 0, got {alpha!r}")
    x = features.reshape(features.shape[0], -1).to(torch.float32)
    cosine = x.T @ x
    low, high = cosine.min(), cosine.max()
    span = high - low
    if not torch.isfinite(span) or span <= 0:
        logger.debug("constant affinity (span %s): returning an all-ones graph", float(span))
        return torch.ones_like(cosine)
    cosine.sub_(low).div_(span)
    return cosine.pow_(alpha)
