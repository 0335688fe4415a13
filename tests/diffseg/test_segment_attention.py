"""End-to-end DiffSeg on planted self-attention whose right segmentation is known."""

from __future__ import annotations

import pytest
import torch

from zeroseg.diffseg import segment_attention
from zeroseg.diffseg.algorithm import per_iteration_thresholds
from zeroseg.errors import ConfigError

from .planted import labels_at, planted_attention, quadrants, same_partition, stripes

SD1_SIDES = [64, 32, 16, 8]


@pytest.fixture(scope="module")
def quadrant_maps():
    region = quadrants(64)
    return region, planted_attention(region, SD1_SIDES)


@pytest.mark.parametrize("out_size", [64, 512, (96, 160)])
def test_recovers_quadrants(quadrant_maps, out_size):
    region, maps = quadrant_maps
    labels = segment_attention(maps, out_size=out_size)
    size = (out_size, out_size) if isinstance(out_size, int) else out_size
    assert labels.shape == size and labels.dtype == torch.long
    assert sorted(torch.unique(labels).tolist()) == [0, 1, 2, 3]
    assert same_partition(labels, labels_at(region, size))


def test_recovers_stripes_of_unequal_height():
    region = stripes(64, [16, 48])
    labels = segment_attention(planted_attention(region, SD1_SIDES), out_size=64)
    assert same_partition(labels, region)


def test_recovers_stripes_at_non_square_output():
    region = stripes(32, [8, 8, 8, 8])
    # sizes chosen so that no output pixel centre falls exactly on a stripe border (a bilinear tie)
    labels = segment_attention(planted_attention(region, [32, 16, 8]), out_size=(52, 72))
    assert same_partition(labels, labels_at(region, (52, 72)))


def test_sdxl_like_sides():
    region = quadrants(32)
    labels = segment_attention(planted_attention(region, [32, 16]), anchors=8, out_size=(64, 48))
    assert same_partition(labels, labels_at(region, (64, 48)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_maps(dtype):
    region = quadrants(16)
    maps = planted_attention(region, [16, 8, 4])
    labels = segment_attention({s: m.to(dtype) for s, m in maps.items()}, anchors=4, out_size=16)
    assert same_partition(labels, region)


def test_exact_reference_agrees_on_well_conditioned_input():
    region = stripes(16, [4, 4, 8])
    maps = planted_attention(region, [16, 8, 4])
    default = segment_attention(maps, anchors=8, out_size=(40, 24))
    exact = segment_attention(maps, anchors=8, out_size=(40, 24), exact_reference=True)
    assert torch.equal(default, exact)
    exact_native = segment_attention(maps, anchors=8, out_size=16, exact_reference=True)
    assert same_partition(exact_native, region)


def test_refine_keeps_planted_segmentation():
    region = quadrants(16)
    labels = segment_attention(planted_attention(region, [16, 8]), anchors=4, refine=True, out_size=32)
    assert same_partition(labels, labels_at(region, (32, 32)))


def test_per_iteration_thresholds():
    region = quadrants(16)
    maps = planted_attention(region, [16, 8])
    four = segment_attention(maps, kl_threshold=[1.1, 1.1, 1.1], anchors=4, out_size=16)
    assert same_partition(four, region)
    # the last pass with a huge threshold merges everything into one segment
    one = segment_attention(maps, kl_threshold=[1.1, 1.1, 1e6], anchors=4, out_size=16)
    assert torch.equal(one, torch.zeros(16, 16, dtype=torch.long))
    two = segment_attention(maps, kl_threshold=[1.1, 1.1], iterations=2, anchors=4, out_size=16)
    assert torch.equal(two, four)


def test_single_iteration_is_anchor_pass_only():
    region = quadrants(16)
    maps = planted_attention(region, [16, 8])
    labels = segment_attention(maps, iterations=1, anchors=4, out_size=16)
    assert same_partition(labels, region)
    with pytest.raises(ConfigError, match="exact_reference"):
        segment_attention(maps, iterations=1, anchors=4, exact_reference=True)


def test_threshold_expansion_and_validation():
    assert per_iteration_thresholds(0.9, 3) == [0.9, 0.9, 0.9]
    assert per_iteration_thresholds((1.1, 0.9), 2) == [1.1, 0.9]
    with pytest.raises(ConfigError, match="iterations"):
        per_iteration_thresholds([1.1, 0.9], 3)
    with pytest.raises(ConfigError, match="kl_threshold"):
        per_iteration_thresholds(-1.0, 3)
    with pytest.raises(ConfigError, match="kl_threshold"):
        per_iteration_thresholds("1.1", 3)
    with pytest.raises(ConfigError, match="iterations"):
        per_iteration_thresholds(1.1, 0)


def test_invalid_settings_raise():
    maps = planted_attention(quadrants(8), [8, 4])
    with pytest.raises(ConfigError, match="anchors|num_per_side"):
        segment_attention(maps, anchors=9)
    with pytest.raises(ConfigError, match="out_size"):
        segment_attention(maps, anchors=2, out_size=0)
    with pytest.raises(ConfigError, match="maps"):
        segment_attention({8: torch.ones(64, 60)}, anchors=2)


def test_accepts_numpy_integers():
    np = pytest.importorskip("numpy")
    region = quadrants(8)
    labels = segment_attention(planted_attention(region, [8, 4]), anchors=np.int64(2), out_size=(np.int64(8), 8))
    assert same_partition(labels, region)
