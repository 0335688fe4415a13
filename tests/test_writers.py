"""Writers: COCO RLE (checked against pycocotools), the JSON of every segment, overlays, claims, naming outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from zeroseg.outputs import palette
from zeroseg.rle import decode_rle, encode_label_rles, encode_rle
from zeroseg.types import Segment, SegmentationResult, segments_of
from zeroseg.writers import OutputWriter, draw_labelled_overlay, draw_overlay, label_anchor, result_to_json

mask_utils = pytest.importorskip("pycocotools.mask")


@pytest.fixture()
def labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    labels = np.zeros((40, 60), dtype=np.int64)
    labels[5:25, 10:50] = 1
    labels[30:, :] = 2
    labels[rng.random((40, 60)) < 0.02] = 3  # scattered pixels: a fragmented segment
    return labels


def _segments(labels: np.ndarray) -> list[Segment]:
    names = ["sky", "cat", "grass", "dog"]
    out = []
    for segment in segments_of(labels):
        alternatives = [(names[i], 0.1) for i in range(4) if i != segment.id % 4]
        out.append(
            Segment(segment.id, segment.area, segment.bbox, names[segment.id % 4], 0.7, segment.id % 4, alternatives)
        )
    return out


def test_rle_round_trip_and_string_counts(labels):
    mask = labels == 3
    rle = encode_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [40, 60]
    np.testing.assert_array_equal(decode_rle(rle), mask)


def test_rle_strings_equal_pycocotools_for_every_segment(labels):
    rng = np.random.default_rng(1)
    for case in (labels, rng.integers(0, 5, (23, 17)), np.zeros((3, 4), np.int64), np.ones((1, 1), np.int64)):
        rles = encode_label_rles(case)
        assert sorted(rles) == np.unique(case).tolist()
        for segment_id, rle in rles.items():
            reference = mask_utils.encode(np.asfortranarray((case == segment_id).astype(np.uint8)))
            assert rle["counts"] == reference["counts"].decode("ascii") and rle["size"] == list(case.shape)
    empty = encode_rle(np.zeros((5, 6), bool))
    assert empty["counts"] == mask_utils.encode(np.zeros((5, 6), np.uint8, order="F"))["counts"].decode("ascii")


def test_json_decodes_back_to_label_map(labels, tmp_path):
    result = SegmentationResult(labels.astype(np.int32), "diffcut", segments=_segments(labels))
    writer = OutputWriter(tmp_path / "out", ["json"])
    writer.write(result, "image")
    path = tmp_path / "out" / "image.json"
    document = result_to_json(result)
    assert json.loads(path.read_text()) == document
    assert (document["height"], document["width"]) == (40, 60)
    rebuilt = np.full(labels.shape, -1)
    for record in document["segments"]:
        mask = decode_rle(record["segmentation"])
        assert record["area"] == int(mask.sum()) == int(mask_utils.area(_bytes_rle(record)))
        assert record["bbox"] == [int(v) for v in mask_utils.toBbox(_bytes_rle(record))]
        assert record["alternatives"][0]["score"] == pytest.approx(0.1)
        rebuilt[mask] = record["id"]
    np.testing.assert_array_equal(rebuilt, labels)
    assert [r["label"] for r in document["segments"]] == ["sky", "cat", "grass", "dog"]


def _bytes_rle(record: dict) -> dict:
    rle = record["segmentation"]
    return {"size": rle["size"], "counts": rle["counts"].encode("ascii")}


def test_label_anchor_is_the_most_interior_point():
    mask = np.zeros((21, 41), dtype=bool)
    mask[2:19, 5:22] = True  # 17×17 square centred at (13, 10)
    mask[9:12, 22:40] = True  # a thin arm: not interior
    assert label_anchor(mask) == (13, 10)


def test_labelled_overlay_draws_names_inside_segments(labels):
    image = np.full((40, 60, 3), 128, dtype=np.uint8)
    plain = np.asarray(draw_overlay(image, labels))
    labelled = np.asarray(draw_labelled_overlay(image, labels, {1: "cat"}))
    assert labelled.shape == plain.shape == (40, 60, 3)
    changed = np.any(labelled != plain, axis=-1)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 20
    anchor_x, anchor_y = label_anchor(labels == 1)
    assert xs.min() <= anchor_x <= xs.max() and ys.min() <= anchor_y <= ys.max()
    assert (labels[changed] == 1).mean() > 0.8  # the text box sits on its segment


def test_overlay_colours_and_size_follow_label_map():
    labels = np.zeros((10, 12), dtype=np.int64)
    labels[:, 6:] = 1
    overlay = np.asarray(draw_overlay(Image.new("RGB", (24, 20), (0, 0, 0)), labels, alpha=1.0))
    assert overlay.shape == (10, 12, 3)
    colours = palette(2)
    np.testing.assert_array_equal(overlay[0, 0], colours[0])  # away from the boundary at columns 5/6
    np.testing.assert_array_equal(overlay[0, 11], colours[1])
    assert not np.array_equal(colours[0], colours[1])


def test_json_without_names_has_masks_and_boxes_but_no_labels(labels, tmp_path):
    result = SegmentationResult(labels.astype(np.int32), "diffseg", image=np.zeros((40, 60, 3), np.uint8))
    OutputWriter(tmp_path, ["png", "overlay", "json"]).write(result, "x")
    document = json.loads((tmp_path / "x.json").read_text())
    assert [r["id"] for r in document["segments"]] == [0, 1, 2, 3]
    for record in document["segments"]:
        assert "label" not in record
        mask = decode_rle(record["segmentation"])
        np.testing.assert_array_equal(mask, labels == record["id"])
        ys, xs = np.nonzero(mask)
        assert record["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.png", "x_overlay.jpg"]


def test_labelled_output_refuses_unnamed_results(labels, tmp_path):
    from zeroseg.errors import ConfigError

    result = SegmentationResult(labels.astype(np.int32), "diffseg", image=np.zeros((40, 60, 3), np.uint8))
    with pytest.raises(ConfigError, match="named segments"):
        OutputWriter(tmp_path, ["labelled"]).write(result, "x")


def test_existing_outputs_are_kept_unless_overwrite(labels, tmp_path):
    result = SegmentationResult(labels.astype(np.int32), "diffseg")
    (tmp_path / "x.png").write_bytes(b"old")
    assert OutputWriter(tmp_path, ["png"]).write(result, "x") == []
    assert (tmp_path / "x.png").read_bytes() == b"old"
    assert OutputWriter(tmp_path, ["png"], overwrite=True).write(result, "x") == [tmp_path / "x.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "x.png")), labels)


def test_a_claim_is_exclusive_released_after_failure_and_taken_over_from_a_dead_process(tmp_path):
    writer = OutputWriter(tmp_path, ["png"])
    with writer.claim("sub/a") as first:
        assert first and writer.claim_path("sub/a").exists()
        with writer.claim("sub/a") as second:  # held by a live process (this one)
            assert not second
    assert not writer.claim_path("sub/a").exists()
    with pytest.raises(RuntimeError), writer.claim("b"):
        raise RuntimeError("work failed")
    assert not writer.claim_path("b").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"host": os.uname().nodename, "pid": int(dead.stdout), "time": 0}
    writer.claim_path("c").write_text(json.dumps(record))
    with writer.claim("c") as taken:
        assert taken
