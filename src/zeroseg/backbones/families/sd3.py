"""Stable Diffusion 3 / 3.5 (medium, large): an MMDiT with joint text-image attention, flow matching.

Conditioning is the empty prompt through the two CLIP encoders only. T5 is never loaded or downloaded: the
diffusers SD3 pipeline runs without it (``text_encoder_3=None``) and then puts zeros in T5's 77 token slots, as
Seg4Diff does for segmentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from zeroseg.backbones.families.base import Conditioning, Default, DenoiserLayer
from zeroseg.backbones.families.dit import (
    TransformerFamily,
    load_encoder,
    load_tokenizer,
    relative_layer,
    shared_defaults,
)
from zeroseg.backbones.families.sd import tokenize
from zeroseg.backbones.recorders import attention_qk
from zeroseg.backbones.schedule import NoiseSchedule, flow_schedule
from zeroseg.backbones.tiny_parts import tiny_clip_text_config, write_clip_tokenizer

if TYPE_CHECKING:
    from zeroseg.backbones.backbone import Backbone

SEG4DIFF_LAYER = 9
"""Seg4Diff's semantic grounding layer of SD3 (block 9 of 24; cvlab-kaist/Seg4Diff configs/eval_unsup.yaml)."""
SEG4DIFF = "Seg4Diff (cvlab-kaist/Seg4Diff configs/eval_unsup.yaml)"
T5_SLOTS = 77
"""Token slots of the absent T5 (the pipeline's ``tokenizer_max_length`` when ``text_encoder_3`` is None)."""


class StableDiffusion3(TransformerFamily):
    """SD3-medium, SD3.5-medium and SD3.5-large: ``SD3Transformer2DModel``, 16-channel VAE, two CLIP encoders."""

    name = "sd3"
    title = "Stable Diffusion 3 / 3.5 (MMDiT, flow matching; two CLIP encoders, T5 left out)"
    components = ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")
    default_latent_divisor = 16  # VAE 8 x patch 2
    transformer_class = "SD3Transformer2DModel"
    pipeline_class = "StableDiffusion3Pipeline"
    layer_sources: ClassVar[dict[str, str]] = dict.fromkeys(
        ("diffseg", "diffcut"),
        f"block {SEG4DIFF_LAYER} of 24 ({SEG4DIFF}; the same relative depth in SD3.5-large's 38)",
    )
    checkpoint_markers = (("joint_blocks.",), ("context_embedder.", "pos_embed.proj."))
    defaults: ClassVar[dict[str, dict[str, Default]]] = shared_defaults(
        Default(1024, SEG4DIFF),
        Default(545, SEG4DIFF + ": noise step 8 of 28 shifted (3.0) flow steps, sigma 0.55"),
    )
    tiny_transformer: ClassVar[dict[str, Any]] = {
        # SD3.5-medium layout in miniature: image-only attention (attn2) in the first blocks, q/k RMS norms.
        "sample_size": 16,
        "patch_size": 2,
        "in_channels": 16,
        "out_channels": 16,
        "num_layers": 4,
        "attention_head_dim": 8,
        "num_attention_heads": 2,
        "caption_projection_dim": 16,
        "joint_attention_dim": 32,
        "pooled_projection_dim": 16,
        "pos_embed_max_size": 128,  # images up to 2048 px
        "dual_attention_layers": (0, 1),
        "qk_norm": "rms_norm",
    }
    tiny_vae_config: ClassVar[dict[str, Any]] = {
        "scaling_factor": 1.5305,
        "shift_factor": 0.0609,
        "latent_channels": 16,
        "quant_conv": False,
    }
    tiny_scheduler: ClassVar[tuple[str, dict[str, Any]]] = (
        "FlowMatchEulerDiscreteScheduler",
        {"num_train_timesteps": 1000, "shift": 3.0},
    )

    def load_text_encoders(
        self, folder: Path, *, dtype: torch.dtype, variants: dict[str, str | None]
    ) -> tuple[list[Any], list[Any]]:
        """CLIP-L and CLIP-G with projection (``text_encoder/``, ``text_encoder_2/``); never T5."""
        from transformers import CLIPTextModelWithProjection

        tokenizers = [load_tokenizer(folder, "tokenizer"), load_tokenizer(folder, "tokenizer_2")]
        encoders = [
            load_encoder(CLIPTextModelWithProjection, folder, name, dtype=dtype, variants=variants)
            for name in ("text_encoder", "text_encoder_2")
        ]
        return tokenizers, encoders

    def schedule(self, scheduler_config: dict[str, Any]) -> NoiseSchedule:
        return flow_schedule(scheduler_config)

    def encode_prompt(self, backbone: Backbone, prompt: str, image_size: int) -> Conditioning:
        """As ``StableDiffusion3Pipeline.encode_prompt`` without T5: both CLIPs' penultimate hidden states side by
        side, zero-padded to the joint width, then 77 zero T5 tokens; the pooled projections concatenated."""
        states, pooled = [], []
        for tokenizer, encoder in zip(backbone.tokenizers, backbone.text_encoders, strict=True):
            out = encoder(tokenize(tokenizer, prompt, backbone.device), output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled.append(out[0])
        clip = torch.cat(states, dim=-1)
        width = backbone.denoiser.config.joint_attention_dim
        clip = torch.nn.functional.pad(clip, (0, width - clip.shape[-1]))
        t5 = torch.zeros(1, T5_SLOTS, width, dtype=clip.dtype, device=clip.device)
        hidden = torch.cat([clip, t5], dim=-2).to(backbone.dtype)
        return Conditioning(
            {"encoder_hidden_states": hidden, "pooled_projections": torch.cat(pooled, dim=-1).to(backbone.dtype)}
        )

    def run_denoiser(self, backbone: Backbone, latents: torch.Tensor, timestep: int, conditioning: Conditioning):
        """One transformer pass; the timestep is the training timestep ``t = sigma * 1000``, as the pipeline's."""
        t = torch.full((latents.shape[0],), float(timestep), device=backbone.device, dtype=backbone.dtype)
        return backbone.denoiser(
            hidden_states=latents.to(backbone.dtype), timestep=t, return_dict=False, **conditioning.kwargs()
        )

    def layers(self, denoiser: Any, latent_side: int) -> list[DenoiserLayer]:
        """Every joint block: its image-only ``attn2`` where present (SD3.5), else the image-image part of the
        joint attention; features: the image stream's attention output before its output projection (the space
        ConceptAttention reads)."""
        side = self.token_side(denoiser, latent_side)
        return [
            DenoiserLayer(
                f"transformer_blocks.{i}",
                side,
                attention=block.attn2 if block.attn2 is not None else block.attn,
                features=block.attn.to_out[0],
                image_qk=attention_qk,
                features_from_input=True,
            )
            for i, block in enumerate(denoiser.transformer_blocks)
        ]

    def default_layers(self, denoiser: Any, method: str) -> tuple[int, ...]:
        """Seg4Diff's layer 9 of 24 (the same relative depth in SD3.5-large's 38) for both methods."""
        return (relative_layer(SEG4DIFF_LAYER, 24, len(denoiser.transformer_blocks)),)

    def write_tiny_text_encoders(self, root: Path) -> dict[str, list[str]]:
        """Two tiny CLIP text encoders with projection and their tokenizers."""
        from transformers import CLIPTextModelWithProjection

        components: dict[str, list[str]] = {}
        for suffix in ("", "_2"):
            vocab = write_clip_tokenizer(root / f"tokenizer{suffix}")
            CLIPTextModelWithProjection(tiny_clip_text_config(vocab)).save_pretrained(root / f"text_encoder{suffix}")
            components[f"text_encoder{suffix}"] = ["transformers", "CLIPTextModelWithProjection"]
            components[f"tokenizer{suffix}"] = ["transformers", "CLIPTokenizer"]
        components |= {"text_encoder_3": [None, None], "tokenizer_3": [None, None]}
        return components
