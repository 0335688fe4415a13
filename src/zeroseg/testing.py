"""Tiny random-weight models for tests, demos without downloads, and speed measurements.

``make_tiny_model`` writes a complete diffusers model folder (UNet, VAE, text encoder(s), tokenizer(s) with a
locally written vocabulary, scheduler) that ``load_backbone`` and ``zeroseg segment --model`` accept, fully
offline. ``real_architecture_unet`` builds a randomly initialised UNet with a released model's architecture:
speed does not depend on the weight values, so benchmarks use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

FAMILIES = ("sd", "sdxl")

# The UNet configurations of released models (from their published config.json), for random-weight benchmarks.
UNET_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "sd14": {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    },
    "sdxl": {
        "sample_size": 128,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [320, 640, 1280],
        "layers_per_block": 2,
        "transformer_layers_per_block": [1, 2, 10],
        "attention_head_dim": [5, 10, 20],
        "cross_attention_dim": 2048,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
        "norm_num_groups": 32,
    },
}

_TINY_UNETS: dict[str, dict[str, Any]] = {
    # SD 1.x topology (3 cross-attention down blocks + 1 plain, mirrored up, 2 layers per block): the real 16
    # self-attention layers, split 5/5/5/1 over four grid sides; every width tiny.
    "sd": {
        "sample_size": 16,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [8, 8, 16, 16],
        "layers_per_block": 2,
        "cross_attention_dim": 8,
        "attention_head_dim": 2,
        "norm_num_groups": 4,
    },
    # SDXL topology: no attention in the first block, several transformer layers deeper, added time ids.
    "sdxl": {
        "sample_size": 16,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [8, 16, 16],
        "layers_per_block": 2,
        "transformer_layers_per_block": [1, 1, 2],
        "attention_head_dim": [2, 2, 4],
        "cross_attention_dim": 16,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 4,
        "projection_class_embeddings_input_dim": 8 + 6 * 4,
        "norm_num_groups": 4,
    },
}

_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def make_tiny_model(path: str | Path, family: str = "sd", *, seed: int = 0) -> Path:
    """Write a tiny random-weight model folder in diffusers layout and return its path.

    Args:
        path: folder to create (its parents are created; existing files are overwritten).
        family: ``"sd"`` (SD 1.x topology, one text encoder) or ``"sdxl"`` (SDXL topology, two text encoders).
        seed: seed of the random weights; the same seed writes the same model.

    The folder loads with ``zeroseg.load_backbone(path)`` and with diffusers' own pipelines, needs no network,
    and segments a 64-256 px image in about a second on a CPU. Its segmentations are meaningless (random
    weights); it exists for tests and for trying the command line without a download.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if family not in FAMILIES:
        from zeroseg.errors import ConfigError

        raise ConfigError(f"`family` must be one of {', '.join(FAMILIES)} (got {family!r})")
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    UNet2DConditionModel(**_TINY_UNETS[family]).save_pretrained(root / "unet")
    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 8, 8],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.18215 if family == "sd" else 0.13025,
    ).save_pretrained(root / "vae")
    DDIMScheduler(**_SCHEDULER).save_pretrained(root / "scheduler")
    vocab = _write_tokenizer(root / "tokenizer")
    text_config = {
        "vocab_size": len(vocab),
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
        "pad_token_id": vocab["<|endoftext|>"],
        "projection_dim": 8,
    }
    CLIPTextModel(CLIPTextConfig(**text_config)).save_pretrained(root / "text_encoder")
    components: dict[str, list[str]] = {
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
    }
    if family == "sdxl":
        _write_tokenizer(root / "tokenizer_2")
        CLIPTextModelWithProjection(CLIPTextConfig(**text_config)).save_pretrained(root / "text_encoder_2")
        components |= {
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
        }
        index = {"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": True}
    else:
        index = {
            "_class_name": "StableDiffusionPipeline",
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
        }
    index |= {"_diffusers_version": _diffusers_version(), **components}
    (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return root


def real_architecture_unet(name: str, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
    """A randomly initialised ``UNet2DConditionModel`` with a released model's architecture (``sd14``, ``sdxl``)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**UNET_ARCHITECTURES[name]).eval().requires_grad_(False)
    return unet if dtype == torch.float32 else unet.to(dtype)


def _write_tokenizer(folder: Path) -> dict[str, int]:
    """A byte-level CLIP BPE vocabulary with no merges: every byte is a token (written locally, no download)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_characters()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}, indent=2)
    )
    return vocab


def _byte_characters() -> list[str]:
    """The 256 printable stand-ins for bytes used by GPT-2/CLIP byte-level BPE (Radford et al.)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__
