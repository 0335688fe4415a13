"""Loading models by path, the missing-weights message, latents, noise and empty-prompt conditioning."""

from __future__ import annotations

import shutil

import pytest
import torch

from zeroseg.backbones import add_noise, empty_prompt_conditioning, encode_images, load_backbone, resolve_device
from zeroseg.backbones.presets import resolve_model
from zeroseg.errors import ConfigError, WeightsNotFoundError


def test_loads_both_families_from_local_folders(sd_backbone, sdxl_backbone):
    assert sd_backbone.family == "sd" and len(sd_backbone.text_encoders) == 1
    assert sdxl_backbone.family == "sdxl" and len(sdxl_backbone.text_encoders) == 2
    for backbone in (sd_backbone, sdxl_backbone):
        assert backbone.vae.dtype == torch.float32
        assert backbone.denoiser.dtype == torch.float32  # CPU default
        assert backbone.vae_scale_factor == 8
        assert not any(p.requires_grad for p in backbone.denoiser.parameters())


def test_missing_local_path_is_one_clear_line(tmp_path):
    with pytest.raises(WeightsNotFoundError) as info:
        load_backbone(str(tmp_path / "nowhere"))
    message = str(info.value)
    assert "nowhere" in message and "no such file or folder" in message and "\n" not in message


def test_incomplete_folder_names_what_is_missing(tiny_sd_path, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd_path, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(WeightsNotFoundError, match="not a complete diffusers model") as info:
        load_backbone(str(broken))
    assert "\n" not in str(info.value)


def test_hub_id_without_network_says_how_to_pass_a_local_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        load_backbone("ssd1b")
    message = str(info.value)
    assert "segmind/SSD-1B" in message and "--model /path/to/model" in message and "\n" not in message


def test_short_names_resolve_and_others_pass_through():
    assert resolve_model("sd14") == "CompVis/stable-diffusion-v1-4"
    assert resolve_model("SSD1B") == "segmind/SSD-1B"
    assert resolve_model("someone/model") == "someone/model"


def test_device_checks():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match="`device`"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_latents_are_the_scaled_posterior_mean(sd_backbone):
    images = torch.rand(2, 3, 64, 64)
    latents = encode_images(sd_backbone, images)
    with torch.inference_mode():
        mean = sd_backbone.vae.encode(images * 2 - 1).latent_dist.mean
    torch.testing.assert_close(latents, mean * 0.18215)
    assert latents.shape == (2, 4, 8, 8)


def test_noise_is_seeded_shared_across_the_batch_and_follows_ddpm(sd_backbone):
    from diffusers import DDPMScheduler

    latents = torch.randn(1, 4, 8, 8).expand(3, -1, -1, -1).clone()
    noisy = add_noise(sd_backbone, latents, 50, seed=42)
    assert torch.equal(noisy[0], noisy[1]) and torch.equal(noisy[0], noisy[2])
    assert torch.equal(noisy, add_noise(sd_backbone, latents, 50, seed=42))
    assert not torch.equal(noisy, add_noise(sd_backbone, latents, 50, seed=7))
    scheduler = DDPMScheduler.from_pretrained(sd_backbone.model, subfolder="scheduler")
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(42)).expand_as(latents)
    expected = scheduler.add_noise(latents, noise, torch.tensor([50]))
    torch.testing.assert_close(noisy, expected, atol=1e-6, rtol=1e-5)
    assert torch.equal(add_noise(sd_backbone, latents, 300, seed=None), latents)
    with pytest.raises(ConfigError, match="timestep"):
        add_noise(sd_backbone, latents, 1000, seed=0)


def test_sd_conditioning_is_the_empty_prompt_last_hidden_state(sd_backbone):
    conditioning = empty_prompt_conditioning(sd_backbone, 2, 128)
    assert list(conditioning.per_image) == ["encoder_hidden_states"] and not conditioning.shared
    hidden = conditioning.per_image["encoder_hidden_states"]
    assert hidden.shape == (2, 77, 8)
    tokenizer, encoder = sd_backbone.tokenizers[0], sd_backbone.text_encoders[0]
    ids = tokenizer("", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids[0, 0].item() == tokenizer.bos_token_id and ids[0, 1].item() == tokenizer.eos_token_id
    with torch.inference_mode():
        expected = encoder(ids)[0]
    torch.testing.assert_close(hidden[1], expected[0])


def test_sdxl_conditioning_has_both_encoders_pooled_embeds_and_time_ids(sdxl_backbone):
    added = dict(empty_prompt_conditioning(sdxl_backbone, 3, 256).per_image)
    hidden = added.pop("encoder_hidden_states")
    assert hidden.shape == (3, 77, 16)
    assert added["text_embeds"].shape == (3, 8)
    assert added["time_ids"].tolist() == [[256, 256, 0, 0, 256, 256]] * 3
    again = empty_prompt_conditioning(sdxl_backbone, 1, 256).per_image["encoder_hidden_states"]
    assert again.data_ptr() == hidden.data_ptr()  # computed once per model and size, then expanded
