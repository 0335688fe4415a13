"""PixArt-Sigma (and PixArt-alpha): a DiT with self-attention over image tokens and cross-attention to T5 tokens.

Trained with the DDPM process, so its timesteps mean what the UNets' do. Conditioning is the empty prompt through
T5 with its attention mask (300 tokens), as ``PixArtSigmaPipeline`` encodes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from zeroseg.backbones.families.base import Conditioning, Default, DenoiserLayer
from zeroseg.backbones.families.dit import UNTUNED_TAU, TransformerFamily, load_encoder, load_tokenizer
from zeroseg.backbones.recorders import attention_qk
from zeroseg.backbones.schedule import NoiseSchedule, ddpm_schedule
from zeroseg.backbones.tiny_parts import write_t5

if TYPE_CHECKING:
    from zeroseg.backbones.backbone import Backbone

T5_TOKENS = 300
"""``PixArtSigmaPipeline``'s ``max_sequence_length``."""
NO_SOURCE = "zeroseg's choice (no published segmentation setting for PixArt)"


class PixArt(TransformerFamily):
    """PixArt-Sigma / PixArt-alpha: ``PixArtTransformer2DModel``, the SDXL VAE (Sigma), one T5 encoder."""

    name = "pixart"
    title = "PixArt-Sigma / PixArt-alpha (DiT with cross-attention, DDPM; T5)"
    components = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    default_latent_divisor = 16  # VAE 8 x patch 2
    transformer_class = "PixArtTransformer2DModel"
    pipeline_class = "PixArtSigmaPipeline"
    layer_sources: ClassVar[dict[str, str]] = dict.fromkeys(
        ("diffseg", "diffcut"), f"the middle block, 14 of 28 ({NO_SOURCE})"
    )
    checkpoint_markers = (("t_block.",), ("adaln_single.",))
    defaults: ClassVar[dict[str, dict[str, Default]]] = {
        "diffseg": {
            "image_size": Default(1024, "PixArt-Sigma's native size (diffusers PixArtSigmaPipeline, sample_size 128)"),
            "timestep": Default(300, "DiffSeg official notebooks (the same DDPM process as SD 1.4)"),
        },
        "diffcut": {
            "image_size": Default(1024, "PixArt-Sigma's native size (diffusers PixArtSigmaPipeline, sample_size 128)"),
            "timestep": Default(50, "DiffCut official code (the same DDPM process as SSD-1B)"),
            "tau": UNTUNED_TAU,
        },
    }
    tiny_transformer: ClassVar[dict[str, Any]] = {
        # PixArt-Sigma's block layout with every width tiny.
        "sample_size": 8,
        "num_layers": 4,
        "patch_size": 2,
        "attention_head_dim": 4,
        "num_attention_heads": 2,
        "in_channels": 4,
        "out_channels": 8,
        "cross_attention_dim": 8,
        "caption_channels": 16,  # the tiny T5's width
        "attention_bias": True,
        "activation_fn": "gelu-approximate",
        "num_embeds_ada_norm": 1000,
        "norm_type": "ada_norm_single",
        "norm_elementwise_affine": False,
        "norm_eps": 1e-6,
        "use_additional_conditions": False,
    }
    tiny_vae_config: ClassVar[dict[str, Any]] = {"scaling_factor": 0.13025}
    tiny_scheduler: ClassVar[tuple[str, dict[str, Any]]] = (
        "DPMSolverMultistepScheduler",
        {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"},
    )

    def recognises(self, model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
        """A ``PixArtTransformer2DModel`` (older exports: a ``Transformer2DModel`` with ``ada_norm_single``)."""
        cls = denoiser_config.get("_class_name")
        return cls == self.transformer_class or (
            cls == "Transformer2DModel" and denoiser_config.get("norm_type") == "ada_norm_single"
        )

    def load_text_encoders(
        self, folder: Path, *, dtype: torch.dtype, variants: dict[str, str | None]
    ) -> tuple[list[Any], list[Any]]:
        """The T5 encoder (``text_encoder/``) and its tokenizer."""
        from transformers import T5EncoderModel

        return [load_tokenizer(folder, "tokenizer")], [
            load_encoder(T5EncoderModel, folder, "text_encoder", dtype=dtype, variants=variants)
        ]

    def schedule(self, scheduler_config: dict[str, Any]) -> NoiseSchedule:
        return ddpm_schedule(scheduler_config)

    def encode_prompt(self, backbone: Backbone, prompt: str, image_size: int) -> Conditioning:
        """T5's last hidden state of the prompt padded to 300 tokens and the attention mask that hides the padding,
        which the transformer's cross-attention applies."""
        tokenizer, encoder = backbone.tokenizers[0], backbone.text_encoders[0]
        length = min(T5_TOKENS, tokenizer.model_max_length)
        tokens = tokenizer(prompt, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        ids, mask = tokens.input_ids.to(backbone.device), tokens.attention_mask.to(backbone.device)
        hidden = encoder(ids, attention_mask=mask)[0]
        return Conditioning({"encoder_hidden_states": hidden.to(backbone.dtype), "encoder_attention_mask": mask})

    def run_denoiser(self, backbone: Backbone, latents: torch.Tensor, timestep: int, conditioning: Conditioning):
        """One transformer pass; the size conditions (PixArt-alpha 1024) are the square input's."""
        batch, side = latents.shape[0], latents.shape[-1] * self.vae_scale_factor(backbone)
        added: dict[str, Any] = {"resolution": None, "aspect_ratio": None}
        if backbone.denoiser.use_additional_conditions:
            added = {
                "resolution": torch.tensor([[side, side]] * batch, device=backbone.device, dtype=backbone.dtype),
                "aspect_ratio": torch.ones(batch, 1, device=backbone.device, dtype=backbone.dtype),
            }
        t = torch.full((batch,), int(timestep), device=backbone.device, dtype=torch.long)
        return backbone.denoiser(
            latents.to(backbone.dtype), timestep=t, added_cond_kwargs=added, return_dict=False, **conditioning.kwargs()
        )

    def layers(self, denoiser: Any, latent_side: int) -> list[DenoiserLayer]:
        """Every block's self-attention ``attn1``; features: its output before the output projection."""
        side = self.token_side(denoiser, latent_side)
        return [
            DenoiserLayer(f"transformer_blocks.{i}", side, block.attn1, block.attn1.to_out[0], attention_qk, True)
            for i, block in enumerate(denoiser.transformer_blocks)
        ]

    def default_layers(self, denoiser: Any, method: str) -> tuple[int, ...]:
        """The middle block (14 of 28), for both methods: no published reading of PixArt's layers exists."""
        return (len(denoiser.transformer_blocks) // 2,)

    def write_tiny_text_encoders(self, root: Path) -> dict[str, list[str]]:
        """A tiny T5 encoder and its tokenizer."""
        write_t5(root, "tokenizer", "text_encoder", max_length=T5_TOKENS)
        return {"text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"]}
