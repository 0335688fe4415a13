from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zeroseg.diffcut import assign_concepts, normalize_features
from zeroseg.diffcut.assign import bilinear_matrix, compute_concepts
from zeroseg.errors import ConfigError

from .planted import planted_features, quadrant_labels


@pytest.mark.parametrize(("n", "m"), [(4, 16), (32, 128), (5, 7), (16, 16), (16, 5)])
def test_bilinear_matrix_matches_interpolate(n, m):
    signal = torch.randn(3, n)
    expected = F.interpolate(signal[None, :, None, :], size=(1, m), mode="bilinear", align_corners=False)
    torch.testing.assert_close(signal @ bilinear_matrix(n, m).T, expected[0, :, 0])


def test_concepts_are_masked_means():
    feats = torch.arange(12.0).reshape(1, 3, 4)
    labels = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]])
    concepts = compute_concepts(feats, labels, normalize=False)
    torch.testing.assert_close(concepts[:, 0], torch.tensor([(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4, 9.5]))


def test_assignment_at_grid_size_reproduces_the_segments():
    truth = quadrant_labels(16)
    feats = normalize_features(planted_features(truth, noise=0.1))
    for exact in (False, True):
        assert torch.equal(assign_concepts(feats, truth, (16, 16), exact_reference=exact), truth)


def test_assignment_upsamples_planted_quadrants():
    truth = quadrant_labels(16)
    feats = normalize_features(planted_features(truth, noise=0.05))
    out = assign_concepts(feats, truth, (64, 64))
    assert torch.equal(out, truth.repeat_interleave(4, 0).repeat_interleave(4, 1))


def test_chunked_equals_unchunked_and_the_official_formulation():
    gen = torch.Generator().manual_seed(1)
    feats = normalize_features(torch.randn(24, 8, 8, generator=gen))
    labels = torch.randint(0, 5, (8, 8), generator=gen)
    whole = assign_concepts(feats, labels, (37, 50), chunk_pixels=10**9, exact_reference=True)
    for chunk in (1, 50, 333, 1000):
        assert torch.equal(assign_concepts(feats, labels, (37, 50), chunk_pixels=chunk, exact_reference=True), whole)
    # Official order: upsample the features, then dot with the un-normalised concepts.
    concepts = compute_concepts(feats, labels, normalize=False)
    up = F.interpolate(feats[None], size=(37, 50), mode="bilinear", align_corners=False)[0]
    official = torch.einsum("kc,chw->khw", concepts, up).argmax(0)
    assert (official == whole).float().mean() > 0.999


def test_default_uses_cosine_and_exact_reference_the_dot_product():
    # Segment 0: three copies of e0 plus the probe p = (0.6, 0.8, 0) -> mean (0.9, 0.2, 0), norm 0.92.
    # Segment 1: (0, cos 60, +-sin 60) -> mean (0, 0.5, 0), norm 0.5 (a loose segment).
    # Dot product: p.c0 = 0.70 > p.c1 = 0.40; cosine: 0.76 < 0.80, so the probe changes side.
    s = 3**0.5 / 2
    columns = [[1, 0, 0], [1, 0, 0], [1, 0, 0], [0.6, 0.8, 0], [0, 0.5, s], [0, 0.5, -s]]
    feats = torch.tensor(columns).T.reshape(3, 1, 6)
    labels = torch.tensor([[0, 0, 0, 0, 1, 1]])
    assert assign_concepts(feats, labels, (1, 6), exact_reference=True).tolist() == [[0, 0, 0, 0, 1, 1]]
    assert assign_concepts(feats, labels, (1, 6)).tolist() == [[0, 0, 0, 1, 1, 1]]


def test_non_contiguous_labels_map_to_concept_indices():
    truth = quadrant_labels(8)
    feats = normalize_features(planted_features(truth))
    assert torch.equal(assign_concepts(feats, truth * 3 + 2, (8, 8)), truth)


def test_assign_rejects_bad_arguments():
    feats = torch.randn(4, 8, 8)
    with pytest.raises(ConfigError, match="`labels`"):
        assign_concepts(feats, torch.zeros(4, 4, dtype=torch.long), (8, 8))
    with pytest.raises(ConfigError, match="`out_size`"):
        assign_concepts(feats, torch.zeros(8, 8, dtype=torch.long), (0, 8))
    with pytest.raises(ConfigError, match="`chunk_pixels`"):
        assign_concepts(feats, torch.zeros(8, 8, dtype=torch.long), (8, 8), chunk_pixels=0)


def _tensor_form_assignment(feats, labels, out_size, *, exact_reference=False):
    """The matrix-product form of the assignment (what runs without the compiled kernel)."""
    from zeroseg.diffcut import assign

    saved = list(assign._agrees)
    assign._agrees[:] = [False]
    try:
        return assign_concepts(feats, labels, out_size, exact_reference=exact_reference)
    finally:
        assign._agrees[:] = saved


@pytest.mark.parametrize("num_labels", [1, 2, 9, 120])
@pytest.mark.parametrize("out_size", [(16, 16), (37, 53), (128, 96), (200, 321), (8, 5)])
@pytest.mark.parametrize("exact_reference", [False, True])
def test_compiled_assignment_is_bit_identical_to_the_matrix_products(num_labels, out_size, exact_reference):
    pytest.importorskip("numba")
    from zeroseg.diffcut import assign

    gen = torch.Generator().manual_seed(num_labels * 7 + out_size[0])
    feats = normalize_features(torch.randn(24, 16, 12, generator=gen))
    labels = torch.randint(0, num_labels, (16, 12), generator=gen)
    assign._agrees[:] = []  # the check runs again
    compiled = assign_concepts(feats, labels, out_size, exact_reference=exact_reference)
    assert assign._agrees == [True]  # the kernel ran: it agrees with this machine's matrix products
    assert torch.equal(compiled, _tensor_form_assignment(feats, labels, out_size, exact_reference=exact_reference))


def test_compiled_assignment_on_ulp_close_maps():
    """Scores a few ulps apart: any other order or rounding of the interpolation sums moves argmaxes."""
    pytest.importorskip("numba")
    from zeroseg.diffcut import assign
    from zeroseg.refine.compiled import compiled_kernels

    gen = torch.Generator().manual_seed(4)
    base = torch.rand(1, 10, 14, generator=gen) + 0.5
    scores = base + torch.randint(-4, 5, (5, 10, 14), generator=gen) * torch.finfo(torch.float32).eps
    compiled = assign._assign_compiled(compiled_kernels(), scores.contiguous(), (77, 95))
    tensor = assign._assign_tensor(scores, bilinear_matrix(10, 77), bilinear_matrix(14, 95))
    assert torch.equal(compiled, tensor)


def test_matrix_taps_of_bilinear_matrices():
    from zeroseg.diffcut.assign import matrix_taps

    for n, m in [(4, 16), (32, 1024), (32, 768), (7, 3), (5, 5)]:
        matrix = bilinear_matrix(n, m)
        i0, i1, w0, w1 = matrix_taps(matrix)
        rebuilt = torch.zeros_like(matrix)
        rebuilt[torch.arange(m), i0] += w0
        rebuilt[torch.arange(m), i1] += w1
        assert torch.equal(rebuilt, matrix) and bool((i0 <= i1).all())
    assert matrix_taps(torch.ones(2, 3)) is None  # three taps per row: the tensor form runs
