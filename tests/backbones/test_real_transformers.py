"""The released transformer layouts (SD3 / SD3.5, FLUX.1, PixArt-Sigma) with random weights, end to end."""

from __future__ import annotations

import pytest
import torch

from zeroseg import build_pipeline, testing

NARROW = {
    "sd3": {"num_attention_heads": 2, "attention_head_dim": 8, "joint_attention_dim": 32, "caption_projection_dim": 16},
    "flux": {
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "axes_dims_rope": (4, 6, 6),
        "joint_attention_dim": 32,
    },
    "pixart": {"num_attention_heads": 2, "attention_head_dim": 8, "cross_attention_dim": 16, "caption_channels": 32},
}


@pytest.fixture
def narrow_transformers(monkeypatch):
    """Every released depth and block layout, with narrow widths so a test runs them in seconds."""
    for name, config in testing.TRANSFORMER_ARCHITECTURES.items():
        narrowed = {**config, **NARROW[testing.ARCHITECTURE_FAMILY[name]]}
        if "pooled_projection_dim" in config:
            narrowed["pooled_projection_dim"] = 16
        monkeypatch.setitem(testing.TRANSFORMER_ARCHITECTURES, name, narrowed)
    vae = {**testing.VAE_ARCHITECTURE, "block_out_channels": [8, 8, 16, 16], "norm_num_groups": 4}
    monkeypatch.setattr(testing, "VAE_ARCHITECTURE", vae)


def test_released_layouts_have_the_published_depths():
    arch = testing.TRANSFORMER_ARCHITECTURES
    assert (arch["sd3-medium"]["num_layers"], arch["sd35-large"]["num_layers"]) == (24, 38)
    assert arch["sd35-medium"]["dual_attention_layers"] == tuple(range(13))
    assert (arch["flux-dev"]["num_layers"], arch["flux-dev"]["num_single_layers"]) == (19, 38)
    assert arch["flux-dev"]["guidance_embeds"] and not arch["flux-schnell"]["guidance_embeds"]
    assert arch["pixart-sigma"]["num_layers"] == 28


@pytest.mark.parametrize(
    ("name", "layers", "layer"),
    [
        ("sd3-medium", (9,), 9),  # Seg4Diff's layer
        ("sd35-large", (14,), 14),  # the same relative depth in 38 blocks
        ("flux-dev", (15, 16, 17, 18), 18),  # ConceptAttention's double blocks
        ("pixart-sigma", (14,), 14),
    ],
)
def test_each_released_layout_runs_both_methods_at_its_defaults(narrow_transformers, name, layers, layer):
    backbone = testing.real_architecture_backbone(name, image_sizes=(128,))
    assert backbone.family == testing.ARCHITECTURE_FAMILY[name] and backbone.latent_divisor == 16
    for method, expected in (("diffseg", {"layers": layers}), ("diffcut", {"layer": layer})):
        settings = {"pamr_iters": 2} if method == "diffcut" else {}
        pipeline = build_pipeline(method, backbone=backbone, model=backbone.model, image_size=128, **settings)
        segmenter = pipeline.segmenter
        for key, value in expected.items():
            assert getattr(segmenter.config, key) == value
            assert segmenter.default_sources[key]  # recorded with its source
        assert "image_size" not in segmenter.default_sources  # given explicitly
        (result,) = pipeline([torch.rand(3, 96, 80)])
        assert result.labels.shape == (96, 80) and result.num_segments >= 1
        assert result.settings["defaults_from"]["timestep"] == segmenter.default_sources["timestep"]
