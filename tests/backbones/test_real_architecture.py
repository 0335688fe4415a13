"""The random-weight backbones with released architectures that the benchmarks measure."""

from __future__ import annotations

import pytest
import torch

from zeroseg import build_pipeline, testing

NARROW = {"block_out_channels": [32, 64, 64, 64], "norm_num_groups": 8, "attention_head_dim": 8}


@pytest.fixture
def narrow_architectures(monkeypatch):
    """The released layouts with narrow widths, so a test builds and runs them in a second."""
    sd14 = {**testing.UNET_ARCHITECTURES["sd14"], **NARROW}
    ssd1b = {
        **testing.UNET_ARCHITECTURES["ssd1b"],
        "block_out_channels": [32, 64, 64],
        "norm_num_groups": 8,
        "attention_head_dim": [4, 8, 8],
    }
    monkeypatch.setitem(testing.UNET_ARCHITECTURES, "sd14", sd14)
    monkeypatch.setitem(testing.UNET_ARCHITECTURES, "ssd1b", ssd1b)
    vae = {**testing.VAE_ARCHITECTURE, "block_out_channels": [8, 8, 16, 16], "norm_num_groups": 4}
    monkeypatch.setattr(testing, "VAE_ARCHITECTURE", vae)


def test_ssd1b_is_sdxl_with_four_layers_in_the_last_encoder_block():
    sdxl, ssd1b = testing.UNET_ARCHITECTURES["sdxl"], testing.UNET_ARCHITECTURES["ssd1b"]
    assert ssd1b["transformer_layers_per_block"] == [1, 2, 4]
    assert {k: v for k, v in ssd1b.items() if k != "transformer_layers_per_block"} == {
        k: v for k, v in sdxl.items() if k != "transformer_layers_per_block"
    }


@pytest.mark.parametrize(
    ("name", "method", "family", "scaling", "width"),
    [("sd14", "diffseg", "sd", 0.18215, 768), ("ssd1b", "diffcut", "sdxl", 0.13025, 2048)],
)
def test_backbone_runs_the_pipeline_with_the_released_conditioning(
    narrow_architectures, name, method, family, scaling, width
):
    backbone = testing.real_architecture_backbone(name, image_sizes=(128,))
    assert backbone.family == family and backbone.vae.config.scaling_factor == scaling
    assert backbone.text_encoders == [] and backbone.schedule.num_steps == 1000
    added = dict(backbone.conditioning(2, 128).per_image)
    assert added.pop("encoder_hidden_states").shape == (2, 77, width)
    if family == "sdxl":
        assert added["text_embeds"].shape == (2, 1280)
        assert added["time_ids"].tolist() == [[128, 128, 0, 0, 128, 128]] * 2
    else:
        assert added == {}
    settings = {"pamr_iters": 2} if method == "diffcut" else {}
    pipeline = build_pipeline(method, backbone=backbone, model=backbone.model, image_size=128, **settings)
    image = torch.rand(3, 96, 80)
    (result,) = pipeline([image])
    assert result.labels.shape == (96, 80) and result.timings["capture"] > 0
