"""Protocol preprocessing (crop, resizes) and the paper presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroseg.errors import ConfigError
from zeroseg.eval.protocols import (
    PRESETS,
    center_crop_square,
    get_preset,
    get_protocol,
    prepare_image,
    prepare_labels,
)


def test_center_crop_offsets_follow_the_official_formula():
    a = np.arange(5 * 8).reshape(5, 8)
    crop = center_crop_square(a)  # side 5, left offset (8 - 5) // 2 = 1
    assert crop.shape == (5, 5) and crop[0, 0] == 1
    crop = center_crop_square(a, margin=1)  # DiffCut: side 4, offsets (0, 2)
    assert crop.shape == (4, 4) and crop[0, 0] == 2
    with pytest.raises(ConfigError, match="too small"):
        center_crop_square(np.zeros((1, 3)), margin=1)


def test_diffseg_protocol_sizes_and_labels():
    p = get_protocol("diffseg")
    assert p.sizes(512) == (512, 512)
    labels = np.array([[0, 1], [2, -1]])
    out = prepare_labels(labels, p, 4, 4)
    assert out.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, -1, -1], [2, 2, -1, -1]]


def test_diffcut_protocol_resizes_labels_to_input_then_eval():
    p = get_protocol("diffcut")
    assert p.sizes(1024) == (1024, 128)
    labels = np.zeros((9, 10), dtype=np.int64)  # crop side min - 1 = 8, offsets (0, 1)
    labels[:, 1:5] = 1
    labels[:, 5:9] = 2
    out = prepare_labels(labels, p, 16, 2)
    # crop keeps columns 1..8: left half class 1, right half class 2
    assert out.tolist() == [[1, 2], [1, 2]]


def test_prepare_image_bilinear_in_unit_range():
    image = np.zeros((6, 10, 3), dtype=np.uint8)
    image[:, 2:8] = 255
    tensor = prepare_image(image, get_protocol("diffseg"), 3)
    assert tensor.shape == (3, 3, 3) and tensor.dtype == torch.float32
    assert torch.allclose(tensor, torch.ones_like(tensor))  # the crop is the white centre square


def test_presets_reproduce_paper_rows():
    coco = get_preset("diffseg-coco")
    assert coco.dataset == "coco-stuff-27" and coco.settings["kl_threshold"] == 1.1
    voc = get_preset("diffcut-voc")
    assert voc.protocol == "diffcut" and voc.settings["tau"] == 0.5 and voc.settings["alpha"] == 10
    assert voc.settings["pamr_iters"] == 10 and voc.settings["pamr_dilations"] == (1, 2, 4, 8)
    assert voc.dataset_options == {"exact_reference": True} and voc.reported["miou"] == 65.2
    assert get_preset("diffcut-ade20k-nopamr").settings["pamr"] is False
    assert {"diffcut-coco", "diffcut-cityscapes", "diffcut-context", "diffcut-coco-object"} <= set(PRESETS)
    with pytest.raises(ConfigError, match="`preset` must be one of"):
        get_preset("diffcut-mars")
