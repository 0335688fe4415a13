"""From pixels to the denoiser's inputs: VAE latents, optional noise at a timestep, empty-prompt conditioning.

Each function hands the work to the backbone's family adapter (:mod:`zeroseg.backbones.families`).
"""

from __future__ import annotations

import torch

from zeroseg.backbones.backbone import Backbone
from zeroseg.backbones.families import Conditioning


@torch.inference_mode()
def encode_images(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """Encode ``(B, 3, S, S)`` images in [0, 1] to scaled VAE latents ``(B, C, S/8, S/8)`` in float32.

    The latent is the posterior **mean**, minus the VAE's shift factor (SD3, FLUX), times its scaling factor
    (0.18215 for SD 1.x/2.x, 0.13025 for the SDXL family and PixArt), as both official codes do; no sampling. C is
    4 for the UNets and PixArt, 16 for SD3 and FLUX. The VAE runs in float32.
    """
    return backbone.adapter.encode_images(backbone, images)


def add_noise(backbone: Backbone, latents: torch.Tensor, timestep: int, *, seed: int | None) -> torch.Tensor:
    """Noise latents to ``timestep`` as the family's training does: DDPM sqrt(a_t) z0 + sqrt(1 - a_t) eps, or
    flow matching (1 - s) z0 + s eps with s = t / T.

    One noise map is drawn from a CPU generator seeded with ``seed`` and shared by every image of the batch (the
    DiffCut code expands a single draw over the batch), so results do not depend on the batch or the device.
    ``seed=None`` returns the latents unchanged (DiffSeg's default: the clean latent at t=300).
    """
    if seed is None:
        return latents
    return backbone.adapter.add_noise(backbone, latents, timestep, seed=seed)


@torch.inference_mode()
def empty_prompt_conditioning(backbone: Backbone, batch_size: int, image_size: int) -> Conditioning:
    """Text conditioning of the empty prompt, computed once per model and image size, expanded to the batch.

    Each family builds it as its diffusers pipeline does for an empty prompt without classifier-free guidance
    (see the family's ``encode_prompt``).
    """
    return backbone.conditioning(batch_size, image_size)
