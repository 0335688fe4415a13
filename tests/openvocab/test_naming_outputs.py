"""Naming through the pipeline's naming stage, written by the writers: JSON with names and the labelled overlay."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from zeroseg.openvocab.naming import SegmentNamer
from zeroseg.pipeline import name_segments
from zeroseg.types import SegmentationResult
from zeroseg.writers import OutputWriter


def test_naming_and_writing_give_json_and_labelled_image(tiny_clip, tmp_path):
    labels = np.zeros((32, 48), dtype=np.int32)
    labels[:, 16:32] = 1
    labels[:, 32:] = 2
    namer = SegmentNamer(vocabulary="cat", clip=tiny_clip)  # one class: every segment is "cat"
    image = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    merged, segments = name_segments(namer, torch.rand(3, 32, 48), labels, merge_same_label=True)
    assert np.all(merged == 0) and len(segments) == 1 and segments[0].area == 32 * 48
    result = SegmentationResult(merged, "diffcut", segments=segments, image=image)
    OutputWriter(tmp_path, ["json", "labelled"]).write(result, "photo")
    document = json.loads((tmp_path / "photo.json").read_text())
    assert [r["label"] for r in document["segments"]] == ["cat"]
    with Image.open(tmp_path / "photo_labelled.jpg") as written:
        assert written.size == (48, 32)
    _, unmerged = name_segments(namer, torch.rand(3, 32, 48), labels)
    assert len(unmerged) == 3
