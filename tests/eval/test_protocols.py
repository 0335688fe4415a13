"""Protocol preprocessing (crop, resizes) and the paper presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroseg.errors import ConfigError
from zeroseg.eval.datasets import list_datasets
from zeroseg.eval.plan import make_plan
from zeroseg.eval.protocols import (
    PRESETS,
    center_crop_square,
    get_preset,
    get_protocol,
    prepare_image,
    prepare_labels,
)
from zeroseg.options import build_config
from zeroseg.registry import get_method


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


def test_presets_reach_the_method_config_with_the_official_numerics():
    coco = make_plan(dataset=None, root=".", preset="diffseg-coco")
    assert coco.dataset == "coco-stuff-27" and build_config("diffseg", coco.settings).kl_threshold == 1.1
    voc = make_plan(dataset=None, root=".", preset="diffcut-voc")
    config = build_config(voc.method, voc.settings)
    assert voc.protocol == "diffcut" and (config.tau, config.alpha) == (0.5, 10)
    assert config.pamr_iters == 10 and config.pamr_dilations == (1, 2, 4, 8) and config.exact_reference is True
    assert voc.dataset_options == {"exact_reference": True}
    assert (
        build_config("diffcut", make_plan(dataset=None, root=".", preset="diffcut-ade20k-nopamr").settings).pamr
        is False
    )
    assert {"diffcut-coco", "diffcut-cityscapes", "diffcut-context", "diffcut-coco-object"} <= set(PRESETS)
    with pytest.raises(ConfigError, match="`preset` must be one of"):
        get_preset("diffcut-mars")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_exact_reference_run_and_can_be_overridden(name):
    plan = make_plan(dataset=None, root=".", preset=name)
    assert plan.dataset in list_datasets()
    assert plan.protocol in (get_method(plan.method).protocol, "open-vocabulary")
    assert build_config(plan.method, plan.settings).exact_reference is True
    fixed = make_plan(dataset=None, root=".", preset=name, settings={"exact_reference": False})
    assert build_config(fixed.method, fixed.settings).exact_reference is False
