"""Exploring a result without a browser: pick a segment, split and merge along the NCut tree, replay the edits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from zeroseg.diffcut.tree import EditedTree, NCutTree, build_ncut_tree
from zeroseg.errors import ConfigError
from zeroseg.web.edits import replay
from zeroseg.web.service import SegmentService
from zeroseg.web.sessions import SessionStore

NO_PAMR = {"tau": 0.5, "alpha": 10.0, "pamr": False}


@pytest.fixture(scope="module")
def service(tiny_sdxl_path):
    return SegmentService(models=[str(tiny_sdxl_path)], capture_settings={"image_size": 128})


@pytest.fixture
def session(tmp_path):
    store = SessionStore(tmp_path / "root")
    yield store.get("visitor")
    store.close_all()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    rng = np.random.default_rng(0)
    array = np.zeros((48, 64, 3), np.uint8)
    array[:24] = (40, 90, 200)
    array[24:, 32:] = (200, 60, 40)
    array[24:, :32] = (30, 160, 40)
    path = tmp_path_factory.mktemp("images") / "scene.png"
    Image.fromarray(np.clip(array + rng.normal(0, 8, array.shape), 0, 255).astype(np.uint8)).save(path)
    return path


def _tree() -> NCutTree:
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(36, 4, generator=gen)
    affinity = torch.exp(-(torch.cdist(points, points) ** 2))
    return build_ncut_tree(affinity, max_tau=0.95, grid=(6, 6))


def test_edited_tree_without_edits_is_the_tree():
    tree = _tree()
    edited = EditedTree(tree)
    for tau in [*tree.thresholds(), 0.95]:
        assert torch.equal(edited.cut(tau), tree.cut(tau))
        assert len(edited.leaves(tau)) == tree.num_segments(tau) == len(torch.unique(edited.cut(tau)))


def test_split_and_merge_edit_the_cut():
    tree = _tree()
    tau = tree.thresholds()[1] + 1e-6
    edited = EditedTree(tree)
    leaf = next(n for n in edited.leaves(tau) if tree.nodes[n].children is not None)
    split = edited.with_edit("split", leaf)
    assert split.num_segments(tau) == tree.num_segments(tau) + 1
    assert set(split.leaves(tau)) == set(edited.leaves(tau)) - {leaf} | set(tree.nodes[leaf].children)
    merged = split.with_edit("merge", tree.nodes[leaf].children[0])
    assert torch.equal(merged.cut(tau), tree.cut(tau))  # merging the children back undoes the split
    root_children = tree.nodes[0].children
    assert EditedTree(tree, [{"op": "merge", "node": root_children[1]}]).num_segments(tau) == 1
    again = EditedTree.from_dict(json.loads(json.dumps(split.to_dict())))
    assert again.edits == split.edits and torch.equal(again.cut(tau), split.cut(tau))
    with pytest.raises(ConfigError, match="root"):
        EditedTree(tree, [{"op": "merge", "node": 0}])
    with pytest.raises(ConfigError, match="op"):
        EditedTree(tree, [{"op": "grow", "node": 0}])


def test_pick_describes_highlights_and_cuts_out(service, session, scene):
    view = service.segment_upload(session, scene, method="diffcut", model=service.models[0], settings=NO_PAMR)
    labels = np.asarray(Image.open(view.downloads["png"]))
    pick = service.pick(session, 50, 40)
    assert not pick.error and pick.segment_id == labels[40, 50]
    mask = labels == pick.segment_id
    assert f"segment {pick.segment_id} · {int(mask.sum())} px" in pick.status
    cutout = np.asarray(Image.open(pick.cutout))
    assert cutout.shape == (48, 64, 4) and np.array_equal(cutout[..., 3] > 0, mask)
    assert np.array_equal(cutout[..., :3][mask], session.result.image[mask])
    assert pick.overlay.shape == (48, 64, 3) and pick.region is not None
    assert service.pick(session, 99, 0).error and service.pick_segment(session, 999).error


def test_pick_is_fast(service, session, scene):
    import time

    service.segment_upload(session, scene, method="diffcut", model=service.models[0], settings=NO_PAMR)
    start = time.perf_counter()
    service.pick(session, 10, 10)
    assert time.perf_counter() - start < 0.3


def test_split_merge_record_and_replay(service, session, scene, tiny_sdxl_path):
    view = service.segment_upload(session, scene, method="diffcut", model=service.models[0], settings=NO_PAMR)
    picks = [service.pick_segment(session, s) for s in range(view.num_segments)]
    splittable = next(p for p in picks if p.can_split)
    service.pick_segment(session, splittable.segment_id)
    split = service.split(session)
    assert not split.error and "split of segment" in split.status
    document = json.loads(split.downloads["json"].read_text())
    assert document["settings"]["edits"] == [{"op": "split", "node": splittable.region}]
    tree_document = json.loads(split.downloads["tree"].read_text())["tree"]
    assert tree_document["edits"] == document["settings"]["edits"]
    # The edits stay through a tau move, and a merge adds to them.
    finer = service.resegment(session, settings=NO_PAMR | {"tau": 0.6})
    assert json.loads(finer.downloads["json"].read_text())["settings"]["edits"] == document["settings"]["edits"]
    assert service.pick_segment(session, 0).can_merge
    merged = service.merge(session)
    assert not merged.error and merged.num_segments < finer.num_segments
    document = json.loads(merged.downloads["json"].read_text())
    assert [e["op"] for e in document["settings"]["edits"]] == ["split", "merge"]
    labels = np.asarray(Image.open(merged.downloads["png"]))
    again = replay(scene, document, model=str(tiny_sdxl_path))
    assert np.array_equal(again.labels, labels)
    reset = service.reset_edits(session)
    assert not reset.error and "edits" not in json.loads(reset.downloads["json"].read_text())["settings"]


def test_edit_needs_a_pick(service, session, scene):
    service.segment_upload(session, scene, method="diffcut", model=service.models[0], settings=NO_PAMR)
    assert service.split(session).error and service.merge(session).error


def _quadrants(self, capture, *, output_size, image=None):  # noqa: ANN001, ANN202 - stands in for DiffSeg's maps
    height, width = output_size
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return (rows >= height // 2).long() * 2 + (cols >= width // 2).long()


def test_diffseg_merges_two_picked_segments(service, session, scene, tiny_sdxl_path, monkeypatch):
    from zeroseg.diffseg.segmenter import DiffSeg

    monkeypatch.setattr(DiffSeg, "segment_capture", _quadrants)  # the tiny model's attention gives one segment
    settings = {"kl_threshold": 0.3, "anchors": 8}
    view = service.segment_upload(session, scene, method="diffseg", model=service.models[0], settings=settings)
    assert view.num_segments == 4
    service.pick_segment(session, 0)
    assert service.split(session).error  # no tree to split along
    assert service.merge(session).error  # one pick only
    service.pick_segment(session, 0)
    service.pick_segment(session, 1)
    merged = service.merge(session)
    assert not merged.error and merged.num_segments == view.num_segments - 1
    document = json.loads(merged.downloads["json"].read_text())
    assert document["settings"]["edits"] == [{"op": "merge", "segments": [0, 1]}]
    again = replay(scene, document, model=str(tiny_sdxl_path))
    assert np.array_equal(again.labels, np.asarray(Image.open(merged.downloads["png"])))
