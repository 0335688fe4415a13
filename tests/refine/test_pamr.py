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


def test_matches_the_official_formulation(kernel_form):
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 23, 31, generator=gen)
    masks = torch.rand(3, 23, 31, generator=gen)
    got = pamr(image, masks, num_iter=4, dilations=(1, 2, 5))
    torch.testing.assert_close(got, _reference_pamr(image, masks, 4, (1, 2, 5)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("height", "width", "num_masks", "dilations", "num_iter"),
    [(23, 31, 3, (1, 2, 5), 4), (97, 203, 8, (1, 2, 4, 8, 12, 24, 32, 64), 3), (1, 5, 2, (1,), 2), (40, 9, 1, (3,), 1)],
)
def test_compiled_kernels_give_the_bits_of_the_tensor_form(monkeypatch, height, width, num_masks, dilations, num_iter):
    pytest.importorskip("numba")
    gen = torch.Generator().manual_seed(height * width)
    image, masks = torch.rand(3, height, width, generator=gen), torch.rand(num_masks, height, width, generator=gen)
    compiled = local_affinity(image, dilations), pamr(image, masks, num_iter=num_iter, dilations=dilations)
    monkeypatch.setenv("ZEROSEG_TENSOR_FORM", "1")
    tensor = local_affinity(image, dilations), pamr(image, masks, num_iter=num_iter, dilations=dilations)
    assert torch.equal(compiled[0], tensor[0])
    assert torch.equal(compiled[1], tensor[1])


def test_compiled_kernels_split_rows_across_threads(monkeypatch):
    pytest.importorskip("numba")
    gen = torch.Generator().manual_seed(4)
    image, masks = torch.rand(3, 37, 29, generator=gen), torch.rand(2, 37, 29, generator=gen)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = pamr(image, masks, num_iter=3, dilations=(1, 3))
        torch.set_num_threads(3)  # 24 chunks of one or two rows on 3 pool threads
        assert torch.equal(pamr(image, masks, num_iter=3, dilations=(1, 3)), single)
    finally:
        torch.set_num_threads(threads)


def test_banding_does_not_change_the_result(monkeypatch, kernel_form):
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


def test_mask_edge_snaps_to_image_edge(kernel_form):
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


def test_affinity_banding_does_not_change_the_weights(monkeypatch, kernel_form):
    image = torch.rand(3, 21, 19, generator=torch.Generator().manual_seed(6))
    whole = local_affinity(image, (1, 2, 5)).contiguous()
    import zeroseg.refine.pamr as module

    monkeypatch.setattr(module, "AFFINITY_BAND_PIXELS", 3 * 19 + 5)  # bands of 3 rows, a shorter last one
    torch.testing.assert_close(local_affinity(image, (1, 2, 5)).contiguous(), whole)


def test_median_filter_banding_matches_scipy(monkeypatch):
    import zeroseg.refine.pamr as module

    monkeypatch.setattr(module, "MEDIAN_BAND_PIXELS", 25)
    labels = np.random.default_rng(0).integers(0, 40000, size=(23, 11))  # int32 working type
    got = median_filter3(torch.from_numpy(labels))
    assert np.array_equal(got.numpy(), scipy.ndimage.median_filter(labels, 3))


@pytest.mark.parametrize(
    ("size", "max_pixels", "expected"),
    [((100, 80), None, (100, 80)), ((100, 80), 0, (100, 80)), ((100, 80), 8000, (100, 80)),
     ((3000, 4000), 1024 * 1024, (886, 1182)), ((1, 50), 10, (1, 10))],
)  # fmt: skip
def test_working_size_keeps_the_aspect_ratio_within_the_bound(size, max_pixels, expected):
    from zeroseg.refine.pamr import working_size

    work = working_size(size, max_pixels)
    assert work == expected
    assert not max_pixels or work[0] * work[1] <= max_pixels


def test_bounded_refinement_snaps_to_the_edge_at_the_full_resolution():
    image = torch.zeros(3, 96, 120)
    image[:, :, 61:] = 1.0
    labels = torch.zeros(24, 30, dtype=torch.long)
    labels[:, 14:] = 1  # coarse edge at column 56 of 120, the image edge at 61
    out = refine_labels(labels, image, num_iter=10, dilations=(1, 2, 4, 8), max_pixels=48 * 60)
    assert out.shape == (96, 120)
    expected = torch.zeros(96, 120, dtype=torch.long)
    expected[:, 61:] = 1
    assert (out != expected).float().mean() < 0.01  # the edge within the upsampling blur of the boundary
    unbounded = refine_labels(labels, image, num_iter=10, dilations=(1, 2, 4, 8))
    assert torch.equal(refine_labels(labels, image, num_iter=10, dilations=(1, 2, 4, 8), max_pixels=0), unbounded)


def test_relabel_sequential_lookup_matches_unique():
    from zeroseg.refine import relabel_sequential

    rng = np.random.default_rng(1)
    for values in (rng.integers(0, 7, size=(9, 5)), rng.integers(-3, 4, size=20), rng.integers(0, 10**9, size=30)):
        tensor = torch.from_numpy(values)
        expected = torch.unique(tensor, sorted=True, return_inverse=True)[1]
        assert torch.equal(relabel_sequential(tensor), expected.reshape(tensor.shape))


def test_progress_reports_every_iteration(kernel_form):
    from zeroseg.refine.pamr import PAMR_STEP

    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 20, 24, generator=gen)
    masks = torch.rand(3, 20, 24, generator=gen)
    calls = []
    refined = pamr(image, masks, num_iter=4, dilations=(1, 2), progress=lambda *call: calls.append(call))
    assert calls == [(PAMR_STEP, i, 4) for i in range(1, 5)]
    assert torch.equal(refined, pamr(image, masks, num_iter=4, dilations=(1, 2)))  # reporting changes nothing


@pytest.mark.parametrize("max_pixels", [None, 200])
def test_refine_labels_forwards_progress(max_pixels):
    gen = torch.Generator().manual_seed(1)
    image = torch.rand(3, 24, 30, generator=gen)
    labels = torch.randint(0, 3, (6, 8), generator=gen)
    calls = []
    record = lambda *call: calls.append(call)  # noqa: E731
    refined = refine_labels(labels, image, num_iter=3, dilations=(1,), max_pixels=max_pixels, progress=record)
    assert [done for _, done, _ in calls] == [1, 2, 3] and {total for _, _, total in calls} == {3}
    assert torch.equal(refined, refine_labels(labels, image, num_iter=3, dilations=(1,), max_pixels=max_pixels))
