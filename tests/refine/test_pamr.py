from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError
from zeroseg.refine.pamr import local_affinity, median_filter3, pamr, refine_labels


def _reference_pamr(image, masks, num_iter, dilations):
    """The official unfold/conv formulation (tools/pamr.py), written out for comparison."""
    x, m = image[None], masks[None]

    def neighbours(t, with_centre):
        taps = [(i, j) for i in range(3) for j in range(3) if with_centre or (i, j) != (1, 1)]
        out = []
        for d in dilations:
            p = F.pad(t, [d] * 4, mode="replicate")
            h, w = t.shape[-2:]
            out += [p[..., i * d : i * d + h, j * d : j * d + w] for i, j in taps]
        return torch.stack(out, 2)  # (B, C, P, H, W)

    std = neighbours(x, True).std(2, keepdim=True)
    aff = -(x[:, :, None] - neighbours(x, False)).abs() / (1e-8 + 0.1 * std)
    aff = F.softmax(aff.mean(1, keepdim=True), 2)
    for _ in range(num_iter):
        m = (neighbours(m, False) * aff).sum(2)
    return m[0]


def test_matches_the_official_formulation():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 23, 31, generator=gen)
    masks = torch.rand(3, 23, 31, generator=gen)
    got = pamr(image, masks, num_iter=4, dilations=(1, 2, 5))
    torch.testing.assert_close(got, _reference_pamr(image, masks, 4, (1, 2, 5)), atol=1e-5, rtol=1e-5)


def test_banding_does_not_change_the_result(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    image, masks = torch.rand(3, 20, 17, generator=gen), torch.rand(2, 20, 17, generator=gen)
    whole = pamr(image, masks, num_iter=3, dilations=(1, 4))
    import zeroseg.refine.pamr as module

    monkeypatch.setattr(module, "BAND_ELEMENTS", 40)
    monkeypatch.setattr(module, "AFFINITY_BAND_PIXELS", 20)
    torch.testing.assert_close(pamr(image, masks, num_iter=3, dilations=(1, 4)), whole)


def test_weights_are_a_softmax_over_neighbours():
    weights = local_affinity(torch.rand(3, 9, 10), (1, 3))
    assert weights.shape == (16, 9, 10)
    torch.testing.assert_close(weights.sum(0), torch.ones(9, 10))


def test_constant_map_stays_constant():
    image = torch.rand(3, 30, 30, generator=torch.Generator().manual_seed(2))
    masks = torch.full((2, 30, 30), 0.25)
    torch.testing.assert_close(pamr(image, masks, num_iter=10, dilations=(1, 2, 4, 8)), masks)


def test_mask_edge_snaps_to_image_edge():
    image = torch.zeros(3, 64, 80)
    image[:, :, 40:] = 1.0
    image += 0.01 * torch.rand(image.shape, generator=torch.Generator().manual_seed(3))
    labels = torch.zeros(64, 80, dtype=torch.long)
    labels[:, 36:] = 1
    out = refine_labels(labels, image, num_iter=10, dilations=(1, 2, 4, 8))
    assert torch.equal(out[:, :40], torch.zeros(64, 40, dtype=torch.long))
    assert torch.equal(out[:, 40:], torch.ones(64, 40, dtype=torch.long))


def test_refine_labels_resizes_to_the_image():
    labels = torch.tensor([[3, 7], [3, 7]])
    out = refine_labels(labels, torch.rand(3, 10, 12), num_iter=2)
    assert out.shape == (10, 12) and out.dtype == torch.long and set(out.unique().tolist()) <= {0, 1}


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (5, 7), (40, 33)])
def test_median_filter_matches_scipy(shape):
    rng = np.random.default_rng(sum(shape))
    labels = rng.integers(0, 5, size=shape)
    got = median_filter3(torch.from_numpy(labels))
    assert np.array_equal(got.numpy(), scipy.ndimage.median_filter(labels, 3))
    assert np.array_equal(got.numpy(), scipy.ndimage.median_filter(labels[None], 3)[0])  # official (1, H, W)


def test_pamr_rejects_bad_arguments():
    image = torch.rand(3, 8, 8)
    with pytest.raises(ConfigError, match="`dilations`"):
        pamr(image, torch.rand(2, 8, 8), num_iter=1, dilations=(0,))
    with pytest.raises(ConfigError, match="`masks`"):
        pamr(image, torch.rand(2, 4, 8), num_iter=1, dilations=(1,))
    with pytest.raises(ConfigError, match="`num_iter`"):
        pamr(image, torch.rand(2, 8, 8), num_iter=-1, dilations=(1,))
    with pytest.raises(ConfigError, match="`image`"):
        pamr(torch.rand(1, 8, 8), torch.rand(2, 8, 8), num_iter=1, dilations=(1,))
