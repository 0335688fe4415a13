"""Stable Diffusion 1.x and 2.x: one CLIP text encoder, the last hidden state of the prompt as conditioning."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from zeroseg.backbones.families.base import Conditioning, Default
from zeroseg.backbones.families.unet import UNetFamily, is_unet_config
from zeroseg.backbones.tiny_parts import tiny_clip_text_config, write_clip_tokenizer

if TYPE_CHECKING:
    from zeroseg.backbones.backbone import Backbone


def has_component(model_index: dict[str, Any], name: str) -> bool:
    """Whether ``model_index.json`` lists ``name`` as a component (``[null, null]`` entries do not count)."""
    entry = model_index.get(name)
    return isinstance(entry, (list, tuple)) and any(part is not None for part in entry)


def tokenize(tokenizer: Any, prompt: str, device: torch.device) -> torch.Tensor:
    """Token ids of ``prompt`` padded to the tokenizer's maximum length (77 for CLIP)."""
    return tokenizer(
        prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)


class StableDiffusion(UNetFamily):
    """SD 1.x / 2.x (and their distillations such as SD-Turbo): UNet, VAE, one text encoder."""

    name = "sd"
    title = "Stable Diffusion 1.x / 2.x (UNet, one CLIP text encoder)"
    components = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    default_latent_divisor = 64  # VAE 8 x three downsamplers
    pipeline_class = "StableDiffusionPipeline"
    tiny_unet: ClassVar[dict[str, Any]] = {
        # SD 1.x topology (3 cross-attention down blocks + 1 plain, mirrored up, 2 layers per block): the real 16
        # self-attention layers, split 5/5/5/1 over four grid sides; every width tiny.
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
    }
    tiny_vae_scaling_factor = 0.18215
    defaults: ClassVar[dict[str, dict[str, Default]]] = {
        "diffseg": {
            "image_size": Default(512, "DiffSeg official code (SD 1.4)"),
            "timestep": Default(300, "DiffSeg official notebooks (SD 1.4)"),
        },
        "diffcut": {
            "image_size": Default(1024, "DiffCut official code"),
            "timestep": Default(50, "DiffCut official code"),
            "tau": Default(0.2, "DiffCut maintainer for the paper's SD 1.4 ablation (PaulCouairon/DiffCut issue 5)"),
        },
    }
    tiny_pipeline_index: ClassVar[dict[str, Any]] = {
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }

    def recognises(self, model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
        """A UNet without added conditioning, and a text encoder but no second one."""
        return (
            is_unet_config(denoiser_config)
            and denoiser_config.get("addition_embed_type") is None
            and has_component(model_index, "text_encoder")
            and not has_component(model_index, "text_encoder_2")
        )

    def load_text_encoders(
        self, folder: Path, *, dtype: torch.dtype, variants: dict[str, str | None]
    ) -> tuple[list[Any], list[Any]]:
        """``tokenizer/`` and ``text_encoder/`` (a ``CLIPTextModel``)."""
        from transformers import CLIPTextModel, CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer", local_files_only=True)
        encoder = CLIPTextModel.from_pretrained(
            str(folder),
            subfolder="text_encoder",
            dtype=dtype,
            variant=variants.get("text_encoder"),
            local_files_only=True,
        )
        return [tokenizer], [encoder]

    def encode_prompt(self, backbone: Backbone, prompt: str, image_size: int) -> Conditioning:
        """The text encoder's last hidden state of the prompt padded to 77 tokens; no added conditioning."""
        ids = tokenize(backbone.tokenizers[0], prompt, backbone.device)
        return Conditioning({"encoder_hidden_states": backbone.text_encoders[0](ids)[0].to(backbone.dtype)})

    def write_tiny_text_encoders(self, root: Path) -> dict[str, list[str]]:
        """One tiny CLIP text encoder and its tokenizer."""
        from transformers import CLIPTextModel

        vocab = write_clip_tokenizer(root / "tokenizer")
        CLIPTextModel(tiny_clip_text_config(vocab)).save_pretrained(root / "text_encoder")
        return {"text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"]}
