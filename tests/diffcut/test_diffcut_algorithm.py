from __future__ import annotations

import pytest
import torch

from zeroseg.diffcut import segment_features
from zeroseg.errors import ConfigError

from .planted import planted_features, quadrant_labels, same_partition


def test_segment_features_recovers_quadrants_at_output_size():
    truth = quadrant_labels(16)
    feats = planted_features(truth).to(torch.float16)
    out = segment_features(feats, out_size=(32, 48))
    expected = torch.nn.functional.interpolate(truth[None, None].float(), size=(32, 48), mode="nearest")[0, 0]
    assert out.shape == (32, 48) and out.dtype == torch.long
    assert same_partition(out, expected.long())
    assert sorted(torch.unique(out).tolist()) == [0, 1, 2, 3]


def test_segment_features_with_image_snaps_to_the_image_edge():
    # Feature segments split the 16x16 grid at column 8; the image edge is at column 9 of 16 (36 of 64).
    truth = (torch.arange(16) >= 8).long().expand(16, 16)
    image = torch.zeros(3, 64, 64)
    image[0, :, 36:] = 1.0
    out = segment_features(planted_features(truth), out_size=(32, 32), image=image, pamr_iters=10)
    without = segment_features(planted_features(truth), out_size=(32, 32))
    expected = (torch.arange(32) >= 18).long().expand(32, 32)
    assert same_partition(without, (torch.arange(32) >= 16).long().expand(32, 32))
    assert same_partition(out, expected)


def test_exact_reference_runs_and_matches_on_clean_input():
    truth = quadrant_labels(16)
    feats = planted_features(truth)
    assert same_partition(segment_features(feats, out_size=(16, 16), exact_reference=True), truth)


def test_segment_features_rejects_bad_arguments():
    feats = torch.randn(4, 4, 4)
    with pytest.raises(ConfigError, match="`out_size`"):
        segment_features(feats, out_size=(0, 4))
    with pytest.raises(ConfigError, match="`features`"):
        segment_features(torch.randn(4, 4))
    with pytest.raises(ConfigError, match="`image`"):
        segment_features(feats, image=torch.rand(4, 8, 8))
    with pytest.raises(ConfigError, match="`tau`"):
        segment_features(feats, tau=float("inf"))


def test_pamr_at_a_bounded_working_resolution_keeps_the_segmentation():
    truth = (torch.arange(16) >= 8).long().expand(16, 16)
    image = torch.zeros(3, 64, 64)
    image[0, :, 36:] = 1.0
    kwargs = {"out_size": (64, 64), "image": image, "pamr_iters": 10}
    bounded = segment_features(planted_features(truth), pamr_max_pixels=32 * 32, **kwargs)
    expected = (torch.arange(64) >= 36).long().expand(64, 64)
    assert bounded.shape == (64, 64)
    assert min((bounded != expected).float().mean(), (bounded != 1 - expected).float().mean()) < 0.02
    unbounded = segment_features(planted_features(truth), pamr_max_pixels=0, **kwargs)
    assert torch.equal(segment_features(planted_features(truth), **kwargs), unbounded)  # 64x64 is within the default


def test_config_validates_pamr_max_pixels():
    from zeroseg.diffcut.config import DiffCutConfig

    assert DiffCutConfig().pamr_max_pixels == 1024 * 1024
    with pytest.raises(ConfigError, match="`pamr_max_pixels`"):
        DiffCutConfig(pamr_max_pixels=-1)
    with pytest.raises(ConfigError, match="`pamr_max_pixels`"):
        segment_features(torch.randn(4, 4, 4), pamr_max_pixels=-5)
