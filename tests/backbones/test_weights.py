"""Which weight variant is loaded and which files are downloaded, from file lists and real tiny folders."""

from __future__ import annotations

import shutil

import pytest
import torch

from zeroseg.backbones import load_backbone
from zeroseg.backbones.weights import choose_variants, needed_files, weight_file
from zeroseg.errors import WeightsNotFoundError

# The layout of an SDXL-family hub repository with full and fp16 weights in two formats plus other exports.
SDXL_REPO = [
    "model_index.json",
    "README.md",
    "SSD-1B.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.bin",
    "unet/diffusion_pytorch_model.fp16.bin",
    "unet/diffusion_flax_model.msgpack",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.fp16.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder/model.fp16.safetensors",
    "text_encoder_2/config.json",
    "text_encoder_2/model.bin",  # no fp16 variant here
    "text_encoder_2/model.onnx",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "tokenizer_2/vocab.json",
    "scheduler/scheduler_config.json",
    "safety_checker/model.safetensors",
]
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")


def _choose(dtype, variant=None, files=SDXL_REPO):
    return choose_variants(files, COMPONENTS, dtype=dtype, variant=variant, model="m")


def test_weight_file_names_are_parsed():
    assert weight_file("diffusion_pytorch_model.fp16.safetensors") == (".safetensors", "fp16")
    assert weight_file("model-00001-of-00002.safetensors") == (".safetensors", None)
    assert weight_file("model.fp16-00001-of-00002.safetensors") == (".safetensors", "fp16")
    assert weight_file("model.safetensors.index.fp16.json") == (".safetensors", "fp16")
    assert weight_file("config.json") is None and weight_file("diffusion_flax_model.msgpack") is None


def test_float16_asks_for_fp16_where_a_component_has_it_and_falls_back_to_full_weights():
    assert _choose(torch.float16) == {"unet": "fp16", "vae": "fp16", "text_encoder": "fp16", "text_encoder_2": None}


def test_float32_and_bfloat16_keep_the_full_weights():
    expected = {"unet": None, "vae": None, "text_encoder": None, "text_encoder_2": None}
    assert _choose(torch.float32) == expected and _choose(torch.bfloat16) == expected


def test_an_explicit_variant_wins_and_must_exist():
    only_variant = [f for f in SDXL_REPO if not f.startswith("text_encoder_2/")]
    assert _choose(torch.float32, "fp16", only_variant)["unet"] == "fp16"
    with pytest.raises(WeightsNotFoundError, match="'fp16' has no text_encoder_2 weights"):
        _choose(torch.float32, "fp16")


def test_a_component_with_only_variant_weights_uses_them():
    files = ["unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors"]
    assert choose_variants(files, ("unet",), dtype=torch.float32, variant=None, model="m") == {"unet": "fp16"}


def test_download_is_one_safetensors_set_per_component_and_nothing_else():
    files = needed_files(SDXL_REPO, COMPONENTS, _choose(torch.float16))
    assert sorted(files) == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "text_encoder_2/config.json",
        "text_encoder_2/model.bin",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "tokenizer_2/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]
    full = needed_files(SDXL_REPO, COMPONENTS, _choose(torch.float32))
    assert "unet/diffusion_pytorch_model.safetensors" in full and not any(".fp16." in f for f in full)


@pytest.fixture(scope="module")
def fp16_folder(tiny_sd_path, tmp_path_factory):
    """The tiny SD model with an ``fp16`` variant saved next to the full weights of every weighted component."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = tmp_path_factory.mktemp("variants") / "tiny-sd-fp16"
    shutil.copytree(tiny_sd_path, folder)
    for name, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("text_encoder", CLIPTextModel)):
        model = cls.from_pretrained(folder / name)
        model.to(torch.float16).save_pretrained(folder / name, variant="fp16")
    return folder


def test_local_folder_loads_the_fp16_variant_only_for_float16(fp16_folder, tiny_sd_path):
    half = load_backbone(str(fp16_folder), dtype="float16")
    assert half.variants == {"unet": "fp16", "vae": "fp16", "text_encoder": "fp16"}
    assert half.identity()["variants"] == half.variants
    full = load_backbone(str(fp16_folder), dtype="float32")
    assert full.variants == {"unet": None, "vae": None, "text_encoder": None}
    assert "variants" not in full.identity()
    reference = load_backbone(str(tiny_sd_path))
    for name, tensor in reference.denoiser.state_dict().items():
        assert torch.equal(full.denoiser.state_dict()[name], tensor)
        assert torch.equal(half.denoiser.state_dict()[name], tensor.to(torch.float16))


def test_folder_without_the_variant_falls_back_to_full_weights(tiny_sd_path):
    backbone = load_backbone(str(tiny_sd_path), dtype="float16")
    assert backbone.variants == {"unet": None, "vae": None, "text_encoder": None}


def test_explicit_variant_is_used_even_in_float32(fp16_folder):
    backbone = load_backbone(str(fp16_folder), dtype="float32", variant="fp16")
    assert backbone.variants["unet"] == "fp16" and backbone.denoiser.dtype == torch.float32


def test_cuda_default_precision_picks_the_fp16_variant_and_cpu_the_full_weights():
    from zeroseg.backbones.loading import resolve_dtype

    assert _choose(resolve_dtype("auto", torch.device("cuda")))["unet"] == "fp16"
    assert _choose(resolve_dtype("auto", torch.device("cpu")))["unet"] is None
