"""Anchor grid, symmetric KL and iterative merging (official ``mask_merge``)."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from zeroseg.diffseg.aggregate import aggregate_attention
from zeroseg.diffseg.merge import (
    anchor_grid,
    greedy_merge,
    merge_by_kl,
    pairwise_symmetric_kl,
    symmetric_kl,
)
from zeroseg.errors import ConfigError

from .planted import planted_attention, quadrants, stripes


@pytest.mark.parametrize(
    ("num", "coords"),
    [
        (4, [0, 21, 42, 63]),
        (8, list(range(0, 64, 9))),
        (16, list(range(1, 62, 4))),
        (32, list(range(0, 63, 2))),
    ],
)
def test_anchor_grid_matches_official_sampling_grid(num, coords):
    grid = anchor_grid(num, 64)
    assert grid.shape == (num * num, 2)
    assert grid.dtype == torch.long
    expected = torch.tensor([[r, c] for r in coords for c in coords])  # row-major, row slowest
    torch.testing.assert_close(grid, expected)


def test_anchor_grid_other_sides():
    assert anchor_grid(4, 16)[:4, 1].tolist() == [0, 5, 10, 15]
    assert anchor_grid(2, 8).tolist() == [[0, 0], [0, 7], [7, 0], [7, 7]]
    # 32 grid (SDXL-family at 512 px): step 31 // 15 = 2, centred start 0
    assert anchor_grid(16, 32)[:16, 1].tolist() == list(range(0, 31, 2))


@pytest.mark.parametrize("num", [0, 1, 65, 2.5, True])
def test_anchor_grid_rejects_bad_counts(num):
    with pytest.raises(ConfigError, match="num_per_side"):
        anchor_grid(num, 64)


def test_symmetric_kl_hand_computed():
    p = torch.tensor([0.5, 0.5], dtype=torch.float64)
    q = torch.tensor([0.9, 0.1], dtype=torch.float64)
    kl_pq = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # 0.510826
    kl_qp = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)  # 0.368064
    assert symmetric_kl(p, q).item() == pytest.approx(0.5 * (kl_pq + kl_qp), rel=1e-12)
    assert symmetric_kl(p, q).item() == pytest.approx(0.439445, abs=1e-6)
    assert symmetric_kl(q, p).item() == pytest.approx(symmetric_kl(p, q).item(), rel=1e-12)
    assert symmetric_kl(p, p).item() == 0.0


def test_symmetric_kl_over_two_dims_and_zero_entries():
    p = torch.tensor([[0.5, 0.0], [0.25, 0.25]])
    q = torch.full((2, 2), 0.25)
    value = symmetric_kl(p, q, dim=(-2, -1))
    assert torch.isfinite(value)
    # zero entry: p log(p/q) term is 0, q log(q/p) uses the floored log
    expected = 0.5 * (0.5 * math.log(2) + 0.25 * math.log(0.5) + 0.25 * (math.log(0.25) - math.log(1e-12)))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_pairwise_matches_elementwise():
    gen = torch.Generator().manual_seed(0)
    x = torch.softmax(3 * torch.randn(5, 30, generator=gen, dtype=torch.float64), 1)
    y = torch.softmax(3 * torch.randn(7, 30, generator=gen, dtype=torch.float64), 1)
    expected = symmetric_kl(x[:, None], y[None, :])
    torch.testing.assert_close(pairwise_symmetric_kl(x, y), expected)


def test_pairwise_raw_logs_mark_zero_rows_nan():
    x = torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=torch.float64)
    dist = pairwise_symmetric_kl(x, x, eps=None)
    assert math.isfinite(dist[0, 0].item())
    assert torch.isnan(dist[1]).all() and torch.isnan(dist[:, 1]).all()


def test_greedy_merge_scan_order_and_overlapping_groups():
    # D(p0,p1)=0.0847, D(p1,p2)=0.1350, D(p0,p2)=0.4394, D(p3,p0)=0.0847, D(p3,p1)=0.3389, D(p3,p2)>0.34
    proposals = torch.tensor([[0.5, 0.5], [0.7, 0.3], [0.9, 0.1], [0.3, 0.7]], dtype=torch.float64)
    merged = greedy_merge(proposals, kl_threshold=0.2)
    # i=0: group {0, 1, 3} -> plain mean [0.5, 0.5]; 1 and 3 are skipped; i=2: group {1, 2}, which
    # reuses the already matched proposal 1 -> [0.8, 0.2].
    torch.testing.assert_close(merged, torch.tensor([[0.5, 0.5], [0.8, 0.2]], dtype=torch.float64))
    # another scan order gives other groups: {2, 1} first, then {0, 1, 3} from proposal 0
    reordered = greedy_merge(proposals[[2, 1, 0, 3]], kl_threshold=0.2)
    torch.testing.assert_close(reordered, torch.tensor([[0.8, 0.2], [0.5, 0.5]], dtype=torch.float64))
    # the reference numerics agree on well-conditioned input
    torch.testing.assert_close(greedy_merge(proposals, kl_threshold=0.2, exact_reference=True), merged)


def test_greedy_merge_reference_drops_nan_and_zero_proposals():
    proposals = torch.tensor([[0.5, 0.5], [float("nan"), float("nan")], [1.0, 0.0], [0.55, 0.45]])
    merged = greedy_merge(proposals, kl_threshold=0.2, exact_reference=True)
    torch.testing.assert_close(merged, torch.tensor([[0.525, 0.475]]))
    default = greedy_merge(proposals[[0, 2, 3]], kl_threshold=0.2)
    torch.testing.assert_close(default, torch.tensor([[0.525, 0.475], [1.0, 0.0]]))


def planted_aggregate(region: torch.Tensor, floor: float = 0.05) -> torch.Tensor:
    side = region.shape[0]
    sides = [s for s in (side, side // 2, side // 4) if s >= 2 and side % s == 0]
    return aggregate_attention(planted_attention(region, sides, floor=floor))


@pytest.mark.parametrize("exact_reference", [False, True])
def test_merge_recovers_planted_regions(exact_reference):
    region = quadrants(16)
    aggregated = planted_aggregate(region)
    proposals = merge_by_kl(aggregated, anchors=4, kl_thresholds=[1.1] * 3, exact_reference=exact_reference)
    assert proposals.shape == (4, 16, 16)
    # each proposal is the (shared) attention row of one quadrant, in anchor scan order
    for k, pixel in enumerate([(0, 0), (0, 15), (15, 0), (15, 15)]):
        torch.testing.assert_close(proposals[k].float(), aggregated[pixel[0] * 16 + pixel[1]], atol=1e-6, rtol=1e-5)


def test_reference_and_default_agree_on_well_conditioned_input():
    aggregated = planted_aggregate(stripes(16, [4, 4, 8]))
    default = merge_by_kl(aggregated, anchors=8, kl_thresholds=[1.1, 1.1])
    exact = merge_by_kl(aggregated, anchors=8, kl_thresholds=[1.1, 1.1], exact_reference=True)
    assert default.dtype == torch.float32 and exact.dtype == torch.float64
    torch.testing.assert_close(exact.float(), default, atol=1e-6, rtol=1e-5)


def test_reference_reproduces_fp16_underflow_nan_dropping():
    aggregated = planted_aggregate(quadrants(8)).clone()
    # pixel (0, 0) is the first anchor; one entry below float16's subnormal range becomes 0 -> NaN KL
    row = aggregated[0]
    row[7, 7] = 1e-9
    row /= row.sum()
    default = merge_by_kl(aggregated, anchors=2, kl_thresholds=[1.1, 1.1])
    exact = merge_by_kl(aggregated, anchors=2, kl_thresholds=[1.1, 1.1], exact_reference=True)
    assert default.shape[0] == 4 and torch.isfinite(default).all()
    # the official code: anchor 0 matches nothing (not even itself), its proposal is 0/0 = NaN and the
    # next pass drops it, so quadrant 0 has no proposal of its own
    assert exact.shape[0] == 3 and torch.isfinite(exact).all()
    for k, pixel in enumerate([(0, 7), (7, 0), (7, 7)]):
        torch.testing.assert_close(exact[k], aggregated[pixel[0] * 8 + pixel[1]].double(), atol=1e-7, rtol=1e-6)


def test_reference_empty_result_falls_back_to_one_segment(caplog):
    aggregated = planted_aggregate(quadrants(8), floor=0.0)  # exact zeros everywhere: every KL is NaN
    with caplog.at_level(logging.WARNING, logger="zeroseg.diffseg.merge"):
        exact = merge_by_kl(aggregated, anchors=2, kl_thresholds=[1.1, 1.1], exact_reference=True)
    assert exact.shape == (1, 8, 8)
    torch.testing.assert_close(exact, torch.full((1, 8, 8), 1 / 64, dtype=torch.float64))
    assert "no proposal survived" in caplog.text
    # the default mode floors the logs: the zero-floor regions are still found
    assert merge_by_kl(aggregated, anchors=2, kl_thresholds=[1.1, 1.1]).shape[0] == 4


def test_default_mode_never_empty_with_tiny_threshold():
    aggregated = planted_aggregate(quadrants(8))
    proposals = merge_by_kl(aggregated, anchors=4, kl_thresholds=[1e-30, 1e-30])
    assert proposals.shape[0] >= 1 and torch.isfinite(proposals).all()


def test_per_iteration_thresholds_are_used_in_order():
    aggregated = planted_aggregate(quadrants(8))
    assert merge_by_kl(aggregated, anchors=4, kl_thresholds=[1.1, 1.1]).shape[0] == 4
    # a huge second threshold merges the four quadrant proposals into their plain mean
    merged = merge_by_kl(aggregated, anchors=4, kl_thresholds=[1.1, 1e6])
    assert merged.shape[0] == 1
    torch.testing.assert_close(merged[0], aggregated.mean(0), atol=1e-6, rtol=1e-5)
    # a single threshold: anchor pass only, one proposal per anchor
    assert merge_by_kl(aggregated, anchors=4, kl_thresholds=[1.1]).shape[0] == 16


def test_explicit_anchor_coordinates():
    aggregated = planted_aggregate(quadrants(8))
    proposals = merge_by_kl(aggregated, anchors=torch.tensor([[6, 6], [0, 0]]), kl_thresholds=[1.1, 1.1])
    torch.testing.assert_close(proposals[0], aggregated[6 * 8 + 6], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(proposals[1], aggregated[0], atol=1e-6, rtol=1e-5)


def test_invalid_arguments_raise():
    aggregated = planted_aggregate(quadrants(8))
    with pytest.raises(ConfigError, match="aggregated"):
        merge_by_kl(aggregated[:10], anchors=2, kl_thresholds=[1.1, 1.1])
    with pytest.raises(ConfigError, match="kl_thresholds"):
        merge_by_kl(aggregated, anchors=2, kl_thresholds=[1.1, 0.0])
    with pytest.raises(ConfigError, match="kl_thresholds"):
        merge_by_kl(aggregated, anchors=2, kl_thresholds=[1.1], exact_reference=True)
    with pytest.raises(ConfigError, match="anchors"):
        merge_by_kl(aggregated, anchors=torch.tensor([[0, 8]]), kl_thresholds=[1.1, 1.1])
