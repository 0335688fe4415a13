"""JSON export with COCO RLE, labelled overlay, and the segment-command helper."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from zeroseg.openvocab.export import (
    decode_rle,
    draw_labelled_overlay,
    draw_overlay,
    encode_rle,
    label_anchor,
    name_and_export,
    segments_to_json,
)
from zeroseg.openvocab.naming import Segment, SegmentNamer, bounding_box
from zeroseg.outputs import palette

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
    out = []
    for segment_id in np.unique(labels):
        mask = labels == segment_id
        probabilities = np.full(4, 0.1, dtype=np.float32)
        probabilities[segment_id % 4] = 0.7
        out.append(
            Segment(
                segment_id=int(segment_id),
                label=["sky", "cat", "grass", "dog"][segment_id % 4],
                class_index=int(segment_id % 4),
                score=0.7,
                area=int(mask.sum()),
                bbox=bounding_box(mask),
                probabilities=probabilities,
            )
        )
    return out


def test_rle_round_trip_and_string_counts(labels):
    mask = labels == 3
    rle = encode_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [40, 60]
    np.testing.assert_array_equal(decode_rle(rle), mask)


def test_json_decodes_back_to_label_map(labels, tmp_path):
    path = tmp_path / "out" / "image.json"
    segments = _segments(labels)
    document = segments_to_json(segments, labels, path, class_names=["sky", "cat", "grass", "dog"])
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


def test_name_and_export_writes_json_and_labelled_image(tiny_clip, tmp_path):
    labels = np.zeros((32, 48), dtype=np.int64)
    labels[:, 16:32] = 1
    labels[:, 32:] = 2
    namer = SegmentNamer(vocabulary="cat", clip=tiny_clip)  # one class: every segment is "cat"
    merged, segments = name_and_export(labels, torch.rand(3, 32, 48), namer, tmp_path / "photo", merge_same_label=True)
    assert np.all(merged == 0) and len(segments) == 1 and segments[0].area == 32 * 48
    document = json.loads((tmp_path / "photo.json").read_text())
    assert [r["label"] for r in document["segments"]] == ["cat"]
    with Image.open(tmp_path / "photo_labelled.jpg") as written:
        assert written.size == (48, 32)
    _, unmerged = name_and_export(labels, torch.rand(3, 32, 48), namer, tmp_path / "other")
    assert len(unmerged) == 3
