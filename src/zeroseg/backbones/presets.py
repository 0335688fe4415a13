"""Short names for the Stable Diffusion family models zeroseg is known to work with."""

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
}


def resolve_model(name: str) -> str:
    """Return the hub id for a short name (``"ssd1b"``), or ``name`` unchanged (hub id or local path)."""
    return MODEL_ALIASES.get(name.lower(), name) if name else name
