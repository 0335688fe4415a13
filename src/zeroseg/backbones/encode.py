"""From pixels to the UNet's inputs: VAE latents, optional noise at a timestep, empty-prompt conditioning."""

from __future__ import annotations

import torch

from zeroseg.backbones.loading import Backbone
from zeroseg.errors import ConfigError


@torch.inference_mode()
def encode_images(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """Encode ``(B, 3, S, S)`` images in [0, 1] to scaled VAE latents ``(B, 4, S/8, S/8)`` in float32.

    The latent is the posterior **mean** times the VAE's scaling factor (0.18215 for SD 1.x/2.x, 0.13025 for the
    SDXL family), as both official codes do; no sampling. The VAE runs in float32.
    """
    vae = backbone.vae
    x = images.to(backbone.device, torch.float32) * 2.0 - 1.0
    mean = vae.encode(x).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (mean - shift) * vae.config.scaling_factor


def add_noise(backbone: Backbone, latents: torch.Tensor, timestep: int, *, seed: int | None) -> torch.Tensor:
    """Noise latents to ``timestep`` as DDPM training does: sqrt(a_t) z0 + sqrt(1 - a_t) eps.

    One noise map is drawn from a CPU generator seeded with ``seed`` and shared by every image of the batch (the
    DiffCut code expands a single draw over the batch), so results do not depend on the batch or the device.
    ``seed=None`` returns the latents unchanged (DiffSeg's default: the clean latent at t=300).
    """
    if seed is None:
        return latents
    num_steps = backbone.alphas_cumprod.numel()
    if not 0 <= timestep < num_steps:
        raise ConfigError(f"`timestep` must be in [0, {num_steps - 1}] (got {timestep})")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn((1, *latents.shape[1:]), generator=generator, dtype=torch.float32)
    noise = noise.to(latents.device).expand_as(latents)
    alpha = backbone.alphas_cumprod[timestep].item()
    return latents * alpha**0.5 + noise * (1.0 - alpha) ** 0.5


@torch.inference_mode()
def empty_prompt_conditioning(
    backbone: Backbone, batch_size: int, image_size: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    """Text conditioning of the empty prompt, computed once per model and image size, expanded to the batch.

    SD 1.x/2.x: the text encoder's last hidden state of ``""`` padded to 77 tokens. SDXL family: the penultimate
    hidden states of both encoders concatenated, plus the pooled projection of the second (``text_embeds``) and
    the size conditioning ``time_ids = [S, S, 0, 0, S, S]`` (original size, crop offset, target size), exactly as
    the diffusers SDXL pipeline builds them for an empty prompt without classifier-free guidance.
    """
    key = (image_size,)
    if key not in backbone._conditioning:
        backbone._conditioning[key] = _encode_empty_prompt(backbone, image_size)
    hidden, added = backbone._conditioning[key]
    hidden = hidden.expand(batch_size, -1, -1)
    if added is None:
        return hidden, None
    return hidden, {name: value.expand(batch_size, -1) for name, value in added.items()}


def _encode_empty_prompt(backbone: Backbone, image_size: int) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    states = []
    pooled = None
    for tokenizer, encoder in zip(backbone.tokenizers, backbone.text_encoders, strict=True):
        ids = tokenizer(
            "",
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(backbone.device)
        if backbone.family == "sd":
            states.append(encoder(ids)[0])
        else:
            out = encoder(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = out[0]
    hidden = torch.cat(states, dim=-1).to(backbone.dtype)
    if backbone.family == "sd":
        return hidden, None
    time_ids = torch.tensor([[image_size, image_size, 0, 0, image_size, image_size]], dtype=backbone.dtype)
    added = {"text_embeds": pooled.to(backbone.dtype), "time_ids": time_ids.to(backbone.device)}
    return hidden, added
