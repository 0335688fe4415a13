"""Loading open_clip models: local checkpoints, bad names, and the missing-weights message (offline)."""

from __future__ import annotations

import pytest
import torch

from zeroseg.errors import ConfigError, WeightsNotFoundError
from zeroseg.openvocab.clip_model import load_clip_model
from zeroseg.openvocab.naming import SegmentNamer

from .conftest import TINY_MODEL_NAME


def test_local_checkpoint_loads_the_saved_weights(tiny_clip, tiny_checkpoint):
    loaded = load_clip_model(TINY_MODEL_NAME, pretrained=tiny_checkpoint)
    assert loaded.pretrained == str(tiny_checkpoint) and not loaded.model.training
    for (name, expected), actual in zip(
        tiny_clip.model.state_dict().items(), loaded.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(actual, expected, msg=name)


def test_namer_built_by_name_and_checkpoint(tiny_checkpoint):
    namer = SegmentNamer(TINY_MODEL_NAME, tiny_checkpoint, vocabulary="cat,dog")
    assert namer.clip.name == TINY_MODEL_NAME and namer.class_names == ["cat", "dog"]


def test_missing_hub_weights_give_one_clear_message(open_clip, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        load_clip_model("convnext_large_d_320", "laion2b_s29b_b131k_ft_soup")
    message = str(info.value)
    assert "convnext_large_d_320" in message and "laion2b_s29b_b131k_ft_soup" in message
    assert "`pretrained`" in message and "\n" not in message


def test_missing_local_file(open_clip, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_clip_model("convnext_large_d_320", tmp_path / "nope.bin")


def test_unknown_model_and_tag(open_clip):
    with pytest.raises(ConfigError, match="`model_name`"):
        load_clip_model("not-a-model", None)
    with pytest.raises(ConfigError, match="laion2b_s29b_b131k_ft_soup"):
        load_clip_model("convnext_large_d_320", "no-such-tag")
