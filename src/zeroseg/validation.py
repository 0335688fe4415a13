"""Checks of settings shared by both methods (kept free of torch so the command line starts fast)."""

from __future__ import annotations

from zeroseg.errors import ConfigError


def check_capture_settings(image_size: int, timestep: int) -> None:
    """Raise :class:`ConfigError` for an image size the UNet cannot take or a timestep outside training."""
    if image_size < 64 or image_size % 64:
        raise ConfigError(f"must be a multiple of 64, at least 64 (got {image_size})", setting="image_size")
    if not 0 <= timestep < 1000:
        raise ConfigError(f"must be in [0, 999] (got {timestep})", setting="timestep")
