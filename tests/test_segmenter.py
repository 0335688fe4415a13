"""The image-level contract every method honours, on tiny random-weight models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import zeroseg
from zeroseg.errors import ConfigError
from zeroseg.refine.relabel import canonical_labels
from zeroseg.registry import config_class, create_segmenter, list_methods

FAST = {"diffseg": {"image_size": 128}, "diffcut": {"image_size": 128, "pamr_iters": 3, "pamr_dilations": (1, 2)}}


@pytest.fixture(scope="module", params=list_methods())
def segmenter(request, sd_backbone, sdxl_backbone):
    method = request.param
    backbone = sdxl_backbone if method == "diffcut" else sd_backbone
    return create_segmenter(method, model=backbone.model, backbone=backbone, **FAST[method])


def _image(height: int = 96, width: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (200, 40, 40)
    image[:, width // 2 :] = (30, 60, 220)
    return np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)


def test_methods_are_listed():
    assert list_methods() == ["diffcut", "diffseg"]
    with pytest.raises(ConfigError, match="unknown method"):
        create_segmenter("nope")


def test_labels_have_the_original_resolution_and_contiguous_ids(segmenter):
    result = segmenter.segment(_image(96, 160))
    assert result.labels.shape == (96, 160) and result.labels.dtype == np.int32
    values = np.unique(result.labels)
    assert values.tolist() == list(range(values.size)) and result.num_segments == values.size
    assert result.method == segmenter.method
    assert result.settings["image_size"] == 128 and result.settings["method"] == segmenter.method


def test_same_input_same_output_and_batches_agree(segmenter):
    images = [_image(seed=1), _image(80, 80, seed=2)]
    single = [segmenter.segment(image).labels for image in images]
    batch = [r.labels for r in segmenter.segment_batch(images)]
    for a, b in zip(single, batch, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(segmenter.segment(images[0]).labels, single[0])


def test_accepts_paths_pil_arrays_and_tensors(segmenter, tmp_path):
    array = _image(64, 72)
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    from_path = segmenter.segment(path)
    assert from_path.source == str(path)
    for other in (Image.fromarray(array), array, torch.from_numpy(array).permute(2, 0, 1).float() / 255):
        np.testing.assert_array_equal(segmenter.segment(other).labels, from_path.labels)


def test_capture_then_segment_capture_is_what_segment_does(segmenter):
    array = _image(64, 64)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    capture = segmenter.capture(tensor[None])[0]
    assert all(v.device.type == "cpu" for v in capture.values())
    labels = segmenter.segment_capture(capture, output_size=(64, 64), image=tensor)
    # segment_capture keeps the method's own segment order (what evaluation scores); results carry canonical ids
    np.testing.assert_array_equal(canonical_labels(labels), segmenter.segment(array).labels)


def test_capture_keys_follow_capture_settings_only(segmenter):
    key = segmenter.capture_key()
    assert key["method"] == segmenter.method and key["image_size"] == 128 and "mtime" in key
    swept = segmenter.with_config(**({"tau": 0.9} if segmenter.method == "diffcut" else {"kl_threshold": 0.8}))
    assert swept.capture_key() == key and swept.backbone is segmenter.backbone
    with pytest.raises(ConfigError, match="capture settings"):
        segmenter.with_config(timestep=10)


def test_unknown_setting_is_refused(sd_backbone):
    with pytest.raises(ConfigError, match="unknown diffseg setting"):
        create_segmenter("diffseg", backbone=sd_backbone, tau=0.5)


def test_lazy_namespace_exposes_the_api():
    assert zeroseg.DiffSeg.method == "diffseg" and zeroseg.DiffCut.method == "diffcut"
    assert zeroseg.DiffCutConfig().model == "segmind/SSD-1B"
    with pytest.raises(AttributeError):
        zeroseg.not_a_name  # noqa: B018


@pytest.mark.parametrize(
    ("method", "settings", "match"),
    [
        ("diffseg", {"image_size": 100}, "image_size"),
        ("diffseg", {"kl_threshold": (1.0, 1.0)}, "kl_threshold"),
        ("diffseg", {"kl_threshold": -1.0}, "kl_threshold"),
        ("diffseg", {"anchors": 1}, "anchors"),
        ("diffcut", {"timestep": 1000}, "timestep"),
        ("diffcut", {"tau": 0}, "tau"),
        ("diffcut", {"pamr_dilations": (0, 2)}, "pamr_dilations"),
    ],
)
def test_config_validation(method, settings, match):
    with pytest.raises(ConfigError, match=match):
        config_class(method)(**settings)


def test_kl_threshold_per_iteration_is_kept():
    config = config_class("diffseg")(kl_threshold=[1.1, 0.9, 0.8])
    assert config.kl_threshold == (1.1, 0.9, 0.8) and config.to_dict()["kl_threshold"] == [1.1, 0.9, 0.8]
    assert config_class("diffseg")(kl_threshold=[0.9]).kl_threshold == 0.9


def test_the_method_gives_the_same_labels_on_any_thread_count(segmenter):
    """Given one capture, the method's output does not depend on torch's thread count (the backbone's float
    kernels may round differently per thread count; the method must not add to that)."""
    array = _image(72, 96)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    capture = segmenter.capture(tensor[None])[0]
    threads = torch.get_num_threads()
    labels = {}
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            labels[count] = segmenter.segment_capture(capture, output_size=(72, 96), image=tensor)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(labels[1], labels[2])
