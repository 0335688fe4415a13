"""FLUX.1 (schnell, dev): double-stream blocks with joint attention, then single-stream blocks; rotary positions.

Conditioning is the empty prompt through CLIP-L (pooled) and T5 (tokens), encoded once; the latents are packed
into 2x2 patches as ``FluxPipeline`` packs them, with the same image position ids.
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
from zeroseg.backbones.schedule import NoiseSchedule, flow_schedule
from zeroseg.backbones.tiny_parts import tiny_clip_text_config, write_clip_tokenizer, write_t5

if TYPE_CHECKING:
    from zeroseg.backbones.backbone import Backbone

CONCEPT_ATTENTION = "ConceptAttention (helblazer811/ConceptAttention concept_attention/flux/pipeline.py)"
CONCEPT_LAYERS = (15, 16, 17, 18)
"""ConceptAttention's default FLUX layers: the last four of the 19 double-stream blocks."""
GUIDANCE = 3.5
"""The guidance value FLUX.1-dev is conditioned on (``FluxPipeline``'s default ``guidance_scale``)."""
T5_TOKENS = {False: 256, True: 512}
"""T5 tokens of the prompt: 256 for schnell, 512 for the guidance-distilled dev (Black Forest Labs' reference)."""


def flux_qk(attn: Any, call: dict[str, Any], image_tokens: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Image queries and keys of a ``FluxAttention`` call as ``FluxAttnProcessor`` forms them: projections, q/k
    RMS norms, then the rotary embedding of the image positions (the last ``image_tokens`` of the sequence)."""
    from diffusers.models.embeddings import apply_rotary_emb

    hidden = call["hidden_states"][:, -image_tokens:]
    if getattr(attn, "fused_projections", False):
        query, key, _ = attn.to_qkv(hidden).chunk(3, dim=-1)
    else:
        query, key = attn.to_q(hidden), attn.to_k(hidden)
    query = attn.norm_q(query.unflatten(-1, (-1, attn.head_dim)))
    key = attn.norm_k(key.unflatten(-1, (-1, attn.head_dim)))
    rotary = call.get("image_rotary_emb")
    if rotary is not None:
        rotary = tuple(part[-image_tokens:] for part in rotary)
        query = apply_rotary_emb(query, rotary, sequence_dim=1)
        key = apply_rotary_emb(key, rotary, sequence_dim=1)
    return query.transpose(1, 2), key.transpose(1, 2), attn.head_dim**-0.5


class Flux(TransformerFamily):
    """FLUX.1-schnell and FLUX.1-dev: ``FluxTransformer2DModel``, 16-channel VAE, CLIP-L and T5."""

    name = "flux"
    title = "FLUX.1 schnell / dev (double and single stream DiT, flow matching; CLIP-L and T5)"
    components = ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")
    default_latent_divisor = 16  # VAE 8 x 2x2 packing
    transformer_class = "FluxTransformer2DModel"
    pipeline_class = "FluxPipeline"
    layer_sources: ClassVar[dict[str, str]] = {
        "diffseg": f"double-stream blocks 15-18 ({CONCEPT_ATTENTION})",
        "diffcut": f"double-stream block 18, the last of those ({CONCEPT_ATTENTION})",
    }
    checkpoint_markers = (("double_blocks.",), ("single_transformer_blocks.",))
    defaults: ClassVar[dict[str, dict[str, Default]]] = shared_defaults(
        Default(1024, CONCEPT_ATTENTION), Default(500, CONCEPT_ATTENTION + ": t = 0.5, step 2 of 4 unshifted")
    )
    tiny_transformer: ClassVar[dict[str, Any]] = {
        "patch_size": 1,
        "in_channels": 64,
        "num_layers": 2,
        "num_single_layers": 2,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": 16,  # the tiny T5's width
        "pooled_projection_dim": 8,  # the tiny CLIP's width
        "guidance_embeds": True,
        "axes_dims_rope": (4, 6, 6),
    }
    tiny_vae_config: ClassVar[dict[str, Any]] = {
        "scaling_factor": 0.3611,
        "shift_factor": 0.1159,
        "latent_channels": 16,
        "quant_conv": False,
    }
    tiny_scheduler: ClassVar[tuple[str, dict[str, Any]]] = (
        "FlowMatchEulerDiscreteScheduler",
        {"num_train_timesteps": 1000, "shift": 1.0},
    )

    def load_text_encoders(
        self, folder: Path, *, dtype: torch.dtype, variants: dict[str, str | None]
    ) -> tuple[list[Any], list[Any]]:
        """CLIP-L (``text_encoder/``) and the T5 encoder (``text_encoder_2/``)."""
        from transformers import CLIPTextModel, T5EncoderModel

        tokenizers = [load_tokenizer(folder, "tokenizer"), load_tokenizer(folder, "tokenizer_2")]
        encoders = [
            load_encoder(CLIPTextModel, folder, "text_encoder", dtype=dtype, variants=variants),
            load_encoder(T5EncoderModel, folder, "text_encoder_2", dtype=dtype, variants=variants),
        ]
        return tokenizers, encoders

    def schedule(self, scheduler_config: dict[str, Any]) -> NoiseSchedule:
        return flow_schedule(scheduler_config)

    def patch_size(self, denoiser: Any) -> int:
        """2: the pipeline packs 2x2 latent cells into one token (the transformer's own patch size is 1)."""
        return 2 * int(denoiser.config.patch_size)

    def encode_prompt(self, backbone: Backbone, prompt: str, image_size: int) -> Conditioning:
        """As ``FluxPipeline.encode_prompt``: CLIP-L's pooled output, T5's last hidden state (no attention mask),
        zero text position ids; FLUX.1-dev's guidance value."""
        clip_tokenizer, t5_tokenizer = backbone.tokenizers
        clip, t5 = backbone.text_encoders
        pooled = clip(tokenize(clip_tokenizer, prompt, backbone.device), output_hidden_states=False).pooler_output
        guided = bool(backbone.denoiser.config.guidance_embeds)
        length = min(T5_TOKENS[guided], t5_tokenizer.model_max_length)
        ids = t5_tokenizer(
            prompt, padding="max_length", max_length=length, truncation=True, return_tensors="pt"
        ).input_ids.to(backbone.device)
        hidden = t5(ids, output_hidden_states=False)[0]
        per_image = {
            "encoder_hidden_states": hidden.to(backbone.dtype),
            "pooled_projections": pooled.to(backbone.dtype),
        }
        if guided:
            per_image["guidance"] = torch.full((1,), GUIDANCE, device=backbone.device, dtype=torch.float32)
        txt_ids = torch.zeros(hidden.shape[1], 3, device=backbone.device, dtype=backbone.dtype)
        return Conditioning(per_image, {"txt_ids": txt_ids})

    def run_denoiser(self, backbone: Backbone, latents: torch.Tensor, timestep: int, conditioning: Conditioning):
        """Pack the latents into 2x2 patches with their position ids and run the transformer at ``t / 1000``."""
        batch, channels, height, width = latents.shape
        packed = latents.view(batch, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
        packed = packed.reshape(batch, (height // 2) * (width // 2), channels * 4).to(backbone.dtype)
        img_ids = torch.zeros(height // 2, width // 2, 3, device=backbone.device)
        img_ids[..., 1] += torch.arange(height // 2, device=backbone.device)[:, None]
        img_ids[..., 2] += torch.arange(width // 2, device=backbone.device)[None, :]
        img_ids = img_ids.reshape(-1, 3).to(backbone.dtype)
        t = torch.full((batch,), timestep / 1000.0, device=backbone.device, dtype=backbone.dtype)
        return backbone.denoiser(
            hidden_states=packed, timestep=t, img_ids=img_ids, return_dict=False, **conditioning.kwargs()
        )

    def layers(self, denoiser: Any, latent_side: int) -> list[DenoiserLayer]:
        """The double-stream blocks (0-18 in FLUX.1), then the single-stream ones (19-56): the image-image part
        of each joint attention; features: the image tokens' attention output before the output projection
        (the space ConceptAttention reads; the single blocks have no projection)."""
        side = self.token_side(denoiser, latent_side)
        double = [
            DenoiserLayer(f"transformer_blocks.{i}", side, block.attn, block.attn.to_out[0], flux_qk, True)
            for i, block in enumerate(denoiser.transformer_blocks)
        ]
        single = [
            DenoiserLayer(f"single_transformer_blocks.{i}", side, block.attn, block.attn, flux_qk, False)
            for i, block in enumerate(denoiser.single_transformer_blocks)
        ]
        return double + single

    def default_layers(self, denoiser: Any, method: str) -> tuple[int, ...]:
        """ConceptAttention's double blocks 15-18 (DiffSeg), the last of them (DiffCut); the same relative depths
        in a model of another depth."""
        depth = len(denoiser.transformer_blocks)
        layers = tuple(sorted({relative_layer(i, 19, depth) for i in CONCEPT_LAYERS}))
        return layers[-1:] if method == "diffcut" else layers

    def write_tiny_text_encoders(self, root: Path) -> dict[str, list[str]]:
        """A tiny CLIP text encoder and a tiny T5 encoder with their tokenizers."""
        from transformers import CLIPTextModel

        vocab = write_clip_tokenizer(root / "tokenizer")
        CLIPTextModel(tiny_clip_text_config(vocab)).save_pretrained(root / "text_encoder")
        write_t5(root, "tokenizer_2", "text_encoder_2", max_length=512)
        return {
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "text_encoder_2": ["transformers", "T5EncoderModel"],
            "tokenizer_2": ["transformers", "T5TokenizerFast"],
        }
