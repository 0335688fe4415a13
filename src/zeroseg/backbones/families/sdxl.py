"""The SDXL family (SDXL, SSD-1B, Segmind-Vega, SDXL-Turbo): two text encoders and added size conditioning."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from zeroseg.backbones.families.base import Conditioning, Default
from zeroseg.backbones.families.sd import StableDiffusion, has_component, tokenize
from zeroseg.backbones.families.unet import UNetFamily, is_unet_config
from zeroseg.backbones.tiny_parts import tiny_clip_text_config, write_clip_tokenizer

if TYPE_CHECKING:
    from zeroseg.backbones.backbone import Backbone


class StableDiffusionXL(UNetFamily):
    """SDXL-shaped models: UNet with ``text_time`` added conditioning, VAE, two CLIP text encoders."""

    name = "sdxl"
    title = "SDXL, SSD-1B, Segmind-Vega, SDXL-Turbo (UNet, two CLIP text encoders)"
    components = ("unet", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")
    default_latent_divisor = 32  # VAE 8 x two downsamplers
    pipeline_class = "StableDiffusionXLPipeline"
    tiny_unet: ClassVar[dict[str, Any]] = {
        # SDXL topology: no attention in the first block, several transformer layers deeper, added time ids.
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
    }
    tiny_vae_scaling_factor = 0.13025
    defaults: ClassVar[dict[str, dict[str, Default]]] = {
        "diffseg": {
            "image_size": Default(512, "DiffSeg official code"),
            "timestep": Default(300, "DiffSeg official notebooks"),
        },
        "diffcut": {
            "image_size": Default(1024, "DiffCut official code (SSD-1B)"),
            "timestep": Default(50, "DiffCut official code (SSD-1B)"),
            "tau": Default(0.5, "DiffCut paper, every dataset (SSD-1B)"),
        },
    }
    tiny_pipeline_index: ClassVar[dict[str, Any]] = {"force_zeros_for_empty_prompt": True}

    def recognises(self, model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
        """A UNet with ``text_time`` added conditioning, and both text encoders."""
        return (
            is_unet_config(denoiser_config)
            and denoiser_config.get("addition_embed_type") == "text_time"
            and has_component(model_index, "text_encoder")
            and has_component(model_index, "text_encoder_2")
        )

    def load_text_encoders(
        self, folder: Path, *, dtype: torch.dtype, variants: dict[str, str | None]
    ) -> tuple[list[Any], list[Any]]:
        """SD's tokenizer and text encoder, then ``tokenizer_2/`` and ``text_encoder_2/`` (with projection)."""
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        tokenizers, encoders = StableDiffusion().load_text_encoders(folder, dtype=dtype, variants=variants)
        tokenizers.append(CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer_2", local_files_only=True))
        encoders.append(
            CLIPTextModelWithProjection.from_pretrained(
                str(folder),
                subfolder="text_encoder_2",
                dtype=dtype,
                variant=variants.get("text_encoder_2"),
                local_files_only=True,
            )
        )
        return tokenizers, encoders

    def encode_prompt(self, backbone: Backbone, prompt: str, image_size: int) -> Conditioning:
        """Penultimate hidden states of both encoders concatenated, the second's pooled projection and time ids.

        ``time_ids = [S, S, 0, 0, S, S]`` (original size, crop offset, target size), exactly as the diffusers SDXL
        pipeline builds them for a prompt without classifier-free guidance.
        """
        states = []
        pooled = None
        for tokenizer, encoder in zip(backbone.tokenizers, backbone.text_encoders, strict=True):
            out = encoder(tokenize(tokenizer, prompt, backbone.device), output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = out[0]
        hidden = torch.cat(states, dim=-1).to(backbone.dtype)
        time_ids = torch.tensor([[image_size, image_size, 0, 0, image_size, image_size]], dtype=backbone.dtype)
        return Conditioning(
            {
                "encoder_hidden_states": hidden,
                "text_embeds": pooled.to(backbone.dtype),
                "time_ids": time_ids.to(backbone.device),
            }
        )

    def write_tiny_text_encoders(self, root: Path) -> dict[str, list[str]]:
        """SD's tiny text encoder, then a second tokenizer and a tiny CLIP text encoder with projection."""
        from transformers import CLIPTextModelWithProjection

        components = StableDiffusion().write_tiny_text_encoders(root)
        vocab = write_clip_tokenizer(root / "tokenizer_2")
        CLIPTextModelWithProjection(tiny_clip_text_config(vocab)).save_pretrained(root / "text_encoder_2")
        return components | {
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
        }
