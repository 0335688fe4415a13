"""Aggregation of multi-resolution self-attention (official ``aggregate_weights``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zeroseg.diffseg.aggregate import aggregate_attention, aggregation_weights
from zeroseg.errors import ConfigError


def random_attention(side: int, generator: torch.Generator) -> torch.Tensor:
    logits = 4.0 * torch.randn(side * side, side * side, generator=generator)
    return torch.softmax(logits, dim=1)


def straightforward_aggregate(maps: dict[int, torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Per-resolution reference: full upsample, renormalise, repeat_interleave on the query dims."""
    largest = max(maps)
    out = torch.zeros(largest, largest, largest, largest, dtype=torch.float64)
    for side, weight in zip(sorted(maps, reverse=True), weights, strict=True):
        keys = maps[side].reshape(side * side, 1, side, side).double()
        keys = F.interpolate(keys, size=(largest, largest), mode="bilinear", align_corners=False)[:, 0]
        keys = keys / keys.sum((1, 2), keepdim=True)
        keys = keys.reshape(side, side, largest, largest)
        factor = largest // side
        keys = keys.repeat_interleave(factor, 0).repeat_interleave(factor, 1)
        out += weight * keys
    return out.reshape(largest * largest, largest, largest)


def test_weights_proportional_to_side_sd1():
    assert aggregation_weights([64, 32, 16, 8]) == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15])


@pytest.mark.parametrize(("sides", "expected"), [([32, 16], [2 / 3, 1 / 3]), ([64, 32], [2 / 3, 1 / 3]), ([64], [1.0])])
def test_weights_proportional_to_side_sdxl(sides, expected):
    assert aggregation_weights(sides) == pytest.approx(expected)


def test_rows_are_distributions_and_match_reference():
    gen = torch.Generator().manual_seed(0)
    maps = {side: random_attention(side, gen) for side in (16, 8, 4, 2)}
    out = aggregate_attention(maps)
    assert out.shape == (256, 16, 16)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.sum((1, 2)), torch.ones(256), atol=1e-5, rtol=0)
    expected = straightforward_aggregate(maps, [8 / 15, 4 / 15, 2 / 15, 1 / 15])
    torch.testing.assert_close(out.double(), expected, atol=1e-7, rtol=1e-5)


def test_sdxl_like_sides_use_largest_side():
    gen = torch.Generator().manual_seed(1)
    maps = {side: random_attention(side, gen) for side in (8, 4)}
    out = aggregate_attention(maps)
    assert out.shape == (64, 8, 8)
    torch.testing.assert_close(out.double(), straightforward_aggregate(maps, [2 / 3, 1 / 3]), atol=1e-7, rtol=1e-5)


def test_query_dims_are_block_repeated():
    gen = torch.Generator().manual_seed(2)
    coarse = random_attention(4, gen)
    maps = {8: random_attention(8, gen), 4: coarse}
    out = aggregate_attention(maps, weights=[0.0, 1.0]).reshape(8, 8, 8, 8)
    for i in range(8):
        for j in range(8):
            # query (i, j) of the 8-grid takes the row of coarse query (i // 2, j // 2)
            torch.testing.assert_close(out[i, j], out[(i // 2) * 2, (j // 2) * 2], atol=0, rtol=0)
    row = coarse[1 * 4 + 2].reshape(1, 1, 4, 4)
    up = F.interpolate(row, size=(8, 8), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(out[2, 5], up / up.sum())


def test_key_upsampling_hand_computed():
    # side-2 query rows that put all mass on key (0, 0): half-pixel bilinear to 4 gives the profile
    # [1, 0.75, 0.25, 0] per axis, i.e. the outer product, which sums to 2 * 2 = 4 before renormalising.
    coarse = torch.zeros(4, 4)
    coarse[:, 0] = 1.0
    out = aggregate_attention({4: torch.full((16, 16), 1 / 16), 2: coarse}, weights=[0.0, 1.0])
    profile = torch.tensor([1.0, 0.75, 0.25, 0.0])
    expected = torch.outer(profile, profile) / 4.0
    for query in range(16):
        torch.testing.assert_close(out[query], expected)


def test_single_side_is_identity():
    gen = torch.Generator().manual_seed(3)
    attn = random_attention(8, gen)
    torch.testing.assert_close(aggregate_attention({8: attn}), attn.reshape(64, 8, 8))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_input_computed_in_float32(dtype):
    gen = torch.Generator().manual_seed(4)
    maps = {side: random_attention(side, gen) for side in (8, 4)}
    out = aggregate_attention({side: attn.to(dtype) for side, attn in maps.items()})
    assert out.dtype == torch.float32
    reference = aggregate_attention({side: attn.to(dtype).float() for side, attn in maps.items()})
    torch.testing.assert_close(out, reference, atol=0, rtol=0)


def test_custom_weights_are_rescaled_to_sum_one():
    gen = torch.Generator().manual_seed(5)
    maps = {side: random_attention(side, gen) for side in (8, 4)}
    torch.testing.assert_close(aggregate_attention(maps, weights=[2.0, 2.0]), aggregate_attention(maps, weights=[1, 1]))
    torch.testing.assert_close(aggregate_attention(maps, weights=[1, 1]).sum((1, 2)), torch.ones(64))


@pytest.mark.parametrize(
    ("maps", "match"),
    [
        ({}, "non-empty"),
        ({8: torch.ones(64, 63)}, r"maps\[8\]"),
        ({8: torch.ones(64, 64, dtype=torch.long)}, "floating-point"),
        ({8: torch.ones(64, 64) / 64, 3: torch.ones(9, 9) / 9}, "does not divide"),
    ],
)
def test_invalid_maps_raise(maps, match):
    with pytest.raises(ConfigError, match=match):
        aggregate_attention(maps)


def test_invalid_weights_raise():
    maps = {4: torch.ones(16, 16) / 16, 2: torch.ones(4, 4) / 4}
    with pytest.raises(ConfigError, match="`weights`"):
        aggregate_attention(maps, weights=[1.0])
    with pytest.raises(ConfigError, match="`weights`"):
        aggregate_attention(maps, weights=[1.0, -1.0])
