"""The loaded model object that the methods and capture work with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zeroseg.backbones.families import BackboneFamily, Conditioning, get_family
from zeroseg.backbones.schedule import NoiseSchedule
from zeroseg.validation import check_image_size


@dataclass(eq=False)
class Backbone:
    """A loaded diffusion model, ready to encode images and run one denoiser step.

    What differs between model families (conditioning, layer layout, noising) is delegated to the family's
    adapter (:attr:`adapter`, from :mod:`zeroseg.backbones.families`).

    Attributes:
        model: the model as resolved (hub id, local folder or checkpoint file).
        family: the registered family name (``"sd"``, ``"sdxl"``, ``"sd3"``, ``"flux"``, ``"pixart"``).
        denoiser: the UNet or diffusion transformer, in ``dtype`` on ``device``.
        vae: the ``AutoencoderKL``, kept in float32 (the SDXL VAE overflows in float16 at 1024 px).
        tokenizers / text_encoders: the family's (empty once released after encoding the empty prompt).
        schedule: the training noise process (DDPM ``alphas_cumprod`` or flow matching).
        device / dtype: where and in which precision the denoiser runs.
        revision: the hub revision asked for.
        variants: the weight variant loaded per component, where one was (``{"unet": "fp16", ...}``).
    """

    model: str
    family: str
    denoiser: Any
    vae: Any
    tokenizers: list[Any]
    text_encoders: list[Any]
    schedule: NoiseSchedule
    device: torch.device
    dtype: torch.dtype
    revision: str | None = None
    variants: dict[str, str | None] = field(default_factory=dict)
    _conditioning: dict[int, Conditioning] = field(default_factory=dict, init=False, repr=False)

    @property
    def adapter(self) -> BackboneFamily:
        """The family adapter that knows how this model is conditioned and where its layers are."""
        return get_family(self.family)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for every released SD model), read from the VAE config."""
        return self.adapter.vae_scale_factor(self)

    @property
    def latent_divisor(self) -> int:
        """Image sides must be multiples of this so that every token grid of the denoiser is a whole number."""
        return self.adapter.latent_divisor(self)

    def check_image_size(self, image_size: int) -> None:
        """Raise :class:`ConfigError` unless square images of side ``image_size`` fit this model exactly."""
        check_image_size(image_size, self.latent_divisor, model=self.model)

    def conditioning(self, batch_size: int, image_size: int) -> Conditioning:
        """The empty-prompt conditioning for ``image_size``, computed once and expanded to the batch."""
        if image_size not in self._conditioning:
            known = next(iter(self._conditioning.values()), None)
            sizeless = self.adapter.release_text_encoders(self)
            if known is not None and sizeless:
                self._conditioning[image_size] = known  # the same for every size
            else:
                with torch.inference_mode():
                    self._conditioning[image_size] = self.adapter.encode_prompt(self, "", image_size)
                if sizeless:  # encoded once: the large text encoders are not needed again
                    self.tokenizers, self.text_encoders = [], []
        return self._conditioning[image_size].for_batch(batch_size)

    def override_conditioning(self, image_size: int, conditioning: Conditioning) -> None:
        """Use this (batch of one) conditioning for ``image_size`` instead of encoding the empty prompt.

        For measurements that swap in a denoiser of another width than the loaded text encoders produce.
        """
        self._conditioning[image_size] = conditioning

    def identity(self) -> dict[str, Any]:
        """What identifies these weights, for cache keys: the hub id and revision, or a local path and mtime."""
        path = Path(self.model)
        ident: dict[str, Any] = {"model": self.model, "revision": self.revision, "family": self.family}
        if path.exists():
            ident["model"] = str(path.resolve())
            ident["mtime"] = max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=0.0)
        if any(self.variants.values()):
            ident["variants"] = dict(sorted(self.variants.items()))
        return ident
