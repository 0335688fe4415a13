from __future__ import annotations

import json
import math

import pytest
import torch

from zeroseg.diffcut import compute_affinity, recursive_ncut
from zeroseg.diffcut.affinity import normalize_features
from zeroseg.diffcut.tree import NCutTree, build_ncut_tree, ncut_tree_from_features
from zeroseg.errors import ConfigError

from .planted import planted_features, quadrant_labels

MAX_TAU = 0.6


def _nested_labels(size: int) -> torch.Tensor:
    """Quadrants, each cut again into halves: a two-level hierarchy of planted segments."""
    quadrants = quadrant_labels(size)
    halves = (torch.arange(size) % (size // 2) >= size // 4).long()
    return quadrants * 2 + halves[None, :]


def _smooth_random_features(size: int, seed: int, width: int) -> torch.Tensor:
    """Random features box-blurred over the grid: natural-looking structure with no planted answer."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, 16, size, size, generator=gen)
    kernel = torch.ones(16, 1, width, width) / width**2
    return torch.nn.functional.conv2d(feats, kernel, padding=width // 2, groups=16)[0]


FEATURES = {  # 8, 20, 39 and 65 segments at MAX_TAU
    "nested": lambda: planted_features(_nested_labels(16), noise=0.1, seed=1),
    "smooth-random": lambda: _smooth_random_features(16, seed=2, width=9),
    "smooth-random-fine": lambda: _smooth_random_features(16, seed=3, width=7),
    "smooth-random-20": lambda: _smooth_random_features(20, seed=5, width=9),
}


def _affinity(name: str, alpha: float = 10) -> torch.Tensor:
    return compute_affinity(normalize_features(FEATURES[name]()), alpha=alpha)


def _taus(tree: NCutTree) -> list[float]:
    """A grid over (0, max_tau] plus some split values and the floats just around them (the strict < edge)."""
    grid = [MAX_TAU * k / 12 for k in range(1, 13)]
    values = tree.thresholds()
    edges = []
    for value in values[:: max(1, len(values) // 6)]:
        edges += [value, math.nextafter(value, math.inf), math.nextafter(value, 0.0)]
    return sorted({t for t in grid + edges if 0 < t <= MAX_TAU})


@pytest.mark.parametrize("exact_reference", [False, True], ids=["default", "exact_reference"])
@pytest.mark.parametrize("name", list(FEATURES))
def test_pruned_tree_equals_direct_run_for_every_tau(name, exact_reference):
    affinity = _affinity(name)
    tree = build_ncut_tree(affinity, max_tau=MAX_TAU, exact_reference=exact_reference)
    taus = _taus(tree)
    counts = set()
    for tau in taus:
        direct = recursive_ncut(affinity, tau=tau, exact_reference=exact_reference)
        pruned = tree.cut(tau)
        assert torch.equal(pruned, direct), f"tau={tau!r}"
        assert tree.num_segments(tau) == int(direct.max()) + 1
        counts.add(int(direct.max()) + 1)
    assert len(counts) >= 3  # the range of tau really spans several granularities


def _quirk_graph() -> torch.Tensor:
    """Groups {0,1} and {2,3} (loosely linked) beside a tight {4..7}; node 3 has an exact-zero edge to 7.

    Below the root the official recursion drops nodes 3 and 7 (an exact zero in their rows), so 3 stays with
    {0,1}, while the default keeps {0,1} | {2,3} apart.
    """
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    w = torch.where(groups[:, None] == groups[None, :], 0.9, 0.01)
    w[:4, :4] = torch.where(groups[:4, None] == groups[None, :4], 0.9, 0.05)
    w.fill_diagonal_(1.0)
    w[3, 7] = w[7, 3] = 0.0
    return w


def test_exact_reference_tree_follows_the_quirk():
    w = _quirk_graph()
    for exact in (False, True):
        tree = build_ncut_tree(w, max_tau=MAX_TAU, exact_reference=exact)
        for tau in _taus(tree):
            assert torch.equal(tree.cut(tau), recursive_ncut(w, tau=tau, exact_reference=exact))
    fixed = build_ncut_tree(w, max_tau=0.5).cut(0.5)
    quirk = build_ncut_tree(w, max_tau=0.5, exact_reference=True).cut(0.5)
    assert fixed.tolist() == [1, 1, 2, 2, 0, 0, 0, 0]
    assert quirk.tolist() == [1, 1, 2, 1, 0, 0, 0, 0]


def test_cut_computes_no_eigenvector(monkeypatch):
    affinity = _affinity("nested")
    tree = build_ncut_tree(affinity, max_tau=MAX_TAU, grid=(16, 16))
    expected = {tau: recursive_ncut(affinity, tau=tau).reshape(16, 16) for tau in (0.2, 0.4, 0.6)}

    def no_eigh(*args, **kwargs):
        raise AssertionError("an eigenvector was computed")

    monkeypatch.setattr(torch.linalg, "eigh", no_eigh)
    for tau, labels in expected.items():
        assert torch.equal(tree.cut(tau), labels)


def test_thresholds_are_where_the_segment_count_changes():
    tree = build_ncut_tree(_affinity("smooth-random"), max_tau=MAX_TAU)
    values = tree.thresholds()
    assert values == sorted(values) and all(0 <= v < MAX_TAU for v in values)
    for value in values:
        below, above = tree.num_segments(value), tree.num_segments(math.nextafter(value, math.inf))
        assert above > below  # some split is accepted only for tau > value
    between = [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)]
    for low, high in zip(values, between, strict=False):  # constant between consecutive change points
        assert torch.equal(tree.cut(math.nextafter(low, math.inf)), tree.cut(high))
    assert tree.num_segments(MAX_TAU) == 1 + len(tree.accepted_splits(MAX_TAU))


def test_json_round_trip_cuts_the_same():
    affinity = _affinity("smooth-random")
    for exact in (False, True):
        tree = build_ncut_tree(affinity, max_tau=MAX_TAU, exact_reference=exact, grid=(16, 16))
        document = json.loads(json.dumps(tree.to_dict()))
        assert document["format"] == "zeroseg.ncut-tree/1" and len(document["region_of_node"]) == 256
        again = NCutTree.from_dict(document)
        assert again.grid == (16, 16) and again.exact_reference is exact and again.max_tau == MAX_TAU
        for tau in (0.1, 0.3, 0.5, MAX_TAU):
            assert torch.equal(again.cut(tau), tree.cut(tau))
        root = document["regions"][0]
        assert root["parent"] is None and root["depth"] == 0 and root["size"] == 256


def test_tree_from_features_matches_the_grid():
    feats = FEATURES["nested"]()
    tree = ncut_tree_from_features(feats, alpha=10, max_tau=0.6)
    direct = recursive_ncut(compute_affinity(normalize_features(feats), alpha=10), tau=0.6)
    assert tree.grid == (16, 16) and torch.equal(tree.cut(0.6), direct.reshape(16, 16))


def test_bad_arguments_name_the_problem():
    tree = build_ncut_tree(_affinity("nested"), max_tau=0.5)
    with pytest.raises(ConfigError, match="exceeds"):
        tree.cut(0.6)
    with pytest.raises(ConfigError, match="`tau`"):
        tree.cut(float("nan"))
    with pytest.raises(ConfigError, match="`max_tau`"):
        build_ncut_tree(torch.ones(3, 3), max_tau=0)
    with pytest.raises(ConfigError, match="`affinity`"):
        build_ncut_tree(torch.ones(3, 4), max_tau=0.5)
    with pytest.raises(ConfigError, match="format"):
        NCutTree.from_dict({"format": "other"})


def test_pipeline_keeps_the_tree_and_resegments_from_it(sdxl_backbone, monkeypatch):
    import numpy as np

    from zeroseg.pipeline import build_pipeline

    image = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    settings = {"method": "diffcut", "model": sdxl_backbone.model, "image_size": 128, "pamr": False}
    pipe = build_pipeline(**settings, backbone=sdxl_backbone, keep_capture=True, keep_tree=MAX_TAU)
    (result,) = pipe(image)
    assert isinstance(result.tree, NCutTree) and result.tree.max_tau == MAX_TAU and result.tree.alpha == 10.0
    passes = pipe.segmenter.num_backbone_passes
    direct = {tau: build_pipeline(**settings, backbone=sdxl_backbone, tau=tau)(image)[0] for tau in (0.2, 0.4, 0.6)}

    def no_eigh(*args, **kwargs):
        raise AssertionError("an eigenvector was computed")

    with monkeypatch.context() as patch:
        patch.setattr(torch.linalg, "eigh", no_eigh)
        for tau, expected in direct.items():
            again = pipe.resegment(result, tau=tau)
            assert np.array_equal(again.labels, expected.labels) and again.tree is result.tree
    assert pipe.segmenter.num_backbone_passes == passes
    # Another alpha changes the affinity: the tree is rebuilt, not reused.
    rebuilt = pipe.resegment(result, alpha=5.0)
    assert rebuilt.tree is not result.tree and rebuilt.tree.alpha == 5.0


@pytest.mark.parametrize("name", ["nested", "smooth-random"])
def test_tree_build_reports_the_segments_found(name):
    from zeroseg.diffcut.tree import NCUT_TREE_STEP

    feats = FEATURES[name]()
    calls = []
    tree = ncut_tree_from_features(feats, max_tau=MAX_TAU, progress=lambda *call: calls.append(call))
    segments = tree.num_segments(MAX_TAU)
    assert {what for what, _, _ in calls} == {NCUT_TREE_STEP}
    counts = [done for _, done, _ in calls]
    assert counts == list(range(2, segments + 1)) + [segments]  # one report per split, then the total
    assert [total for _, _, total in calls] == [0] * (segments - 1) + [segments]
    plain = ncut_tree_from_features(feats, max_tau=MAX_TAU)
    assert torch.equal(tree.cut(MAX_TAU), plain.cut(MAX_TAU)) and tree.thresholds() == plain.thresholds()


def test_segment_features_forwards_pamr_progress():
    from zeroseg.diffcut import segment_features
    from zeroseg.refine.pamr import PAMR_STEP

    feats = FEATURES["nested"]()
    image = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0))
    calls = []
    settings = {"tau": 0.5, "out_size": (40, 40), "image": image, "pamr_iters": 3, "pamr_dilations": (1, 2)}
    labels = segment_features(feats, **settings, progress=lambda *call: calls.append(call))
    assert calls == [(PAMR_STEP, 1, 3), (PAMR_STEP, 2, 3), (PAMR_STEP, 3, 3)]
    assert torch.equal(labels, segment_features(feats, **settings))


def test_diffcut_segmenter_threads_progress(sdxl_backbone):
    from zeroseg.registry import create_segmenter

    segmenter = create_segmenter("diffcut", model=sdxl_backbone.model, backbone=sdxl_backbone, image_size=64)
    segmenter = segmenter.with_config(pamr_iters=2, pamr_dilations=(1,))
    capture = {"features": FEATURES["smooth-random"]()}
    calls = []
    record = lambda *call: calls.append(call)  # noqa: E731
    tree = segmenter.build_tree(capture, progress=record)
    assert calls[-1] == ("NCut tree", tree.num_segments(tree.max_tau), tree.num_segments(tree.max_tau))
    calls.clear()
    image = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))
    labels = segmenter.segment_capture(capture, output_size=(24, 24), image=image, tree=tree, progress=record)
    assert calls == [("PAMR iteration", 1, 2), ("PAMR iteration", 2, 2)]
    assert torch.equal(labels, segmenter.segment_capture(capture, output_size=(24, 24), image=image, tree=tree))
