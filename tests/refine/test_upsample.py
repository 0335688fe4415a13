"""Soft maps to labels at a larger size: the compiled kernel and the tensor form give the same labels."""

from __future__ import annotations

import pytest
import torch

from zeroseg.refine.compiled import TENSOR_FORM_VARIABLE
from zeroseg.refine.upsample import upsample_argmax


@pytest.mark.parametrize(
    ("num", "in_size", "out_size"),
    [
        (8, (37, 53), (301, 407)),
        (1, (5, 5), (1, 9)),
        (30, (9, 13), (77, 100)),
        (3, (64, 64), (64, 64)),
        (2, (4, 6), (3, 2)),
    ],
)
def test_compiled_kernel_gives_the_labels_of_the_tensor_form(monkeypatch, num, in_size, out_size):
    pytest.importorskip("numba")
    gen = torch.Generator().manual_seed(num)
    maps = torch.rand(num, *in_size, generator=gen)
    monkeypatch.delenv(TENSOR_FORM_VARIABLE, raising=False)
    compiled = upsample_argmax(maps, out_size)
    monkeypatch.setenv(TENSOR_FORM_VARIABLE, "1")
    assert torch.equal(compiled, upsample_argmax(maps, out_size))


def test_rounding_follows_the_tensor_form_where_values_nearly_tie(monkeypatch):
    """Values one rounding apart: the kernel's fused multiply-add must round as torch's ``addcmul_`` does."""
    pytest.importorskip("numba")
    gen = torch.Generator().manual_seed(5)
    base = torch.rand(1, 60, 80, generator=gen)
    maps = torch.cat([base, base * (1 + 2**-23), torch.rand(2, 60, 80, generator=gen) * 0.5])
    monkeypatch.delenv(TENSOR_FORM_VARIABLE, raising=False)
    compiled = upsample_argmax(maps, (250, 333))
    monkeypatch.setenv(TENSOR_FORM_VARIABLE, "1")
    assert torch.equal(compiled, upsample_argmax(maps, (250, 333)))


def test_nan_wins_and_ties_go_to_the_first_map(kernel_form):
    maps = torch.zeros(3, 2, 2)
    maps[2, 0, 0] = float("nan")
    # 2 -> 4 per axis: outputs 0, 1, 2 read source 0 (output 0 with weight 0, and 0 * NaN is NaN)
    expected = torch.zeros(4, 4, dtype=torch.long)
    expected[:3, :3] = 2  # NaN counts as the largest value, as torch.argmax; elsewhere the maps tie: the first
    assert torch.equal(upsample_argmax(maps, (4, 4)), expected)


def test_hand_computed_two_maps(kernel_form):
    # 1x2 maps upsampled to 1x4: source x coords -0.25 (clamped), 0.25, 0.75, 1.25 (clamped to the last)
    maps = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    # map 0 at the four outputs: 1, 0.75, 0.25, 0; map 1: 0, 0.25, 0.75, 1
    assert upsample_argmax(maps, (1, 4)).tolist() == [[0, 0, 1, 1]]
