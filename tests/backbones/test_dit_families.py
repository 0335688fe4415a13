"""The diffusion-transformer families (sd3, flux, pixart) on their tiny models, checked against diffusers itself.

Detection, the noise processes, the empty-prompt conditioning, the observing recorder (the stock output kept bit
for bit, the recorded image-image attention equal to a recomputation from the stock processors' own q/k), early
exit, features, the public pipeline and CLI end to end, and the loading errors.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zeroseg.backbones import (
    add_noise,
    capture_features,
    capture_self_attention,
    denoiser_layers,
    empty_prompt_conditioning,
    encode_images,
    load_backbone,
)
from zeroseg.backbones.families import detect_folder_family, get_family
from zeroseg.backbones.recorders import AttentionAccumulator, ObservingRecorder
from zeroseg.backbones.schedule import DDPMSchedule, FlowMatchSchedule
from zeroseg.errors import ConfigError, WeightsNotFoundError
from zeroseg.testing import make_tiny_model

DIT_FAMILIES = ("sd3", "flux", "pixart")
FLOW_FAMILIES = ("sd3", "flux")
SIZE = 128  # pixels -> 16x16 latents -> 8x8 tokens
TIMESTEP = {"sd3": 545, "flux": 500, "pixart": 300}
PIPELINE_CLASS = {"sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline", "pixart": "PixArtSigmaPipeline"}
WIDTH = {"sd3": 16, "flux": 32, "pixart": 8}  # heads x head dim of the tiny transformers


# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dit-models")


@pytest.fixture(scope="module")
def dit_paths(dit_root: Path) -> dict[str, Path]:
    """Each tiny DiT model folder, written once for the module (on first use)."""
    return {}


def _path(dit_paths: dict[str, Path], dit_root: Path, family: str) -> Path:
    if family not in dit_paths:
        dit_paths[family] = make_tiny_model(dit_root / f"tiny-{family}", family)
    return dit_paths[family]


@pytest.fixture(scope="module")
def loaded(dit_paths, dit_root):
    """One shared loaded backbone per family (tests that change a backbone load their own)."""
    cache: dict[str, object] = {}

    def get(family: str):
        if family not in cache:
            cache[family] = load_backbone(str(_path(dit_paths, dit_root, family)))
        return cache[family]

    return get


@pytest.fixture(params=DIT_FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def dit_path(family, dit_paths, dit_root) -> Path:
    return _path(dit_paths, dit_root, family)


@pytest.fixture
def backbone(family, loaded):
    return loaded(family)


def _inputs(backbone, batch: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, SIZE, SIZE, generator=gen)
    latents = encode_images(backbone, images)
    return latents, empty_prompt_conditioning(backbone, batch, SIZE)


def _run(backbone, latents, conditioning, timestep: int) -> torch.Tensor:
    with torch.inference_mode():
        return backbone.adapter.run_denoiser(backbone, latents, timestep, conditioning)[0]


# -------------------------------------------------------------------------------------------------- detection


def test_tiny_folder_is_detected_as_its_family(family, dit_path, backbone, tmp_path):
    index = json.loads((dit_path / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINE_CLASS[family]
    assert index["transformer"] == ["diffusers", get_family(family).transformer_class]
    assert detect_folder_family(dit_path, model="m").name == family
    assert backbone.family == family
    assert backbone.adapter.denoiser_folder == "transformer"
    # Without model_index.json the folder is still recognised from transformer/config.json.
    bare = tmp_path / "no-index"
    shutil.copytree(dit_path, bare)
    (bare / "model_index.json").unlink()
    assert detect_folder_family(bare, model="m").name == family


def test_latent_divisor_is_sixteen(family, backbone):
    assert backbone.latent_divisor == 16 == get_family(family).default_latent_divisor
    assert backbone.vae_scale_factor == 8
    backbone.check_image_size(SIZE)
    with pytest.raises(ConfigError):
        backbone.check_image_size(SIZE + 8)


def test_schedule_is_flow_matching_or_ddpm(family, backbone):
    expected = FlowMatchSchedule if family in FLOW_FAMILIES else DDPMSchedule
    assert type(backbone.schedule) is expected
    assert backbone.schedule.num_steps == 1000


def test_layers_are_the_transformer_blocks_on_the_patch_grid(family, backbone):
    layers = denoiser_layers(backbone, SIZE // 8)
    denoiser = backbone.denoiser
    assert {layer.side for layer in layers} == {SIZE // 16}
    if family == "flux":
        doubles, singles = len(denoiser.transformer_blocks), len(denoiser.single_transformer_blocks)
        assert len(layers) == doubles + singles == 4
        assert [layer.name for layer in layers] == [
            "transformer_blocks.0",
            "transformer_blocks.1",
            "single_transformer_blocks.0",
            "single_transformer_blocks.1",
        ]
        assert [layer.features_from_input for layer in layers] == [True, True, False, False]
        for layer, block in zip(layers[doubles:], denoiser.single_transformer_blocks, strict=True):
            assert layer.attention is block.attn and layer.features is block.attn
    else:
        blocks = denoiser.transformer_blocks
        assert len(layers) == len(blocks) == 4
        assert all(layer.features_from_input for layer in layers)
        for layer, block in zip(layers, blocks, strict=True):
            if family == "sd3":  # the tiny SD3 is SD3.5-like: image-only attn2 in blocks 0 and 1
                assert layer.attention is (block.attn2 if block.attn2 is not None else block.attn)
                assert layer.features is block.attn.to_out[0]
            else:
                assert layer.attention is block.attn1 and layer.features is block.attn1.to_out[0]
        if family == "sd3":
            assert [block.attn2 is not None for block in blocks] == [True, True, False, False]


# ------------------------------------------------------------------------------------------------------ noise


@pytest.mark.parametrize("timestep", [0, 1, 300, 545, 999])
def test_noise_follows_the_family_process(family, backbone, timestep):
    latents = torch.randn(3, backbone.vae.config.latent_channels, 16, 16, generator=torch.Generator().manual_seed(5))
    seed = 123
    eps = torch.randn((1, *latents.shape[1:]), generator=torch.Generator().manual_seed(seed)).expand_as(latents)
    noised = add_noise(backbone, latents, timestep, seed=seed)
    if family in FLOW_FAMILIES:
        sigma = timestep / 1000
        expected = (1 - sigma) * latents + sigma * eps
    else:
        from diffusers import DDPMScheduler

        config = json.loads(Path(backbone.model, "scheduler", "scheduler_config.json").read_text())
        ddpm = DDPMScheduler(
            num_train_timesteps=config["num_train_timesteps"],
            beta_start=config["beta_start"],
            beta_end=config["beta_end"],
            beta_schedule=config["beta_schedule"],
        )
        expected = ddpm.add_noise(latents, eps.contiguous(), torch.tensor([timestep]))
    assert noised.shape == latents.shape and noised.dtype == torch.float32
    torch.testing.assert_close(noised, expected, atol=1e-6, rtol=1e-5)
    # Another seed is another draw; the batch shares one draw (checked through ``expected`` above).
    if timestep:
        assert not torch.allclose(add_noise(backbone, latents, timestep, seed=seed + 1), noised)
    assert add_noise(backbone, latents, timestep, seed=None) is latents


def test_flow_noise_at_timestep_zero_is_the_clean_latent(backbone, family):
    if family not in FLOW_FAMILIES:
        pytest.skip("DDPM keeps a little noise at t=0")
    latents = torch.randn(2, 16, 16, 16)
    assert torch.equal(add_noise(backbone, latents, 0, seed=1), latents)


@pytest.mark.parametrize("timestep", [1000, -1])
def test_timestep_outside_the_schedule_is_a_config_error(backbone, timestep):
    latents = torch.zeros(1, backbone.vae.config.latent_channels, 16, 16)
    with pytest.raises(ConfigError, match="timestep|0, 999"):
        add_noise(backbone, latents, timestep, seed=0)


# ----------------------------------------------------------------------------------------------- conditioning


def _fresh(dit_path: Path):
    return load_backbone(str(dit_path))


def test_sd3_conditioning_is_two_clips_padded_then_77_zero_t5_tokens(dit_paths, dit_root):
    path = _path(dit_paths, dit_root, "sd3")
    backbone = _fresh(path)
    joint = backbone.denoiser.config.joint_attention_dim
    clip_widths = [encoder.config.hidden_size for encoder in backbone.text_encoders]
    projections = [encoder.config.projection_dim for encoder in backbone.text_encoders]
    # An independent encoding with transformers, as StableDiffusion3Pipeline does without T5.
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    states, pooled = [], []
    for suffix in ("", "_2"):
        tokenizer = CLIPTokenizer.from_pretrained(str(path / f"tokenizer{suffix}"))
        encoder = CLIPTextModelWithProjection.from_pretrained(str(path / f"text_encoder{suffix}")).eval()
        ids = tokenizer("", padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = encoder(ids, output_hidden_states=True)
        states.append(out.hidden_states[-2])
        pooled.append(out.text_embeds)

    cond = empty_prompt_conditioning(backbone, 2, SIZE)
    assert backbone.text_encoders == [] and backbone.tokenizers == []
    assert cond.shared == {}
    assert set(cond.per_image) == {"encoder_hidden_states", "pooled_projections"}
    hidden, pooled_out = cond.per_image["encoder_hidden_states"], cond.per_image["pooled_projections"]
    assert hidden.shape == (2, 154, joint)
    assert pooled_out.shape == (2, sum(projections)) == (2, 16)
    assert torch.count_nonzero(hidden[:, 77:]) == 0
    assert torch.count_nonzero(hidden[:, :77, sum(clip_widths) :]) == 0
    assert torch.count_nonzero(hidden[:, :77, : sum(clip_widths)]) > 0
    torch.testing.assert_close(hidden[0, :77, : sum(clip_widths)], torch.cat(states, dim=-1)[0])
    torch.testing.assert_close(pooled_out[0], torch.cat(pooled, dim=-1)[0])
    assert torch.equal(hidden[0], hidden[1]) and torch.equal(pooled_out[0], pooled_out[1])
    _same_at_another_size(backbone, cond)


def test_flux_conditioning_has_zero_text_ids_guidance_and_512_t5_tokens(dit_paths, dit_root):
    backbone = _fresh(_path(dit_paths, dit_root, "flux"))
    assert backbone.denoiser.config.guidance_embeds is True
    t5_width = backbone.text_encoders[1].config.d_model
    clip_width = backbone.text_encoders[0].config.hidden_size
    cond = empty_prompt_conditioning(backbone, 2, SIZE)
    assert backbone.text_encoders == [] and backbone.tokenizers == []
    assert set(cond.per_image) == {"encoder_hidden_states", "pooled_projections", "guidance"}
    assert set(cond.shared) == {"txt_ids"}
    txt_ids = cond.shared["txt_ids"]
    assert txt_ids.shape == (512, 3) and torch.count_nonzero(txt_ids) == 0
    assert cond.per_image["encoder_hidden_states"].shape == (2, 512, t5_width)
    assert cond.per_image["pooled_projections"].shape == (2, clip_width)
    guidance = cond.per_image["guidance"]
    assert guidance.shape == (2,) and guidance.tolist() == [3.5, 3.5]
    assert set(cond.kwargs()) == {"encoder_hidden_states", "pooled_projections", "guidance", "txt_ids"}
    _same_at_another_size(backbone, cond)


def test_pixart_conditioning_masks_everything_but_the_eos(dit_paths, dit_root):
    backbone = _fresh(_path(dit_paths, dit_root, "pixart"))
    t5_width = backbone.text_encoders[0].config.d_model
    cond = empty_prompt_conditioning(backbone, 2, SIZE)
    assert backbone.text_encoders == [] and backbone.tokenizers == []
    assert set(cond.per_image) == {"encoder_hidden_states", "encoder_attention_mask"} and cond.shared == {}
    mask = cond.per_image["encoder_attention_mask"]
    assert mask.shape == (2, 300)
    assert mask.sum(dim=-1).tolist() == [1, 1]
    assert mask[:, 0].tolist() == [1, 1]  # the empty prompt is only its EOS, then padding
    assert cond.per_image["encoder_hidden_states"].shape == (2, 300, t5_width)
    _same_at_another_size(backbone, cond)


def _same_at_another_size(backbone, cond) -> None:
    """The text encoders are gone, yet another image size gets the same tensors (no re-encoding)."""
    again = empty_prompt_conditioning(backbone, 2, 256)
    assert set(again.per_image) == set(cond.per_image) and set(again.shared) == set(cond.shared)
    for name, tensor in cond.kwargs().items():
        assert torch.equal(again.kwargs()[name], tensor), name
    assert empty_prompt_conditioning(backbone, 3, 64).per_image["encoder_hidden_states"].shape[0] == 3


# ------------------------------------------------------------------------------------- recorder keeps output


def test_observing_recorder_leaves_the_output_unchanged_bit_for_bit(family, backbone):
    latents, conditioning = _inputs(backbone, batch=2)
    assert backbone.dtype == torch.float32
    timestep = TIMESTEP[family]
    plain = _run(backbone, latents, conditioning, timestep)
    layers = denoiser_layers(backbone, latents.shape[-1])
    accumulator = AttentionAccumulator(len(layers))
    originals = [layer.attention.processor for layer in layers]
    try:
        for layer, stock in zip(layers, originals, strict=True):
            layer.attention.set_processor(
                ObservingRecorder(stock, layer.image_qk, layer.side, accumulator, stop_when_done=False)
            )
        recorded = _run(backbone, latents, conditioning, timestep)
    finally:
        for layer, stock in zip(layers, originals, strict=True):
            layer.attention.set_processor(stock)
    assert accumulator.remaining == 0 and accumulator.counts == {SIZE // 16: len(layers)}
    assert [layer.attention.processor for layer in layers] == originals
    assert recorded.shape == plain.shape
    assert torch.equal(recorded, plain)


# ------------------------------------------------------------------------------------ independent attention


def _keep_attention_inputs(backbone, latents, conditioning, timestep):
    """Run the unmodified denoiser, keeping each layer's attention call inputs and its output."""
    seen: dict[str, dict[str, object]] = {}
    handles = []
    for layer in denoiser_layers(backbone, latents.shape[-1]):

        def pre_hook(_module, args, kwargs, name=layer.name):
            call = {
                "hidden_states": args[0] if args else kwargs["hidden_states"],
                "encoder_hidden_states": args[1] if len(args) > 1 else kwargs.get("encoder_hidden_states"),
                "image_rotary_emb": kwargs.get("image_rotary_emb"),
            }
            assert name not in seen, f"{name} called twice"
            seen[name] = {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in call.items()}

        handles.append(layer.attention.register_forward_pre_hook(pre_hook, with_kwargs=True))
    try:
        output = _run(backbone, latents, conditioning, timestep)
    finally:
        for handle in handles:
            handle.remove()
    return seen, output


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, heads * d) -> (B, L, heads, d)."""
    return x.unflatten(-1, (heads, -1))


def _naive_image_attention(family: str, attn, call, image_tokens: int) -> torch.Tensor:
    """The stock processor's full-sequence probabilities, image-query x image-key block renormalised, head mean.

    Written from the diffusers processors (JointAttnProcessor2_0, FluxAttnProcessor, AttnProcessor2_0), without
    zeroseg's readers: every token the processor attends over takes part in the softmax.
    """
    from diffusers.models.embeddings import apply_rotary_emb

    x, context, rotary = call["hidden_states"], call["encoder_hidden_states"], call["image_rotary_emb"]
    heads = attn.heads
    with torch.inference_mode():
        if family == "flux":
            q, k = _heads(attn.to_q(x), heads), _heads(attn.to_k(x), heads)  # (B, L, H, d)
            q, k = attn.norm_q(q), attn.norm_k(k)
            if context is not None:  # double block: text first
                cq = attn.norm_added_q(_heads(attn.add_q_proj(context), heads))
                ck = attn.norm_added_k(_heads(attn.add_k_proj(context), heads))
                q, k = torch.cat([cq, q], dim=1), torch.cat([ck, k], dim=1)
            # single block: hidden_states already hold [text, image]
            q = apply_rotary_emb(q, rotary, sequence_dim=1)
            k = apply_rotary_emb(k, rotary, sequence_dim=1)
            q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, H, L, d)
            image = slice(q.shape[2] - image_tokens, q.shape[2])
        else:
            q, k = _heads(attn.to_q(x), heads).transpose(1, 2), _heads(attn.to_k(x), heads).transpose(1, 2)
            if attn.norm_q is not None:
                q, k = attn.norm_q(q), attn.norm_k(k)
            if context is not None:  # SD3 joint attention: image first, then text
                assert family == "sd3"
                cq = _heads(attn.add_q_proj(context), heads).transpose(1, 2)
                ck = _heads(attn.add_k_proj(context), heads).transpose(1, 2)
                if attn.norm_added_q is not None:
                    cq, ck = attn.norm_added_q(cq), attn.norm_added_k(ck)
                q, k = torch.cat([q, cq], dim=2), torch.cat([k, ck], dim=2)
            image = slice(0, image_tokens)
            assert x.shape[1] == image_tokens
        d = q.shape[-1]
        probs = torch.softmax((q.double() @ k.double().transpose(-1, -2)) / d**0.5, dim=-1)
        block = probs[:, :, image, image]
        block = block / block.sum(dim=-1, keepdim=True)
        return block.mean(dim=1).float()


def _layer_sets(family: str) -> list[list[int]]:
    return [[0], [1, 3], [0, 1, 2, 3], [2]]


def test_recorded_attention_equals_an_independent_recomputation(family, backbone):
    latents, conditioning = _inputs(backbone, batch=2, seed=1)
    timestep = TIMESTEP[family]
    inputs, _ = _keep_attention_inputs(backbone, latents, conditioning, timestep)
    layers = denoiser_layers(backbone, latents.shape[-1])
    assert set(inputs) == {layer.name for layer in layers}
    side = SIZE // 16
    tokens = side * side
    naive = {}
    for index, layer in enumerate(layers):
        call = inputs[layer.name]
        if family == "flux":
            text = 512
            expected_len = tokens if index < 2 else text + tokens
            assert call["hidden_states"].shape[1] == expected_len
            assert call["image_rotary_emb"][0].shape[0] == text + tokens
            assert (call["encoder_hidden_states"] is not None) == (index < 2)
        elif family == "sd3":
            assert (call["encoder_hidden_states"] is not None) == (index >= 2)  # attn2 of blocks 0-1: image only
        else:
            assert call["encoder_hidden_states"] is None
        naive[index] = _naive_image_attention(family, layer.attention, call, tokens)
    for chosen in _layer_sets(family):
        expected = torch.stack([naive[i] for i in chosen]).mean(dim=0)
        maps = capture_self_attention(backbone, latents, timestep, conditioning, layers=chosen)
        assert set(maps) == {side}
        got = maps[side]
        assert got.dtype == torch.float32 and got.shape == (2, tokens, tokens)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
        assert (got >= 0).all()
        torch.testing.assert_close(got.sum(dim=-1), torch.ones(2, tokens), atol=1e-5, rtol=0)
    # Two different images give two different maps (the batch is not collapsed).
    assert not torch.allclose(naive[0][0], naive[0][1])


def test_the_text_tokens_change_the_joint_attention_probabilities(dit_paths, dit_root, loaded):
    """Guard for the renormalisation: in a joint attention the image block alone does not sum to one."""
    backbone = loaded("flux")
    latents, conditioning = _inputs(backbone, batch=1)
    inputs, _ = _keep_attention_inputs(backbone, latents, conditioning, TIMESTEP["flux"])
    layer = denoiser_layers(backbone, latents.shape[-1])[0]
    attn, call = layer.attention, inputs[layer.name]
    from diffusers.models.embeddings import apply_rotary_emb

    with torch.inference_mode():
        x, context = call["hidden_states"], call["encoder_hidden_states"]
        q = torch.cat([attn.norm_added_q(_heads(attn.add_q_proj(context), 2)), attn.norm_q(_heads(attn.to_q(x), 2))], 1)
        k = torch.cat([attn.norm_added_k(_heads(attn.add_k_proj(context), 2)), attn.norm_k(_heads(attn.to_k(x), 2))], 1)
        q = apply_rotary_emb(q, call["image_rotary_emb"], sequence_dim=1).transpose(1, 2)
        k = apply_rotary_emb(k, call["image_rotary_emb"], sequence_dim=1).transpose(1, 2)
        probs = torch.softmax(q @ k.transpose(-1, -2) * attn.head_dim**-0.5, dim=-1)
    image_mass = probs[:, :, -64:, -64:].sum(-1)
    assert (image_mass < 1 - 1e-3).all()  # the text keys take part of every row's mass


# ------------------------------------------------------------------------------------ early exit and features


def _last_modules(family: str, denoiser) -> list[torch.nn.Module]:
    last_block = denoiser.single_transformer_blocks[-1] if family == "flux" else denoiser.transformer_blocks[-1]
    return [last_block, denoiser.norm_out, denoiser.proj_out]


def _count_calls(modules):
    fired = [0]
    handles = [m.register_forward_hook(lambda *_: fired.__setitem__(0, fired[0] + 1)) for m in modules]
    return fired, handles


def test_early_exit_stops_after_the_recorded_layer_with_the_same_maps(family, backbone):
    latents, conditioning = _inputs(backbone, batch=2)
    timestep = TIMESTEP[family]
    fired, handles = _count_calls(_last_modules(family, backbone.denoiser))
    try:
        early = capture_self_attention(backbone, latents, timestep, conditioning, layers=[0])
        assert fired[0] == 0
        full = capture_self_attention(backbone, latents, timestep, conditioning, layers=[0], early_exit=False)
        assert fired[0] == 3
    finally:
        for handle in handles:
            handle.remove()
    assert set(early) == set(full) == {SIZE // 16}
    assert torch.equal(early[SIZE // 16], full[SIZE // 16])
    # No recorder is left installed.
    for layer in denoiser_layers(backbone, latents.shape[-1]):
        assert not isinstance(layer.attention.processor, ObservingRecorder)


def test_features_match_the_module_they_are_read_from(family, backbone):
    latents, conditioning = _inputs(backbone, batch=2, seed=2)
    timestep = TIMESTEP[family]
    layers = denoiser_layers(backbone, latents.shape[-1])
    side = SIZE // 16
    tokens = side * side
    seen: dict[int, torch.Tensor] = {}
    handles = []
    for index, layer in enumerate(layers):
        if layer.features_from_input:

            def pre(_m, args, index=index):
                seen[index] = args[0].detach().clone()

            handles.append(layer.features.register_forward_pre_hook(pre))
        else:

            def post(_m, _args, output, index=index):
                seen[index] = output.detach().clone()

            handles.append(layer.features.register_forward_hook(post))
    try:
        _run(backbone, latents, conditioning, timestep)
    finally:
        for handle in handles:
            handle.remove()
    assert set(seen) == set(range(len(layers)))
    fired, hooks = _count_calls(_last_modules(family, backbone.denoiser))
    try:
        for index, layer in enumerate(layers):
            if family == "flux":
                doubles = len(backbone.denoiser.transformer_blocks)
                assert layer.features_from_input == (index < doubles)
                if index >= doubles:  # single block: [text, image] attention output, no projection
                    assert seen[index].shape[1] == 512 + tokens
                else:
                    assert seen[index].shape[1] == tokens
            else:
                assert layer.features_from_input and seen[index].shape[1] == tokens
            before = fired[0]
            early = capture_features(backbone, latents, timestep, conditioning, layer=index)
            assert fired[0] == before  # stopped inside the layer: the last block never finished
            full = capture_features(backbone, latents, timestep, conditioning, layer=index, early_exit=False)
            assert fired[0] == before + 3
            assert early.shape == (2, WIDTH[family], side, side)
            assert early.dtype == backbone.dtype
            assert torch.equal(early, full)
            image = seen[index][:, -tokens:]
            expected = image.permute(0, 2, 1).reshape(2, -1, side, side)
            assert torch.equal(early, expected)
            assert torch.equal(early[:, :, 1, 2], image[:, 1 * side + 2])  # row-major token order
    finally:
        for handle in hooks:
            handle.remove()
    default = capture_features(backbone, latents, timestep, conditioning)
    (index,) = backbone.adapter.default_layers(backbone.denoiser, "diffcut")
    assert torch.equal(default, capture_features(backbone, latents, timestep, conditioning, layer=index))


def test_layer_index_out_of_range_is_refused(backbone):
    latents, conditioning = _inputs(backbone, batch=1)
    with pytest.raises(ValueError, match="out of range"):
        capture_self_attention(backbone, latents, 300, conditioning, layers=[4])
    with pytest.raises(ValueError, match="out of range"):
        capture_features(backbone, latents, 300, conditioning, layer=99)


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("method", ["diffseg", "diffcut"])
def test_public_pipeline_segments_with_each_dit_family(family, dit_path, method):
    from zeroseg import build_pipeline

    settings = {"pamr_iters": 2} if method == "diffcut" else {}
    pipeline = build_pipeline(method, model=str(dit_path), image_size=128, **settings)
    image = torch.rand(3, 96, 80, generator=torch.Generator().manual_seed(0))
    (result,) = pipeline([image])
    labels = np.asarray(result.labels)
    assert labels.shape == (96, 80)
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.min() >= 0 and len(np.unique(labels)) >= 1


@pytest.mark.parametrize(
    ("family_name", "method_args"),
    [("flux", ["--method", "diffseg"]), ("pixart", ["--method", "diffcut", "--pamr-iters", "2"])],
)
def test_cli_segments_with_a_tiny_dit_folder(dit_paths, dit_root, tmp_path, family_name, method_args):
    from typer.testing import CliRunner

    from zeroseg.cli.app import app

    folder = _path(dit_paths, dit_root, family_name)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "a.png"), "--model", str(folder), "--size", "128", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, *method_args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    label_map = Image.open(out / "a.png")
    assert label_map.mode == "P" and label_map.size == (64, 48)


# ------------------------------------------------------------------------------------------------ load errors


def test_unknown_transformer_class_names_the_model(dit_paths, dit_root, tmp_path):
    folder = tmp_path / "mystery"
    shutil.copytree(_path(dit_paths, dit_root, "sd3"), folder)
    config_path = folder / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["_class_name"] = "MysteryTransformer2DModel"
    config_path.write_text(json.dumps(config))
    with pytest.raises(WeightsNotFoundError) as info:
        load_backbone(str(folder))
    message = str(info.value)
    assert str(folder) in message and "not a model family zeroseg knows" in message and "\n" not in message


def _transformer_file(backbone, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in backbone.denoiser.state_dict().items()}, str(path))
    return path


def test_transformer_file_without_config_asks_for_model_config(family, backbone, tmp_path):
    path = _transformer_file(backbone, tmp_path / f"{family}-transformer.safetensors")
    with pytest.raises(WeightsNotFoundError) as info:
        load_backbone(str(path))
    message = str(info.value)
    assert str(path) in message and "--model-config" in message and "\n" not in message


def test_sd3_transformer_file_without_config_says_it_is_an_sd3_transformer(loaded, tmp_path):
    path = _transformer_file(loaded("sd3"), tmp_path / "sd3-transformer.safetensors")
    with pytest.raises(WeightsNotFoundError, match="a sd3 transformer checkpoint"):
        load_backbone(str(path))


def test_sd3_transformer_file_with_config_loads_the_same_transformer(loaded, dit_paths, dit_root, tmp_path):
    backbone = loaded("sd3")
    path = _transformer_file(backbone, tmp_path / "sd3-transformer.safetensors")
    from_file = load_backbone(str(path), config=str(_path(dit_paths, dit_root, "sd3")))
    assert from_file.family == "sd3" and from_file.model == str(path)
    reference = backbone.denoiser.state_dict()
    for name, tensor in from_file.denoiser.state_dict().items():
        assert torch.equal(tensor, reference[name]), name


@pytest.mark.parametrize("family_name", ["flux", "pixart"])
def test_flux_and_pixart_transformer_files_with_config_load(loaded, dit_paths, dit_root, tmp_path, family_name):
    path = _transformer_file(loaded(family_name), tmp_path / f"{family_name}-transformer.safetensors")
    try:
        from_file = load_backbone(str(path), config=str(_path(dit_paths, dit_root, family_name)))
    except WeightsNotFoundError:
        raise
    except Exception as exc:  # anything else is not a clear error either
        pytest.fail(f"{type(exc).__name__}: {exc}")
    assert from_file.family == family_name
