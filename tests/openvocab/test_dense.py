"""Dense ConvNeXt features, mask pooling against a naive mean, head + projection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError
from zeroseg.openvocab.dense import (
    check_convnext_tower,
    embed_segments,
    extract_dense_features,
    masks_from_labels,
    pool_masks,
    project_pooled,
    resize_masks,
)


def _naive_pool(features: torch.Tensor, labels: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """Mean of the feature cells whose nearest-exact label is each id, one loop per cell."""
    _, channels, h, w = features.shape
    small = F.interpolate(labels[None, None].float(), size=(h, w), mode="nearest-exact")[0, 0].long()
    out = torch.zeros(len(ids), channels)
    for q, segment_id in enumerate(ids):
        cells = [features[0, :, i, j] for i in range(h) for j in range(w) if small[i, j] == segment_id]
        if cells:
            out[q] = torch.stack(cells).mean(dim=0)
    return out


def test_pool_masks_matches_naive_per_segment_mean():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, 5, 6, 8, generator=generator)
    labels = torch.randint(0, 4, (6, 8), generator=generator).repeat_interleave(4, 0).repeat_interleave(4, 1)
    labels[:3, :5] = 7  # a ragged extra segment, not aligned to the grid
    ids = [0, 1, 2, 3, 7]
    masks = masks_from_labels(labels, torch.tensor(ids))[None]
    pooled = pool_masks(features, masks, keep_small_segments=False)[0]
    torch.testing.assert_close(pooled, _naive_pool(features, labels, ids), rtol=1e-5, atol=1e-6)


def test_planted_quadrant_features_pool_to_their_value():
    features = torch.zeros(1, 2, 4, 4)
    features[0, :, :2, :2] = torch.tensor([1.0, 2.0])[:, None, None]
    features[0, :, 2:, 2:] = torch.tensor([-3.0, 5.0])[:, None, None]
    labels = torch.zeros(64, 64, dtype=torch.long)
    labels[:32, :32] = 1
    labels[32:, 32:] = 2
    pooled = pool_masks(features, masks_from_labels(labels, torch.tensor([1, 2]))[None])[0]
    torch.testing.assert_close(pooled, torch.tensor([[1.0, 2.0], [-3.0, 5.0]]))


def test_resize_masks_uses_nearest_exact():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 1, 1] = 1  # nearest-exact 8→4 samples rows/cols 0.5·2=1, 3, 5, 7: pixel (1, 1) is kept
    assert resize_masks(mask, (4, 4))[0, 0, 0, 0] == 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 0, 0] = 1  # not sampled: vanishes
    assert resize_masks(mask, (4, 4)).sum() == 0


def test_vanishing_segment_zero_in_exact_mode_area_weighted_by_default():
    features = torch.arange(16.0).reshape(1, 1, 4, 4)
    labels = torch.zeros(32, 32, dtype=torch.long)
    labels[0, 0] = 1  # one pixel: vanishes on the 4×4 grid
    masks = masks_from_labels(labels, torch.tensor([0, 1]))[None]
    exact = pool_masks(features, masks, keep_small_segments=False)[0]
    assert exact[1, 0] == 0
    fixed = pool_masks(features, masks)[0]
    assert fixed[1, 0] == pytest.approx(0.0)  # area weights put it entirely in cell (0, 0), whose value is 0
    labels[0, 0], labels[31, 31] = 0, 1
    fixed = pool_masks(features, masks_from_labels(labels, torch.tensor([0, 1]))[None])[0]
    assert fixed[1, 0] == pytest.approx(15.0)
    torch.testing.assert_close(fixed[0], exact[0])  # segments that survive are unchanged


def test_dense_features_have_stride_32(tiny_clip):
    with torch.inference_mode():
        features = extract_dense_features(tiny_clip.model, torch.rand(1, 3, 96, 128))
    assert features.shape == (1, tiny_clip.model.visual.trunk.num_features, 3, 4)


def test_project_pooled_equals_head_then_projection(tiny_clip):
    model = tiny_clip.model
    pooled = torch.randn(2, 3, model.visual.trunk.num_features)
    with torch.inference_mode():
        out = project_pooled(model, pooled)
        single = model.visual.head(model.visual.trunk.head(pooled[1, 2][None, :, None, None]))[0]
    torch.testing.assert_close(out[1, 2], F.normalize(single, dim=0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 3))


def test_whole_image_mask_equals_global_average_pool_path(tiny_clip):
    """A segment covering the image must embed like the tower's own pooled forward (pool → head → proj)."""
    model = tiny_clip.model
    pixels = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        segment = embed_segments(model, pixels, torch.ones(1, 1, 64, 64))[0, 0]
        reference = F.normalize(model.encode_image(pixels)[0], dim=0)
    torch.testing.assert_close(segment, reference, rtol=1e-4, atol=1e-5)


def test_vit_tower_is_rejected_with_clear_message(tiny_vit_clip):
    with pytest.raises(ConfigError, match="ConvNeXt"):
        check_convnext_tower(tiny_vit_clip)
