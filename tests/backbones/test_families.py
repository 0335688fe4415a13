"""The family registry: explicit detection, per-family latent divisors and tiny models, the conditioning cache."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from zeroseg.backbones import empty_prompt_conditioning, family_names, get_family, load_backbone, register_family
from zeroseg.backbones.families import Conditioning, detect_folder_family
from zeroseg.errors import ConfigError, WeightsNotFoundError
from zeroseg.testing import make_tiny_model
from zeroseg.validation import CONFIG_TIME_LATENT_DIVISOR, check_capture_settings


def test_registry_holds_the_unet_and_dit_families_and_refuses_unknown_or_duplicate_names():
    assert family_names() == ("sd", "sdxl", "sd3", "flux", "pixart")
    assert get_family("sdxl").name == "sdxl"
    with pytest.raises(ConfigError, match="`family` must be one of sd, sdxl, sd3, flux, pixart"):
        get_family("dit")
    with pytest.raises(ValueError, match="already registered"):
        register_family(get_family("sd"))


def test_each_tiny_folder_is_recognised_by_exactly_its_family(tiny_sd_path, tiny_sdxl_path):
    assert detect_folder_family(tiny_sd_path, model="a").name == "sd"
    assert detect_folder_family(tiny_sdxl_path, model="b").name == "sdxl"


def test_folder_without_model_index_is_detected_from_its_subfolders(tiny_sdxl_path, tmp_path):
    folder = tmp_path / "no-index"
    shutil.copytree(tiny_sdxl_path, folder)
    (folder / "model_index.json").unlink()
    assert detect_folder_family(folder, model="m").name == "sdxl"


def test_unknown_family_is_one_line_naming_the_model(tiny_sd_path, tmp_path):
    folder = tmp_path / "refiner-like"
    shutil.copytree(tiny_sd_path, folder)
    config_path = folder / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config["addition_embed_type"] = "text_time"  # SDXL-style UNet but a single text encoder: no family fits
    config_path.write_text(json.dumps(config))
    with pytest.raises(WeightsNotFoundError) as info:
        load_backbone(str(folder))
    message = str(info.value)
    assert str(folder) in message and "not a model family zeroseg knows" in message and "\n" not in message


def test_latent_divisor_is_vae_scale_times_unet_downsampling(sd_backbone, sdxl_backbone):
    assert sd_backbone.latent_divisor == 8 * 2**3 == get_family("sd").default_latent_divisor
    assert sdxl_backbone.latent_divisor == 8 * 2**2 == get_family("sdxl").default_latent_divisor


def test_config_time_divisor_refuses_no_size_a_family_accepts():
    defaults = [get_family(name).default_latent_divisor for name in family_names()]
    assert math.gcd(*defaults) == CONFIG_TIME_LATENT_DIVISOR
    with pytest.raises(ConfigError, match="multiple of 16"):
        check_capture_settings(100, 50)
    check_capture_settings(None, None)  # the model's defaults, checked once it is loaded


def test_loaded_backbone_checks_its_own_divisor(sd_backbone, sdxl_backbone):
    sdxl_backbone.check_image_size(96)
    with pytest.raises(ConfigError, match="multiple of 64") as info:
        sd_backbone.check_image_size(96)
    assert sd_backbone.model in str(info.value)


def test_tiny_models_come_from_the_registry(tmp_path):
    for name in family_names():
        folder = make_tiny_model(tmp_path / name, name)
        assert detect_folder_family(folder, model=name).name == name
    with pytest.raises(ConfigError, match="`family`"):
        make_tiny_model(tmp_path / "x", "dit")


def test_conditioning_is_cached_by_the_backbone_and_can_be_overridden(tiny_sd_path):
    backbone = load_backbone(str(tiny_sd_path))
    first = empty_prompt_conditioning(backbone, 2, 64).per_image["encoder_hidden_states"]
    again = empty_prompt_conditioning(backbone, 1, 64).per_image["encoder_hidden_states"]
    assert again.data_ptr() == first.data_ptr()
    replacement = torch.ones(1, 77, 32)
    backbone.override_conditioning(64, Conditioning({"encoder_hidden_states": replacement}))
    conditioning = empty_prompt_conditioning(backbone, 3, 64)
    hidden = conditioning.per_image["encoder_hidden_states"]
    assert list(conditioning.per_image) == ["encoder_hidden_states"]
    assert hidden.shape == (3, 77, 32) and torch.equal(hidden[2], replacement[0])
