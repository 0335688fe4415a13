"""Tiny random-weight models for tests, demos without downloads, and speed measurements.

``make_tiny_model`` writes a complete diffusers model folder (UNet, VAE, text encoder(s), tokenizer(s) with a
locally written vocabulary, scheduler) that ``load_backbone`` and ``zeroseg segment --model`` accept, fully
offline. ``real_architecture_unet`` builds a randomly initialised UNet with a released model's architecture:
speed does not depend on the weight values, so benchmarks use it.
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
