"""What the Stable Diffusion UNet families share: the UNet, KL VAE and DDPM schedule, and their layer layout.

The layers are found from the module tree and the latent size, never from hard-coded names, so SD 1.x, SD 2.x
(other head counts) and the SDXL family (fewer resolutions, up to 10 transformer blocks per attention) all work.
A family of this kind adds only its text encoders, its prompt conditioning and its tiny test model.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from zeroseg.backbones.families.base import BackboneFamily, Conditioning, DenoiserLayer, LoadedParts
from zeroseg.backbones.schedule import ddpm_schedule
from zeroseg.backbones.tiny_parts import SCHEDULER, tiny_vae, write_model_index

if TYPE_CHECKING:
    from zeroseg.backbones.backbone import Backbone

UNET_CLASS = "UNet2DConditionModel"


class UNetFamily(BackboneFamily):
    """A latent-diffusion family whose denoiser is a diffusers ``UNet2DConditionModel``.

    Attributes:
        pipeline_class: the diffusers pipeline of the family, used to read single checkpoint files.
        tiny_unet: the UNet configuration of the family's tiny test model.
        tiny_vae_scaling_factor: the latent scaling factor of the family's released VAEs.
        tiny_pipeline_index: the extra ``model_index.json`` entries of the tiny model.
    """

    denoiser_folder = "unet"
    layer_sources: ClassVar[dict[str, str]] = {
        "diffseg": "every self-attention layer (DiffSeg official code)",
        "diffcut": "the last encoder self-attention (DiffCut official code)",
    }
    pipeline_class: ClassVar[str]
    tiny_unet: ClassVar[dict[str, Any]]
    tiny_vae_scaling_factor: ClassVar[float]
    tiny_pipeline_index: ClassVar[dict[str, Any]]

    @abstractmethod
    def load_text_encoders(
        self, folder: Path, *, dtype: torch.dtype, variants: dict[str, str | None]
    ) -> tuple[list[Any], list[Any]]:
        """The family's tokenizers and text encoders from a local folder."""

    @abstractmethod
    def write_tiny_text_encoders(self, root: Path) -> dict[str, list[str]]:
        """Write the tiny tokenizer(s) and text encoder(s); return their ``model_index.json`` entries."""

    def load(self, folder: Path, *, dtype: torch.dtype, variants: dict[str, str | None]) -> LoadedParts:
        """UNet in ``dtype``, VAE in float32 (the SDXL VAE overflows in float16 at 1024 px), the DDPM schedule."""
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

        source = str(folder)
        unet = UNet2DConditionModel.from_pretrained(
            source, subfolder="unet", torch_dtype=dtype, variant=variants.get("unet"), local_files_only=True
        )
        vae = AutoencoderKL.from_pretrained(
            source, subfolder="vae", torch_dtype=torch.float32, variant=variants.get("vae"), local_files_only=True
        )
        tokenizers, text_encoders = self.load_text_encoders(folder, dtype=dtype, variants=variants)
        scheduler_config = DDPMScheduler.load_config(source, subfolder="scheduler", local_files_only=True)
        return LoadedParts(unet, vae, tokenizers, text_encoders, ddpm_schedule(scheduler_config))

    def load_single_file(
        self, path: Path, *, config: str | None, dtype: torch.dtype, local_files_only: bool
    ) -> LoadedParts | None:
        """Read the checkpoint with the family's diffusers pipeline; ``None`` if it does not fit this family."""
        import diffusers

        pipe = getattr(diffusers, self.pipeline_class).from_single_file(
            str(path), config=config, torch_dtype=dtype, local_files_only=local_files_only, load_safety_checker=False
        )
        unet_config = {"_class_name": UNET_CLASS, **dict(pipe.unet.config)}
        if not self.recognises(dict(pipe.config), unet_config):
            return None
        tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if getattr(pipe, "tokenizer_2", None) else [])
        encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if getattr(pipe, "text_encoder_2", None) else [])
        schedule = ddpm_schedule(dict(pipe.scheduler.config))
        return LoadedParts(pipe.unet, pipe.vae.to(torch.float32), tokenizers, encoders, schedule)

    def layers(self, denoiser: Any, latent_side: int) -> list[DenoiserLayer]:
        """Every ``attn1`` of the UNet in forward order with its side (see :func:`unet_self_attention_layers`)."""
        return unet_self_attention_layers(denoiser, latent_side)

    def default_layers(self, denoiser: Any, method: str) -> tuple[int, ...]:
        """DiffSeg: every self-attention layer (official code); DiffCut: the last encoder self-attention
        (official code), see :func:`unet_feature_layer`."""
        layers = unet_self_attention_layers(denoiser, 64)
        if method == "diffcut":
            name, _ = unet_feature_layer(denoiser)
            return (next(i for i, layer in enumerate(layers) if layer.name == name),)
        return tuple(range(len(layers)))

    def latent_divisor(self, backbone: Backbone) -> int:
        """The VAE scale factor times the UNet's total downsampling (2 per down block with a downsampler)."""
        num_down = sum(1 for block in backbone.denoiser.down_blocks if getattr(block, "downsamplers", None))
        return self.vae_scale_factor(backbone) * 2**num_down

    def run_denoiser(self, backbone: Backbone, latents: torch.Tensor, timestep: int, conditioning: Conditioning):
        """One UNet forward pass with the hidden states and the added conditioning (SDXL's ``text_embeds`` and
        ``time_ids``, passed as ``added_cond_kwargs``)."""
        tensors = conditioning.kwargs()
        hidden = tensors.pop("encoder_hidden_states")
        t = torch.full((latents.shape[0],), int(timestep), device=backbone.device, dtype=torch.long)
        return backbone.denoiser(
            latents.to(backbone.dtype),
            t,
            encoder_hidden_states=hidden,
            added_cond_kwargs=tensors or None,
            return_dict=False,
        )

    def write_tiny_model(self, root: Path) -> None:
        """UNet, VAE, scheduler, then the text encoders, in this order (the weights depend on the order)."""
        from diffusers import DDIMScheduler, UNet2DConditionModel

        UNet2DConditionModel(**self.tiny_unet).save_pretrained(root / "unet")
        tiny_vae(self.tiny_vae_scaling_factor).save_pretrained(root / "vae")
        DDIMScheduler(**SCHEDULER).save_pretrained(root / "scheduler")
        components: dict[str, list[str]] = {
            "unet": ["diffusers", UNET_CLASS],
            "vae": ["diffusers", "AutoencoderKL"],
            "scheduler": ["diffusers", "DDIMScheduler"],
        }
        components |= self.write_tiny_text_encoders(root)
        write_model_index(root, {"_class_name": self.pipeline_class, **self.tiny_pipeline_index}, components)


def is_unet_config(denoiser_config: dict[str, Any]) -> bool:
    """Whether a ``unet/config.json`` describes a ``UNet2DConditionModel``."""
    return denoiser_config.get("_class_name", UNET_CLASS) == UNET_CLASS


def unet_self_attention_layers(unet: Any, latent_side: int) -> list[DenoiserLayer]:
    """Every self-attention (``attn1``) module of the UNet, in forward order, with its token-grid side.

    Each down block works at the current side and halves it after its downsampler; the mid block works at the
    smallest side; each up block works at the current side and doubles it after its upsampler.
    """
    layers: list[DenoiserLayer] = []
    side = latent_side
    for i, block in enumerate(unet.down_blocks):
        layers += _block_layers(block, f"down_blocks.{i}", side)
        if getattr(block, "downsamplers", None):
            side = math.ceil(side / 2)
    if unet.mid_block is not None:
        layers += _block_layers(unet.mid_block, "mid_block", side)
    for i, block in enumerate(unet.up_blocks):
        layers += _block_layers(block, f"up_blocks.{i}", side)
        if getattr(block, "upsamplers", None):
            side *= 2
    return layers


def _block_layers(block: Any, prefix: str, side: int) -> list[DenoiserLayer]:
    layers = []
    for j, transformer in enumerate(getattr(block, "attentions", None) or []):
        for k, basic in enumerate(getattr(transformer, "transformer_blocks", [])):
            attn = getattr(basic, "attn1", None)
            if attn is not None and not getattr(attn, "is_cross_attention", False):
                name = f"{prefix}.attentions.{j}.transformer_blocks.{k}.attn1"
                layers.append(DenoiserLayer(name, side, attention=attn, features=attn))
    return layers


def unet_feature_layer(unet: Any) -> tuple[str, Any]:
    """DiffCut's layer: ``attn1`` of the last transformer block of the last down block that has attention.

    SDXL family: ``down_blocks[-1]``; SD 1.x/2.x: ``down_blocks[-2]`` (their last down block has no attention).
    """
    for i in range(len(unet.down_blocks) - 1, -1, -1):
        attentions = getattr(unet.down_blocks[i], "attentions", None)
        if attentions:
            j = len(attentions) - 1
            k = len(attentions[j].transformer_blocks) - 1
            name = f"down_blocks.{i}.attentions.{j}.transformer_blocks.{k}.attn1"
            return name, attentions[j].transformer_blocks[k].attn1
    raise ValueError("this UNet has no down block with attention, so DiffCut has no feature layer to read")
