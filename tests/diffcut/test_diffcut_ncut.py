from __future__ import annotations

import pytest
import scipy.linalg
import torch

from zeroseg.diffcut import assemble_clusters, bipartition, compute_affinity, ncut_values, recursive_ncut
from zeroseg.diffcut.affinity import normalize_features
from zeroseg.diffcut.ncut import fiedler_vector
from zeroseg.errors import ConfigError

from .planted import planted_features, quadrant_labels, same_partition


def _affinity(labels: torch.Tensor, seed: int = 0, noise: float = 0.05) -> torch.Tensor:
    return compute_affinity(normalize_features(planted_features(labels, noise=noise, seed=seed)), alpha=10)


def test_affinity_minmax_power_by_hand():
    x = torch.tensor([[1.0, 0.0, 0.6], [0.0, 1.0, 0.8]])  # unit columns
    w = compute_affinity(x, alpha=2)
    cos = torch.tensor([[1.0, 0.0, 0.6], [0.0, 1.0, 0.8], [0.6, 0.8, 1.0]])
    torch.testing.assert_close(w, cos**2)  # min 0, max 1: min-max is the identity here
    shifted = compute_affinity(torch.tensor([[1.0, 0.6], [0.0, 0.8]]), alpha=1)
    torch.testing.assert_close(shifted, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ConfigError, match="`alpha`"):
        compute_affinity(x, alpha=0)


def test_fiedler_vector_separates_two_blocks_with_fixed_sign():
    w = torch.full((6, 6), 0.01)
    w[:3, :3] = 1.0
    w[3:, 3:] = 1.0
    y = fiedler_vector(w)
    assert y is not None
    assert (torch.sign(y[:3]) == torch.sign(y[0])).all() and (torch.sign(y[3:]) == -torch.sign(y[0])).all()
    assert y[torch.argmax(y.abs())] > 0
    # generalised eigenproblem (D - W) y = lambda D y
    d = w.sum(1)
    lhs = (torch.diag(d) - w) @ y
    lam = (y @ lhs) / (y @ (d * y))
    torch.testing.assert_close(lhs, lam * d * y, atol=1e-5, rtol=1e-4)


def _ncut_formula(w: torch.Tensor, a: torch.Tensor) -> float:
    b = ~a
    cut = w[a][:, b].sum()
    return float(cut / w[a].sum() + cut / w[b].sum())


def _ncut_shi_malik(w: torch.Tensor, a: torch.Tensor) -> float:
    # The official per-candidate quadratic form.
    d = w.sum(1)
    x = 2 * a.double() - 1
    k = d.double()[a].sum() / d.double().sum()
    b = k / (1 - k)
    z = (1 + x) - b * (1 - x)
    lap = torch.diag(d).double() - w.double()
    return float((z @ lap @ z) / (z @ torch.diag(d).double() @ z))


def test_ncut_values_vectorised_equals_formula_and_loop():
    gen = torch.Generator().manual_seed(3)
    w = torch.rand(40, 40, generator=gen)
    w = (w + w.T) / 2
    candidates = torch.rand(25, 40, generator=gen) > 0.5
    values = ncut_values(w, w.sum(1), candidates)
    looped = torch.tensor([_ncut_formula(w, c) for c in candidates])
    quadratic = torch.tensor([_ncut_shi_malik(w, c) for c in candidates])
    torch.testing.assert_close(values, looped, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(values, quadratic.float(), rtol=1e-4, atol=1e-6)


def test_ncut_values_one_sided_is_nan():
    w = torch.ones(4, 4)
    candidates = torch.tensor([[True] * 4, [False] * 4, [True, False, False, False]])
    values = ncut_values(w, w.sum(1), candidates)
    assert torch.isnan(values[:2]).all() and torch.isfinite(values[2])


def test_bipartition_picks_the_best_threshold():
    w = _affinity(quadrant_labels(8))
    split = bipartition(w)
    assert split is not None
    y = fiedler_vector(w)
    thresholds = torch.linspace(float(y.min()) * 0.99, float(y.max()) * 0.99, 100)
    loop = [_ncut_formula(w, y > t) if 0 < int((y > t).sum()) < len(y) else float("inf") for t in thresholds]
    best = min(range(100), key=lambda i: loop[i])
    assert split.ncut == pytest.approx(loop[best], rel=1e-4)
    assert torch.equal(split.side, y > thresholds[best])


def test_recursive_ncut_recovers_planted_quadrants():
    truth = quadrant_labels(16)
    labels = recursive_ncut(_affinity(truth), tau=0.5)
    assert labels.shape == (256,) and labels.dtype == torch.long
    assert same_partition(labels, truth.reshape(-1))
    assert sorted(torch.unique(labels).tolist()) == [0, 1, 2, 3]


def test_recursion_stops_on_a_single_cluster():
    # A complete graph with equal weights: every split has NCut |B|/n + |A|/n = 1 >= tau.
    gen = torch.Generator().manual_seed(0)
    w = 1.0 + 1e-3 * torch.rand(50, 50, generator=gen)
    w = (w + w.T) / 2
    assert torch.equal(recursive_ncut(w, tau=0.5), torch.zeros(50, dtype=torch.long))
    # Identical features: the min-max of a constant similarity is the all-ones graph.
    feats = normalize_features(torch.ones(8, 6, 6))
    assert torch.equal(compute_affinity(feats, alpha=10), torch.ones(36, 36))
    assert torch.equal(recursive_ncut(compute_affinity(feats), tau=0.9), torch.zeros(36, dtype=torch.long))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_larger_tau_never_gives_fewer_segments(seed):
    gen = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, 6, (4, 4), generator=gen).repeat_interleave(2, 0).repeat_interleave(2, 1)
    w = _affinity(truth, seed=seed, noise=0.3)
    counts = [int(recursive_ncut(w, tau=t).max()) + 1 for t in (0.05, 0.2, 0.35, 0.5, 0.7, 0.9, 1.1)]
    assert counts == sorted(counts)
    assert counts[0] < counts[-1]


def _official_assemble(masks: list[torch.Tensor]) -> torch.Tensor:
    # Python integers: exact at any depth.
    n = len(masks[0]) if masks else 1
    mask = [0] * n
    value = 1
    for m in masks:
        mask = [v + value * int(b) for v, b in zip(mask, m.tolist(), strict=True)]
        value = max(mask) + 1
    order = {v: i for i, v in enumerate(sorted(set(mask)))}
    return torch.tensor([order[v] for v in mask])


def test_assemble_clusters_on_hand_built_accumulator():
    t, f = True, False
    masks = [
        torch.tensor([t, t, t, t, f, f, f, f]),  # root: A = 0..3
        torch.tensor([t, t, f, f, f, f, f, f]),  # inside A: 0,1
        torch.tensor([f, f, f, f, f, t, t, f]),  # inside B: 5,6
        torch.tensor([f, f, f, f, f, f, t, f]),  # inside 5,6: 6
    ]
    labels = assemble_clusters(masks, 8)
    # values: 0-1: 1+2=3, 2-3: 1, 4: 0, 5: 4, 6: 4+5... computed by hand from the official loop
    assert labels.tolist() == [2, 2, 1, 1, 0, 3, 4, 0]
    assert torch.equal(labels, _official_assemble(masks))
    assert torch.equal(assemble_clusters([], 5), torch.zeros(5, dtype=torch.long))


def test_assemble_clusters_stays_exact_on_deep_chains():
    n = 80
    masks = [torch.arange(n) >= i for i in range(1, n)]  # 79 nested splits: official values reach 2**79
    labels = assemble_clusters(masks, n)
    assert torch.equal(labels, _official_assemble(masks))
    assert torch.equal(labels, torch.arange(n))


@pytest.fixture(params=[False, True], ids=["fiedler-pair", "whole-spectrum"])
def solver(request, monkeypatch):
    """(exact_reference, wrap): ``wrap(make)`` replaces the eigensolver that mode calls by ``make(real)``."""
    exact = request.param
    owner, name, error = (
        (torch.linalg, "eigh", torch.linalg.LinAlgError) if exact else (scipy.linalg, "eigh", scipy.linalg.LinAlgError)
    )

    def wrap(make):
        monkeypatch.setattr(owner, name, make(getattr(owner, name), error))

    return exact, wrap


def test_eigensolver_failure_gives_a_leaf(solver):
    exact, wrap = solver

    def broken(real, error):
        def call(*args, **kwargs):
            raise error("did not converge")

        return call

    wrap(broken)
    w = _affinity(quadrant_labels(8))
    assert bipartition(w, exact_reference=exact) is None
    assert torch.equal(recursive_ncut(w, tau=0.5, exact_reference=exact), torch.zeros(64, dtype=torch.long))


def test_eigensolver_failure_below_the_root_keeps_the_region(solver):
    exact, wrap = solver
    calls = []

    def fail_after_root(real, error):
        def call(matrix, *args, **kwargs):
            calls.append(matrix.shape[0])
            if len(calls) > 1:
                raise error("did not converge")
            return real(matrix, *args, **kwargs)

        return call

    wrap(fail_after_root)
    labels = recursive_ncut(_affinity(quadrant_labels(8)), tau=0.5, exact_reference=exact)
    assert int(labels.max()) == 1 and len(calls) == 3  # root split accepted, both children leaves


def test_non_finite_eigenvectors_give_a_leaf(solver):
    exact, wrap = solver

    def nan_vectors(real, error):
        def call(*args, **kwargs):
            values, vectors = real(*args, **kwargs)
            return values, vectors * float("nan")

        return call

    wrap(nan_vectors)
    assert bipartition(_affinity(quadrant_labels(8)), exact_reference=exact) is None


@pytest.mark.parametrize("seed", range(4))
def test_both_solvers_split_planted_graphs_alike(seed):
    """Near-disconnected blocks make the two smallest eigenvalues equal in float32, so the solvers may return
    different vectors of that eigenspace (``a * 1 + b * y``); the split they threshold to must not differ."""
    for labels in (quadrant_labels(8), (torch.arange(8)[:, None] >= 3).long().expand(8, 8)):
        w = _affinity(labels, seed=seed, noise=0.2)
        fast, full = bipartition(w), bipartition(w, exact_reference=True)
        assert torch.equal(fast.side, full.side) or torch.equal(fast.side, ~full.side)
        assert fast.ncut == pytest.approx(full.ncut, rel=1e-4, abs=1e-6)


def test_exact_reference_idx2keep_quirk():
    # Two tight groups {0,1,2} and {3,4,5}, loosely linked; inside group {0,1,2}, node 2 is the (only)
    # node with an exact-zero affinity (to node 5). Group {0,1,2} is itself two sub-groups {0,1} | {2}.
    w = torch.tensor(
        [
            [1.0, 0.9, 0.02, 0.01, 0.01, 0.01],
            [0.9, 1.0, 0.02, 0.01, 0.01, 0.01],
            [0.02, 0.02, 1.0, 0.01, 0.01, 0.0],
            [0.01, 0.01, 0.01, 1.0, 0.9, 0.9],
            [0.01, 0.01, 0.01, 0.9, 1.0, 0.9],
            [0.01, 0.01, 0.0, 0.9, 0.9, 1.0],
        ]
    )
    fixed = recursive_ncut(w, tau=0.5)
    quirk = recursive_ncut(w, tau=0.5, exact_reference=True)
    # Default: {0,1,2} splits again into {0,1} | {2}.
    assert same_partition(fixed, torch.tensor([0, 0, 1, 2, 2, 2]))
    # Official: nodes 2 and 5 are dropped below the root, so {0,1} alone cannot be split further and node 2
    # keeps the label of its parent region's remainder, i.e. it stays with {0,1}; node 5 stays with {3,4}.
    assert same_partition(quirk, torch.tensor([0, 0, 0, 1, 1, 1]))


def test_recursive_ncut_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="`affinity`"):
        recursive_ncut(torch.ones(3, 4), tau=0.5)
    with pytest.raises(ConfigError, match="`tau`"):
        recursive_ncut(torch.ones(3, 3), tau=float("nan"))
