"""Tiny random-weight models for tests, demos without downloads, and speed measurements.

``make_tiny_model`` writes a complete diffusers model folder (UNet, VAE, text encoder(s), tokenizer(s) with a
locally written vocabulary, scheduler) that ``load_backbone`` and ``zeroseg segment --model`` accept, fully
offline. ``real_architecture_unet`` builds a randomly initialised UNet with a released model's architecture, and
``real_architecture_backbone`` a whole backbone around it (UNet and VAE of the released sizes): speed does not
depend on the weight values, so benchmarks use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# The UNet configurations of released models (from their published config.json), for random-weight benchmarks.
UNET_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "sd14": {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    },
    "sdxl": {
        "sample_size": 128,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": [320, 640, 1280],
        "layers_per_block": 2,
        "transformer_layers_per_block": [1, 2, 10],
        "attention_head_dim": [5, 10, 20],
        "cross_attention_dim": 2048,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
        "norm_num_groups": 32,
    },
}
# SSD-1B (DiffCut's default) is SDXL distilled: its encoder keeps 4 of the 10 transformer layers of the last down
# block (the layer DiffCut reads is ``down_blocks.2.attentions.1.transformer_blocks.3``). Only the encoder up to
# that layer runs for DiffCut's features, so the depths after it do not change the measured time.
UNET_ARCHITECTURES["ssd1b"] = {**UNET_ARCHITECTURES["sdxl"], "transformer_layers_per_block": [1, 2, 4]}

VAE_ARCHITECTURE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
}
"""The KL VAE of every released SD 1.x and SDXL-family model (they differ only in ``scaling_factor``)."""

ARCHITECTURE_FAMILY = {"sd14": "sd", "sdxl": "sdxl", "ssd1b": "sdxl"}
"""The backbone family of each architecture in :data:`UNET_ARCHITECTURES`."""

PROMPT_TOKENS = 77
"""Length of the text conditioning of every released SD-family model (CLIP's context)."""


def make_tiny_model(path: str | Path, family: str = "sd", *, seed: int = 0) -> Path:
    """Write a tiny random-weight model folder in diffusers layout and return its path.

    Args:
        path: folder to create (its parents are created; existing files are overwritten).
        family: a registered backbone family (``"sd"``: SD 1.x topology, one text encoder; ``"sdxl"``: SDXL
            topology, two text encoders); each family writes its own tiny model.
        seed: seed of the random weights; the same seed writes the same model.

    The folder loads with ``zeroseg.load_backbone(path)`` and with diffusers' own pipelines, needs no network,
    and segments a 64-256 px image in about a second on a CPU. Its segmentations are meaningless (random
    weights); it exists for tests and for trying the command line without a download.
    """
    from zeroseg.backbones.families import get_family

    adapter = get_family(family)
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    adapter.write_tiny_model(root)
    return root


def real_architecture_unet(name: str, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
    """A randomly initialised ``UNet2DConditionModel`` with a released model's architecture (``sd14``, ``sdxl``)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**UNET_ARCHITECTURES[name]).eval().requires_grad_(False)
    return unet if dtype == torch.float32 else unet.to(dtype)


def real_architecture_backbone(
    name: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    image_sizes: tuple[int, ...] = (512, 768, 1024),
    seed: int = 0,
) -> Any:
    """A :class:`~zeroseg.backbones.Backbone` with a released model's UNet and VAE, randomly initialised.

    ``name`` is a key of :data:`UNET_ARCHITECTURES`. The text encoders are left out: their one output, the
    empty-prompt conditioning, is set to random tensors of the released widths for each of ``image_sizes``
    (the pipeline computes it once per model anyway). Everything else (VAE encoding in float32, noising, the
    UNet pass and the methods) runs as with the released weights, so the pipeline's timings are the model's.
    """
    from diffusers import AutoencoderKL

    from zeroseg.backbones.backbone import Backbone
    from zeroseg.backbones.families import Conditioning, get_family
    from zeroseg.backbones.schedule import ddpm_schedule
    from zeroseg.backbones.tiny_parts import SCHEDULER

    family, config = ARCHITECTURE_FAMILY[name], UNET_ARCHITECTURES[name]
    scaling_factor = get_family(family).tiny_vae_scaling_factor  # the released VAEs' factor
    device = torch.device(device)
    unet = real_architecture_unet(name, dtype=dtype, seed=seed).to(device)
    vae = AutoencoderKL(**VAE_ARCHITECTURE, scaling_factor=scaling_factor).eval().requires_grad_(False).to(device)
    backbone = Backbone(
        model=f"random-weights:{name}",
        family=family,
        denoiser=unet,
        vae=vae,
        tokenizers=[],
        text_encoders=[],
        schedule=ddpm_schedule(SCHEDULER),
        device=device,
        dtype=dtype,
    )
    gen = torch.Generator().manual_seed(seed)
    for size in image_sizes:
        hidden = torch.randn(1, PROMPT_TOKENS, config["cross_attention_dim"], generator=gen)
        hidden = hidden.to(device=device, dtype=dtype)
        tensors = {"encoder_hidden_states": hidden}
        if config.get("addition_embed_type") == "text_time":  # pooled text embedding + six size ids
            pooled_width = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
            time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=dtype, device=device)
            pooled = torch.randn(1, pooled_width, generator=gen).to(device=device, dtype=dtype)
            tensors |= {"text_embeds": pooled, "time_ids": time_ids}
        backbone.override_conditioning(size, Conditioning(tensors))
    return backbone
