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

_SD3 = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 192,
}
_FLUX = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "axes_dims_rope": (16, 56, 56),
}
TRANSFORMER_ARCHITECTURES: dict[str, dict[str, Any]] = {
    # The released transformer/config.json of each model (diffusers layout).
    "sd3-medium": _SD3,
    "sd35-medium": {
        **_SD3,
        "pos_embed_max_size": 384,
        "dual_attention_layers": tuple(range(13)),
        "qk_norm": "rms_norm",
    },
    "sd35-large": {
        **_SD3,
        "num_layers": 38,
        "num_attention_heads": 38,
        "caption_projection_dim": 2432,
        "qk_norm": "rms_norm",
    },
    "flux-schnell": {**_FLUX, "guidance_embeds": False},
    "flux-dev": {**_FLUX, "guidance_embeds": True},
    "pixart-sigma": {
        "sample_size": 128,
        "num_layers": 28,
        "patch_size": 2,
        "attention_head_dim": 72,
        "num_attention_heads": 16,
        "in_channels": 4,
        "out_channels": 8,
        "cross_attention_dim": 1152,
        "caption_channels": 4096,
        "attention_bias": True,
        "activation_fn": "gelu-approximate",
        "num_embeds_ada_norm": 1000,
        "norm_type": "ada_norm_single",
        "norm_elementwise_affine": False,
        "norm_eps": 1e-6,
        "interpolation_scale": 2,
        "use_additional_conditions": False,
    },
}
TEXT_TOKENS = {"sd3": 154, "flux-schnell": 256, "flux-dev": 512, "pixart": 300}
"""Tokens of the empty-prompt conditioning of each transformer family (FLUX: per model)."""

VAE_CONFIGS = {
    "sd": {"scaling_factor": 0.18215},
    "sdxl": {"scaling_factor": 0.13025},
    "pixart": {"scaling_factor": 0.13025},  # the SDXL VAE
    "sd3": {"scaling_factor": 1.5305, "shift_factor": 0.0609, "latent_channels": 16, "use_quant_conv": False},
    "flux": {"scaling_factor": 0.3611, "shift_factor": 0.1159, "latent_channels": 16, "use_quant_conv": False},
}
"""How each family's released VAE differs from :data:`VAE_ARCHITECTURE` (16-channel VAEs have no quant convs)."""

ARCHITECTURE_FAMILY = {
    "sd14": "sd",
    "sdxl": "sdxl",
    "ssd1b": "sdxl",
    **{name: name.split("-")[0].replace("sd35", "sd3") for name in TRANSFORMER_ARCHITECTURES},
}
"""The backbone family of each architecture in :data:`UNET_ARCHITECTURES` and :data:`TRANSFORMER_ARCHITECTURES`."""

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


def real_architecture_denoiser(name: str, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
    """A randomly initialised denoiser with a released model's architecture: a UNet (:data:`UNET_ARCHITECTURES`) or
    a transformer (:data:`TRANSFORMER_ARCHITECTURES`)."""
    if name in UNET_ARCHITECTURES:
        return real_architecture_unet(name, dtype=dtype, seed=seed)
    import diffusers

    from zeroseg.backbones.families import get_family

    cls = getattr(diffusers, get_family(ARCHITECTURE_FAMILY[name]).transformer_class)
    torch.manual_seed(seed)
    model = cls(**TRANSFORMER_ARCHITECTURES[name]).eval().requires_grad_(False)
    return model if dtype == torch.float32 else model.to(dtype)


def real_architecture_backbone(
    name: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    image_sizes: tuple[int, ...] = (512, 768, 1024),
    seed: int = 0,
) -> Any:
    """A :class:`~zeroseg.backbones.Backbone` with a released model's denoiser and VAE, randomly initialised.

    ``name`` is a key of :data:`UNET_ARCHITECTURES` or :data:`TRANSFORMER_ARCHITECTURES`. The text encoders are
    left out: their one output, the empty-prompt conditioning, is set to random tensors of the released widths for
    each of ``image_sizes`` (the pipeline computes it once per model anyway). Everything else (VAE encoding in
    float32, noising, the denoiser pass and the methods) runs as with the released weights, so the pipeline's
    timings are the model's.
    """
    from diffusers import AutoencoderKL

    from zeroseg.backbones.backbone import Backbone
    from zeroseg.backbones.schedule import ddpm_schedule, flow_schedule
    from zeroseg.backbones.tiny_parts import SCHEDULER

    family = ARCHITECTURE_FAMILY[name]
    device = torch.device(device)
    denoiser = real_architecture_denoiser(name, dtype=dtype, seed=seed).to(device)
    vae = AutoencoderKL(**{**VAE_ARCHITECTURE, **VAE_CONFIGS[family]}).eval().requires_grad_(False).to(device)
    schedule = flow_schedule({}) if family in ("sd3", "flux") else ddpm_schedule(SCHEDULER)
    backbone = Backbone(
        model=f"random-weights:{name}",
        family=family,
        denoiser=denoiser,
        vae=vae,
        tokenizers=[],
        text_encoders=[],
        schedule=schedule,
        device=device,
        dtype=dtype,
    )
    gen = torch.Generator().manual_seed(seed)
    for size in image_sizes:
        conditioning = _random_conditioning(name, family, denoiser.config, size, gen, device=device, dtype=dtype)
        backbone.override_conditioning(size, conditioning)
    return backbone


def _random_conditioning(
    name: str, family: str, config: Any, size: int, gen: torch.Generator, *, device: torch.device, dtype: torch.dtype
) -> Any:
    """Random empty-prompt conditioning of the released widths and token counts (batch of one)."""
    from zeroseg.backbones.families import Conditioning

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    if family in ("sd", "sdxl"):
        tensors = {"encoder_hidden_states": randn(1, PROMPT_TOKENS, config["cross_attention_dim"])}
        if config.get("addition_embed_type") == "text_time":  # pooled text embedding + six size ids
            pooled_width = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
            time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=dtype, device=device)
            tensors |= {"text_embeds": randn(1, pooled_width), "time_ids": time_ids}
        return Conditioning(tensors)
    if family == "sd3":
        tokens, width = TEXT_TOKENS["sd3"], config["joint_attention_dim"]
        return Conditioning(
            {
                "encoder_hidden_states": randn(1, tokens, width),
                "pooled_projections": randn(1, config["pooled_projection_dim"]),
            }
        )
    if family == "flux":
        tokens = TEXT_TOKENS[name] if name in TEXT_TOKENS else 256
        per_image = {
            "encoder_hidden_states": randn(1, tokens, config["joint_attention_dim"]),
            "pooled_projections": randn(1, config["pooled_projection_dim"]),
        }
        if config["guidance_embeds"]:
            per_image["guidance"] = torch.full((1,), 3.5, device=device)
        return Conditioning(per_image, {"txt_ids": torch.zeros(tokens, 3, device=device, dtype=dtype)})
    tokens = TEXT_TOKENS["pixart"]
    mask = torch.zeros(1, tokens, dtype=torch.long, device=device)
    mask[0, 0] = 1
    return Conditioning(
        {"encoder_hidden_states": randn(1, tokens, config["caption_channels"]), "encoder_attention_mask": mask}
    )
