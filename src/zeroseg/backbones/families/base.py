"""The adapter interface a model family implements: how to load, encode, condition, noise and read its layers.

Everything family-specific about a diffusion backbone lives behind :class:`BackboneFamily`; the rest of zeroseg
(the :class:`~zeroseg.backbones.Backbone`, capture, the methods) only calls these methods. The denoiser may be a
UNet or a diffusion transformer; the noise process is the family's :class:`~zeroseg.backbones.schedule.NoiseSchedule`
(DDPM or flow matching); conditioning is any set of tensors. The defaults here are what every latent-diffusion
model shares (a KL VAE whose posterior mean, shifted and scaled, is the latent); a family overrides what differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from zeroseg.backbones.schedule import NoiseSchedule
from zeroseg.errors import ConfigError

if TYPE_CHECKING:
    from zeroseg.backbones.backbone import Backbone


@dataclass(frozen=True)
class Conditioning:
    """The denoiser's conditioning besides the latents and the timestep, as keyword tensors.

    Attributes:
        per_image: tensors with a leading batch dimension (of one when computed, see :meth:`for_batch`).
        shared: tensors the denoiser takes once for the whole batch (FLUX's ``txt_ids``, ``(L, 3)``).
    """

    per_image: dict[str, torch.Tensor]
    shared: dict[str, torch.Tensor] = field(default_factory=dict)

    def for_batch(self, batch_size: int) -> Conditioning:
        """The same conditioning expanded (not copied) to ``batch_size`` images."""
        expanded = {name: t.expand(batch_size, *t.shape[1:]) for name, t in self.per_image.items()}
        return Conditioning(expanded, self.shared)

    def kwargs(self) -> dict[str, torch.Tensor]:
        """Every tensor by its keyword."""
        return {**self.per_image, **self.shared}


QKReader = Callable[..., tuple[torch.Tensor, torch.Tensor, float]]
"""``reader(attn, call, image_tokens) -> (q, k, scale)``: the image tokens' queries and keys ``(B, heads, N, d)``
of one attention call (``call``: the processor's arguments by name) and the score scale, computed exactly as the
stock processor computes them (projections, q/k norms, rotary embedding)."""


@dataclass(frozen=True)
class DenoiserLayer:
    """One layer of the denoiser zeroseg can read, on a square token grid of side :attr:`side`.

    Attributes:
        name: the module path of the layer (``down_blocks.1.attentions.0.transformer_blocks.0.attn1``,
            ``transformer_blocks.9``).
        side: the side of the square token grid its image tokens form.
        attention: the attention module whose processor records the self-attention among image tokens.
        features: the module whose output's image-token stream is the layer's features (DiffCut); tuple outputs
            give the image stream first, and the image tokens are the last ``side * side`` of it.
        image_qk: how to read the image tokens' queries and keys from a call of ``attention`` (the processor then
            runs unchanged and the probabilities are computed beside it); ``None`` for a plain self-attention
            whose recorder computes the output from the recorded probabilities (the UNets').
        features_from_input: the features are the input of ``features`` instead of its output (the attention
            output before the output projection).
    """

    name: str
    side: int
    attention: Any
    features: Any
    image_qk: QKReader | None = None
    features_from_input: bool = False


@dataclass(frozen=True)
class Default:
    """A model-aware default of a method setting and where it comes from (shown in ``zeroseg models``)."""

    value: Any
    source: str


@dataclass
class LoadedParts:
    """What a family's loader returns; :func:`~zeroseg.backbones.load_backbone` wraps it in a ``Backbone``."""

    denoiser: Any
    vae: Any
    tokenizers: list[Any]
    text_encoders: list[Any]
    schedule: NoiseSchedule


class BackboneFamily(ABC):
    """One family of diffusion models (same components, same conditioning, same layer layout).

    Attributes:
        name: the registry key (``"sd"``, ``"sdxl"``, ``"sd3"``, ``"flux"``, ``"pixart"``).
        title: what the family covers, for ``zeroseg models``.
        denoiser_folder: the sub-folder of the denoiser (``unet`` or ``transformer``).
        components: the sub-folders of a diffusers model folder this family loads (what is downloaded).
        default_latent_divisor: the image-side divisor of the family's released models, known before loading
            (config-time checks use it; a loaded model reports its own through :meth:`latent_divisor`).
        defaults: per method, the family's defaults of the model-aware settings, each with its source.
        layer_sources: per method, which layers :meth:`default_layers` gives, in words, with the source.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    denoiser_folder: ClassVar[str]
    components: ClassVar[tuple[str, ...]]
    default_latent_divisor: ClassVar[int]
    defaults: ClassVar[dict[str, dict[str, Default]]]
    layer_sources: ClassVar[dict[str, str]]

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
    def layers(self, denoiser: Any, latent_side: int) -> list[DenoiserLayer]:
        """The readable layers of the denoiser in forward order (their indices are the ``layers`` setting's)."""

    @abstractmethod
    def default_layers(self, denoiser: Any, method: str) -> tuple[int, ...]:
        """The layer indices ``method`` reads by default: DiffSeg aggregates them, DiffCut reads the one."""

    @abstractmethod
    def latent_divisor(self, backbone: Backbone) -> int:
        """Image sides must be multiples of this so that every token grid of the denoiser is a whole number."""

    @abstractmethod
    def run_denoiser(self, backbone: Backbone, latents: torch.Tensor, timestep: int, conditioning: Conditioning):
        """One denoiser forward pass on ``(B, C, h, w)`` latents at ``timestep`` (capture hooks stop it early)."""

    @abstractmethod
    def write_tiny_model(self, root: Path) -> None:
        """Write a tiny random-weight model of this family in diffusers layout (the caller seeds torch)."""

    def release_text_encoders(self, backbone: Backbone) -> bool:
        """Whether the text encoders may be dropped once the empty prompt is encoded (its conditioning does not
        depend on the image size): the DiT families' encoders are large and used for one prompt only."""
        return False

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
        """The family's forward process at ``timestep``, one CPU-seeded draw shared by the batch."""
        num_steps = backbone.schedule.num_steps
        if not 0 <= timestep < num_steps:
            raise ConfigError(f"must be in [0, {num_steps - 1}] (got {timestep})", setting="timestep")
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        draw = torch.randn((1, *latents.shape[1:]), generator=generator, dtype=torch.float32)
        draw = draw.to(latents.device).expand_as(latents)
        return backbone.schedule.noise(latents, draw, timestep)
