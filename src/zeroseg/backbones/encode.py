"""From pixels to the UNet's inputs: VAE latents, optional noise at a timestep, empty-prompt conditioning.

Each function hands the work to the backbone's family adapter (:mod:`zeroseg.backbones.families`).
"""

from __future__ import annotations

import torch

from zeroseg.backbones.backbone import Backbone
from zeroseg.backbones.families import Conditioning


@torch.inference_mode()
def encode_images(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """Encode ``(B, 3, S, S)`` images in [0, 1] to scaled VAE latents ``(B, 4, S/8, S/8)`` in float32.

    The latent is the posterior **mean** times the VAE's scaling factor (0.18215 for SD 1.x/2.x, 0.13025 for the
    SDXL family), as both official codes do; no sampling. The VAE runs in float32.
    """
    return backbone.adapter.encode_images(backbone, images)


def add_noise(backbone: Backbone, latents: torch.Tensor, timestep: int, *, seed: int | None) -> torch.Tensor:
    """Noise latents to ``timestep`` as DDPM training does: sqrt(a_t) z0 + sqrt(1 - a_t) eps.

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

    SD 1.x/2.x: the text encoder's last hidden state of ``""`` padded to 77 tokens. SDXL family: the penultimate
    hidden states of both encoders concatenated, plus the pooled projection of the second (``text_embeds``) and
    the size conditioning ``time_ids = [S, S, 0, 0, S, S]`` (original size, crop offset, target size), exactly as
    the diffusers SDXL pipeline builds them for an empty prompt without classifier-free guidance.
    """
    return backbone.conditioning(batch_size, image_size)
