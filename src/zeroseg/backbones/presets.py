"""Short names for the models zeroseg is known to work with, and the family each belongs to."""

from __future__ import annotations

# Short name -> Hugging Face hub id. Any other hub id or local folder works too.
MODEL_ALIASES: dict[str, str] = {
    "sd14": "CompVis/stable-diffusion-v1-4",
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd21": "stabilityai/stable-diffusion-2-1",
    "sd-turbo": "stabilityai/sd-turbo",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "sdxl-turbo": "stabilityai/sdxl-turbo",
    "ssd1b": "segmind/SSD-1B",
    "vega": "segmind/Segmind-Vega",
    "sd3-medium": "stabilityai/stable-diffusion-3-medium-diffusers",
    "sd35-medium": "stabilityai/stable-diffusion-3.5-medium",
    "sd35-large": "stabilityai/stable-diffusion-3.5-large",
    "flux-schnell": "black-forest-labs/FLUX.1-schnell",
    "flux-dev": "black-forest-labs/FLUX.1-dev",
    "pixart-sigma": "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
}

ALIAS_FAMILIES: dict[str, str] = {
    **dict.fromkeys(("sd14", "sd15", "sd21", "sd-turbo"), "sd"),
    **dict.fromkeys(("sdxl", "sdxl-turbo", "ssd1b", "vega"), "sdxl"),
    **dict.fromkeys(("sd3-medium", "sd35-medium", "sd35-large"), "sd3"),
    **dict.fromkeys(("flux-schnell", "flux-dev"), "flux"),
    "pixart-sigma": "pixart",
}
"""The backbone family of each short name (``zeroseg models`` groups by it)."""

MODEL_DEFAULTS: dict[str, dict[str, dict[str, tuple[object, str]]]] = {}
"""Hub id -> method -> setting -> ``(value, source)``, for a model whose defaults differ from its family's."""


def resolve_model(name: str) -> str:
    """Return the hub id for a short name (``"ssd1b"``), or ``name`` unchanged (hub id or local path)."""
    return MODEL_ALIASES.get(name.lower(), name) if name else name
