"""Proposals to label map: bilinear upsampling, argmax, contiguous relabelling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zeroseg.diffseg.proposals import bilinear_taps, proposals_to_labels
from zeroseg.errors import ConfigError
from zeroseg.refine import relabel_sequential

from .planted import same_partition


def random_proposals(num: int, side: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(num, side * side, generator=gen), 1).reshape(num, side, side)


def test_bilinear_taps_hand_computed():
    # 2 -> 4, half-pixel centres: source coords -0.25 (clamped to 0), 0.25, 0.75, 1.25
    i0, i1, w0, w1 = bilinear_taps(2, 4)
    assert i0.tolist() == [0, 0, 0, 1]
    assert i1.tolist() == [1, 1, 1, 1]
    torch.testing.assert_close(w1, torch.tensor([0.0, 0.25, 0.75, 0.25]))
    torch.testing.assert_close(w0 + w1, torch.ones(4))


@pytest.mark.parametrize("out_size", [(64, 64), (37, 53), (5, 3)])
def test_matches_interpolate_then_argmax(out_size, kernel_form):
    proposals = random_proposals(6, 8, seed=0)
    labels = proposals_to_labels(proposals, out_size)
    up = F.interpolate(proposals[None], size=out_size, mode="bilinear", align_corners=False)[0]
    top2 = up.topk(2, dim=0).values
    clear = (top2[0] - top2[1]) > 1e-6  # ignore near-ties, where rounding order may decide
    expected = torch.unique(up.argmax(0), return_inverse=True)[1]
    assert clear.float().mean() > 0.99
    assert torch.equal(labels[clear], expected[clear])


def test_chunked_equals_unchunked(kernel_form):
    proposals = random_proposals(7, 16, seed=1)
    whole = proposals_to_labels(proposals, (301, 203), block_elements=1 << 30)
    for block in (1, 7 * 203, 7 * 203 * 10 + 5):
        assert torch.equal(proposals_to_labels(proposals, (301, 203), block_elements=block), whole)


def test_relabelling_matches_relabel_sequential():
    proposals = random_proposals(12, 4, seed=2)
    labels = proposals_to_labels(proposals, (9, 11))
    up = F.interpolate(proposals[None], size=(9, 11), mode="bilinear", align_corners=False)[0]
    assert labels.max() < 12  # some proposals win nothing here and are dropped
    assert torch.equal(labels, relabel_sequential(labels))
    assert same_partition(labels, up.argmax(0))


def test_labels_are_contiguous_and_losers_dropped(kernel_form):
    proposals = torch.zeros(3, 2, 2)
    proposals[0, :, 0] = 1.0  # left column
    proposals[2, :, 1] = 1.0  # right column
    proposals[1] = 0.1  # never wins
    labels = proposals_to_labels(proposals, (4, 4))
    assert labels.dtype == torch.long
    expected = torch.tensor([[0, 0, 1, 1]] * 4)
    assert torch.equal(labels, expected)


def test_argmax_ties_go_to_first_proposal(kernel_form):
    proposals = torch.ones(3, 4, 4)
    assert torch.equal(proposals_to_labels(proposals, (8, 8)), torch.zeros(8, 8, dtype=torch.long))


@pytest.mark.parametrize("out_size", [(0, 4), (4,), 4, (4.0, 4), (True, 4)])
def test_invalid_out_size_raises(out_size):
    with pytest.raises(ConfigError, match="out_size"):
        proposals_to_labels(torch.ones(2, 4, 4), out_size)


def test_invalid_proposals_raise():
    with pytest.raises(ConfigError, match="proposals"):
        proposals_to_labels(torch.ones(0, 4, 4), (4, 4))
    with pytest.raises(ConfigError, match="proposals"):
        proposals_to_labels(torch.ones(4, 4), (4, 4))
