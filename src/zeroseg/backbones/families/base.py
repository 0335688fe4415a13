"""The adapter interface a model family implements: how to load, encode, condition, noise and read its layers.

Everything family-specific about a diffusion backbone lives behind :class:`BackboneFamily`; the rest of zeroseg
(the :class:`~zeroseg.backbones.Backbone`, capture, the methods) only calls these methods. The defaults here are
the ones every latent-diffusion model shares (a KL VAE whose posterior mean is the latent, the DDPM forward
process); a family overrides what differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from zeroseg.errors import ConfigError

if TYPE_CHECKING:
    from zeroseg.backbones.backbone import Backbone

# (hidden states (1, L, D), added conditioning kwargs of the denoiser or None), for one image.
Conditioning = tuple[torch.Tensor, dict[str, torch.Tensor] | None]


@dataclass(frozen=True)
class AttentionLayer:
    """A self-attention module of the denoiser and the side of the square token grid it attends over."""

    name: str
    module: Any
    side: int


@dataclass
class LoadedParts:
    """What a family's loader returns; :func:`~zeroseg.backbones.load_backbone` wraps it in a ``Backbone``."""

    unet: Any
    vae: Any
    tokenizers: list[Any]
    text_encoders: list[Any]
    alphas_cumprod: torch.Tensor


class BackboneFamily(ABC):
    """One family of diffusion models (same components, same conditioning, same layer layout).

    Attributes:
        name: the registry key (``"sd"``, ``"sdxl"``).
        components: the sub-folders of a diffusers model folder this family loads (what is downloaded).
        default_latent_divisor: the image-side divisor of the family's released models, known before loading
            (config-time checks use it; a loaded model reports its own through :meth:`latent_divisor`).
    """

    name: ClassVar[str]
    components: ClassVar[tuple[str, ...]]
    default_latent_divisor: ClassVar[int]

    @abstractmethod
    def recognises(self, model_index: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
        """Whether a diffusers ``model_index.json`` and the denoiser's ``config.json`` describe this family."""

    @abstractmethod
    def load(self, folder: Path, *, dtype: torch.dtype, variants: dict[str, str | None]) -> LoadedParts:
        """Load the components from a local diffusers folder (``variants``: weight variant per component)."""

    @abstractmethod
    def load_single_file(
        self, path: Path, *, config: str | None, dtype: torch.dtype, local_files_only: bool
    ) -> LoadedParts | None:
        """Load a single checkpoint file, or return ``None`` when it is not a checkpoint of this family."""

    @abstractmethod
    def encode_prompt(self, backbone: Backbone, prompt: str, image_size: int) -> Conditioning:
        """The denoiser's conditioning for ``prompt`` and square images of side ``image_size`` (batch of one)."""

    @abstractmethod
    def self_attention_layers(self, denoiser: Any, latent_side: int) -> list[AttentionLayer]:
        """Every self-attention module of the denoiser in forward order, with its token-grid side."""

    @abstractmethod
    def feature_layer(self, denoiser: Any) -> tuple[str, Any]:
        """DiffCut's feature layer: the name and module of the last encoder self-attention."""

    @abstractmethod
    def latent_divisor(self, backbone: Backbone) -> int:
        """Image sides must be multiples of this so that every resolution of the denoiser is a whole number."""

    @abstractmethod
    def run_denoiser(self, backbone: Backbone, latents: torch.Tensor, timestep: int, conditioning: Conditioning):
        """One denoiser forward pass at ``timestep`` (capture hooks stop it early by raising)."""

    @abstractmethod
    def write_tiny_model(self, root: Path) -> None:
        """Write a tiny random-weight model of this family in diffusers layout (the caller seeds torch)."""

    def vae_scale_factor(self, backbone: Backbone) -> int:
        """Pixels per latent cell, read from the VAE config (8 for every released model)."""
        return 2 ** (len(backbone.vae.config.block_out_channels) - 1)

    def encode_images(self, backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` images in [0, 1] to scaled VAE latents: the posterior mean, shifted and scaled.

        No sampling, as both official codes do; the VAE runs in float32.
        """
        vae = backbone.vae
        x = images.to(backbone.device, torch.float32) * 2.0 - 1.0
        mean = vae.encode(x).latent_dist.mean
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (mean - shift) * vae.config.scaling_factor

    def add_noise(self, backbone: Backbone, latents: torch.Tensor, timestep: int, *, seed: int) -> torch.Tensor:
        """DDPM forward process sqrt(a_t) z0 + sqrt(1 - a_t) eps, one CPU-seeded draw shared by the batch."""
        num_steps = backbone.alphas_cumprod.numel()
        if not 0 <= timestep < num_steps:
            raise ConfigError(f"`timestep` must be in [0, {num_steps - 1}] (got {timestep})")
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn((1, *latents.shape[1:]), generator=generator, dtype=torch.float32)
        noise = noise.to(latents.device).expand_as(latents)
        alpha = backbone.alphas_cumprod[timestep].item()
        return latents * alpha**0.5 + noise * (1.0 - alpha) ** 0.5
