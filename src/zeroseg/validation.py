"""Checks of settings shared by both methods (kept free of torch so the command line starts fast)."""

from __future__ import annotations

from zeroseg.errors import ConfigError

# Image sides every registered family's released models accept, checked before any model is loaded: the least
# common multiple of the families' default latent divisors (sd: 64, sdxl: 32). A loaded backbone checks its own,
# exact divisor (``Backbone.check_image_size``).
CONFIG_TIME_LATENT_DIVISOR = 64


def check_image_size(image_size: int, divisor: int, *, model: str | None = None) -> None:
    """Raise :class:`ConfigError` unless ``image_size`` is a positive multiple of ``divisor``."""
    if image_size < divisor or image_size % divisor:
        which = f" for model `{model}`" if model else ""
        raise ConfigError(
            f"must be a multiple of {divisor}, at least {divisor}{which} (got {image_size})", setting="image_size"
        )


def check_capture_settings(image_size: int, timestep: int) -> None:
    """Raise :class:`ConfigError` for an image size the UNet cannot take or a timestep outside training."""
    check_image_size(image_size, CONFIG_TIME_LATENT_DIVISOR)
    if not 0 <= timestep < 1000:
        raise ConfigError(f"must be in [0, 999] (got {timestep})", setting="timestep")
