"""Attention and feature capture on tiny SD and SDXL models, checked against naive recomputation."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
import torch

from zeroseg.backbones import (
    capture_features,
    capture_self_attention,
    empty_prompt_conditioning,
    encode_images,
)
from zeroseg.backbones.families.unet import unet_feature_layer
from zeroseg.backbones.recorders import AttentionAccumulator, ExplicitRecorder

SIZE = 128  # pixels -> 16x16 latent


def _inputs(backbone, batch: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    images = torch.rand(batch, 3, SIZE, SIZE)
    latents = encode_images(backbone, images)
    return latents, empty_prompt_conditioning(backbone, batch, SIZE)


def _unet_output(backbone, latents, conditioning, timestep: int = 300) -> torch.Tensor:
    tensors = conditioning.kwargs()
    hidden = tensors.pop("encoder_hidden_states")
    t = torch.full((latents.shape[0],), timestep)
    with torch.inference_mode():
        return backbone.denoiser(latents, t, encoder_hidden_states=hidden, added_cond_kwargs=tensors or None).sample


def _record_attn1_inputs(backbone, latents, conditioning) -> dict[str, torch.Tensor]:
    """Run the unmodified UNet and keep the hidden states entering every self-attention module."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for layer in backbone.adapter.layers(backbone.denoiser, latents.shape[-1]):

        def pre_hook(_module, args, kwargs, name=layer.name):
            seen[name] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

        handles.append(layer.attention.register_forward_pre_hook(pre_hook, with_kwargs=True))
    try:
        _unet_output(backbone, latents, conditioning)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_sd_topology_has_sixteen_layers_over_four_sides(sd_backbone):
    layers = sd_backbone.adapter.layers(sd_backbone.denoiser, SIZE // 8)
    assert Counter(layer.side for layer in layers) == {16: 5, 8: 5, 4: 5, 2: 1}
    assert layers[0].name == "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    assert all(layer.name.endswith("attn1") for layer in layers)


def test_discovered_sides_match_the_token_grids_seen_at_run_time(backbone):
    latents, conditioning = _inputs(backbone)
    seen = _record_attn1_inputs(backbone, latents, conditioning)
    layers = backbone.adapter.layers(backbone.denoiser, latents.shape[-1])
    assert set(seen) == {layer.name for layer in layers}
    for layer in layers:
        assert seen[layer.name].shape[1] == layer.side**2, layer.name


def test_captured_attention_equals_naive_recomputation_from_q_and_k(backbone):
    latents, conditioning = _inputs(backbone, batch=2)
    inputs = _record_attn1_inputs(backbone, latents, conditioning)
    expected: dict[int, list[torch.Tensor]] = defaultdict(list)
    for layer in backbone.adapter.layers(backbone.denoiser, latents.shape[-1]):
        attn, x = layer.attention, inputs[layer.name]
        with torch.inference_mode():
            q, k = attn.to_q(x), attn.to_k(x)
        heads = attn.heads
        b, n, inner = q.shape
        q = q.view(b, n, heads, inner // heads).transpose(1, 2)
        k = k.view(b, n, heads, inner // heads).transpose(1, 2)
        probs = torch.softmax(q @ k.transpose(-1, -2) / (inner // heads) ** 0.5, dim=-1)
        expected[layer.side].append(probs.mean(dim=1))
    maps = capture_self_attention(backbone, latents, 300, conditioning)
    assert set(maps) == set(expected)
    for side, per_layer in expected.items():
        naive = torch.stack(per_layer).mean(dim=0)
        assert maps[side].shape == (2, side * side, side * side)
        torch.testing.assert_close(maps[side], naive, atol=2e-5, rtol=1e-4)


def test_maps_are_row_stochastic(backbone):
    latents, conditioning = _inputs(backbone)
    for side, probs in capture_self_attention(backbone, latents, 300, conditioning).items():
        assert probs.dtype == torch.float32
        assert (probs >= 0).all()
        torch.testing.assert_close(probs.sum(-1), torch.ones(1, side * side), atol=1e-5, rtol=0)


def test_recorder_leaves_the_unet_output_unchanged(backbone):
    latents, conditioning = _inputs(backbone)
    plain = _unet_output(backbone, latents, conditioning)
    layers = backbone.adapter.layers(backbone.denoiser, latents.shape[-1])
    accumulator = AttentionAccumulator(len(layers))
    originals = {layer.name: layer.attention.processor for layer in layers}
    try:
        for layer in layers:
            layer.attention.set_processor(ExplicitRecorder(layer.side, accumulator, stop_when_done=False))
        recorded = _unet_output(backbone, latents, conditioning)
    finally:
        for layer in layers:
            layer.attention.set_processor(originals[layer.name])
    assert accumulator.remaining == 0
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=1e-4)


def test_processors_are_restored_and_cross_attention_untouched(sd_backbone):
    before = dict(sd_backbone.denoiser.attn_processors)
    latents, conditioning = _inputs(sd_backbone)
    capture_self_attention(sd_backbone, latents, 300, conditioning)
    after = dict(sd_backbone.denoiser.attn_processors)
    assert {k: type(v) for k, v in after.items()} == {k: type(v) for k, v in before.items()}


def test_only_requested_sides_are_materialised_and_forward_stops_early(sd_backbone):
    latents, conditioning = _inputs(sd_backbone)
    calls = []
    handle = sd_backbone.denoiser.conv_out.register_forward_hook(lambda *a: calls.append(1))
    try:
        maps = capture_self_attention(sd_backbone, latents, 300, conditioning, sides=[4, 2])
    finally:
        handle.remove()
    assert set(maps) == {4, 2}
    assert calls == []  # stopped after the last 4x4 layer of the decoder, before the output convolution
    full = capture_self_attention(sd_backbone, latents, 300, conditioning)
    torch.testing.assert_close(maps[4], full[4])


def test_feature_layer_is_the_last_encoder_self_attention(sd_backbone, sdxl_backbone):
    # SD 1.x: the last down block has no attention, so the layer is in down_blocks[-2].
    assert unet_feature_layer(sd_backbone.denoiser)[0] == "down_blocks.2.attentions.1.transformer_blocks.0.attn1"
    # SDXL: down_blocks[-1], last of its (here two) transformer layers.
    assert unet_feature_layer(sdxl_backbone.denoiser)[0] == "down_blocks.2.attentions.1.transformer_blocks.1.attn1"


def test_early_exit_features_equal_full_forward_features(backbone):
    latents, conditioning = _inputs(backbone, batch=2)
    name, module = unet_feature_layer(backbone.denoiser)
    hooked: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: hooked.append(out.clone()))
    decoder_calls = []
    decoder = backbone.denoiser.up_blocks[0].register_forward_hook(lambda *a: decoder_calls.append(1))
    try:
        _unet_output(backbone, latents, conditioning, timestep=50)
        assert len(decoder_calls) == 1
        features = capture_features(backbone, latents, 50, conditioning)
        assert len(decoder_calls) == 1  # the early exit never reached the decoder
    finally:
        handle.remove()
        decoder.remove()
    b, c, h, w = features.shape
    assert (b, h * w) == (2, hooked[0].shape[1]) and c == hooked[0].shape[2]
    assert torch.equal(features, hooked[0].transpose(1, 2).reshape(b, c, h, w))
    assert torch.equal(features, capture_features(backbone, latents, 50, conditioning, early_exit=False))


def test_features_are_taken_before_the_residual_add(sd_backbone):
    latents, conditioning = _inputs(sd_backbone)
    _, module = unet_feature_layer(sd_backbone.denoiser)
    block_inputs: list[torch.Tensor] = []
    parent = next(m for m in sd_backbone.denoiser.modules() if getattr(m, "attn1", None) is module)
    handle = parent.norm1.register_forward_hook(lambda _m, _i, out: block_inputs.append(out.clone()))
    try:
        features = capture_features(sd_backbone, latents, 50, conditioning)
    finally:
        handle.remove()
    with torch.inference_mode():
        direct = module(block_inputs[0])  # attn1(norm1(h)), no residual
    b, c, h, w = features.shape
    torch.testing.assert_close(features, direct.transpose(1, 2).reshape(b, c, h, w))


@pytest.mark.parametrize("bad_side", [3])
def test_unknown_sides_are_refused(sd_backbone, bad_side):
    latents, conditioning = _inputs(sd_backbone)
    with pytest.raises(ValueError, match="no self-attention layer"):
        capture_self_attention(sd_backbone, latents, 300, conditioning, sides=[bad_side])
