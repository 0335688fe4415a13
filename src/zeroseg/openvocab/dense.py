"""Dense CLIP image features from a ConvNeXt tower, mask pooling, and the tower's head + projection.

The ConvNeXt trunk is run without its global pooling (``stem → stages → norm_pre``, FC-CLIP's
``clip_vis_dense``: stride 32), each segment's features are averaged over its mask, and the pooled vector goes
through the trunk head and the visual projection, so it lands in CLIP's joint embedding space.

References:
    DiffCut (Couairon et al., NeurIPS 2024), official ``tools/clip_classifier.py`` and ``tools/utils.py::
    MaskPooling``; FC-CLIP (Yu et al., NeurIPS 2023) ``clip.py::extract_features_convnext``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError

logger = logging.getLogger(__name__)

_TRUNK_PARTS = ("stem", "stages", "norm_pre", "head")


def check_convnext_tower(model: Any) -> None:
    """Check that ``model.visual`` is a timm ConvNeXt tower (dense features need one).

    Raises:
        ConfigError: the visual tower is not a timm ConvNeXt (e.g. a ViT).
    """
    visual = getattr(model, "visual", None)
    trunk = getattr(visual, "trunk", None)
    missing = [part for part in _TRUNK_PARTS if not hasattr(trunk, part)] if trunk is not None else ["trunk"]
    if missing or not hasattr(visual, "head"):
        kind = type(visual).__name__ if visual is not None else "none"
        raise ConfigError(
            f"Dense CLIP features need an open_clip model whose visual tower is a timm ConvNeXt (trunk.stem, "
            f"trunk.stages, trunk.norm_pre, trunk.head, head); got a {kind} tower lacking "
            f"{', '.join(missing) or 'head'}. Use e.g. `model_name`='convnext_large_d_320'"
        )


def extract_dense_features(model: Any, pixels: torch.Tensor) -> torch.Tensor:
    """Run the ConvNeXt trunk without pooling.

    Args:
        model: an open_clip model with a ConvNeXt tower (see :func:`check_convnext_tower`).
        pixels: ``(B, 3, H, W)`` image batch, already scaled/normalised as wanted.

    Returns:
        ``(B, C, H/32, W/32)`` features (C = 1536 for ConvNeXt-Large).
    """
    trunk = model.visual.trunk
    x = trunk.stem(pixels)
    for stage in trunk.stages:
        x = stage(x)
    return trunk.norm_pre(x)


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(B, Q, H, W)`` masks to ``size`` with nearest-exact sampling (official code), as float 0/1."""
    masks = masks.to(torch.float32)
    if tuple(masks.shape[-2:]) != tuple(size):
        masks = F.interpolate(masks, size=size, mode="nearest-exact")
    return (masks > 0).to(torch.float32)


def pool_masks(features: torch.Tensor, masks: torch.Tensor, *, keep_small_segments: bool = True) -> torch.Tensor:
    """Average the features inside each mask.

    Masks are resized to the feature grid with nearest-exact sampling and binarised, and each pooled vector is
    ``sum(features * mask) / (sum(mask) + 1e-8)`` (official ``MaskPooling``). A segment smaller than a feature
    cell can vanish on the grid; the official code then pools a zero vector. With ``keep_small_segments``
    (the default) such a segment is instead pooled with its area-fraction weights (area-resized mask), so it
    still gets its own features.

    Args:
        features: ``(B, C, h, w)`` dense features.
        masks: ``(B, Q, H, W)`` binary masks at any resolution.
        keep_small_segments: fall back to area weights for masks that vanish on the grid.

    Returns:
        ``(B, Q, C)`` pooled features.
    """
    size = (int(features.shape[-2]), int(features.shape[-1]))
    weights = resize_masks(masks, size)
    if keep_small_segments:
        empty = weights.sum(dim=(-1, -2)) == 0
        if bool(empty.any()):
            soft = F.adaptive_avg_pool2d((masks > 0).to(torch.float32), size) if masks.shape[-2:] != size else None
            if soft is not None:
                weights = torch.where(empty[..., None, None], soft, weights)
                logger.debug("%d segment(s) vanished on the %s feature grid; pooled by area", int(empty.sum()), size)
    weights = weights.to(features.dtype)
    denominator = weights.sum(dim=(-1, -2), keepdim=True) + 1e-8
    return torch.einsum("bchw,bqhw->bqc", features, weights / denominator)


def project_pooled(model: Any, pooled: torch.Tensor) -> torch.Tensor:
    """Map pooled trunk features into CLIP's embedding space and L2-normalise.

    Each vector goes through ``visual.trunk.head`` as a fake ``1×1`` map and then ``visual.head`` (the
    projection), as in FC-CLIP's ``visual_prediction_forward_convnext``.

    Args:
        model: the open_clip model.
        pooled: ``(B, Q, C)`` pooled features.

    Returns:
        ``(B, Q, D)`` unit-norm embeddings.
    """
    batch, num_queries, channels = pooled.shape
    x = pooled.reshape(batch * num_queries, channels, 1, 1)
    x = model.visual.trunk.head(x)
    x = model.visual.head(x)
    x = x.reshape(batch, num_queries, -1)
    return F.normalize(x, dim=-1)


def masks_from_labels(labels: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
    """One binary mask per segment id: ``(H, W)`` labels, ``(Q,)`` ids → ``(Q, H, W)`` float masks."""
    return (labels[None, :, :] == segment_ids[:, None, None]).to(torch.float32)


def embed_segments(
    model: Any, pixels: torch.Tensor, masks: torch.Tensor, *, keep_small_segments: bool = True
) -> torch.Tensor:
    """Dense features → mask pooling → head + projection → L2 norm.

    Args:
        model: open_clip model with a ConvNeXt tower.
        pixels: ``(B, 3, H, W)`` images ready for the trunk.
        masks: ``(B, Q, H', W')`` binary masks.
        keep_small_segments: see :func:`pool_masks`.

    Returns:
        ``(B, Q, D)`` unit-norm segment embeddings.
    """
    check_convnext_tower(model)
    features = extract_dense_features(model, pixels)
    pooled = pool_masks(features, masks.to(features.device), keep_small_segments=keep_small_segments)
    return project_pooled(model, pooled)
