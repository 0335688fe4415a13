"""Checks of settings shared by both methods (kept free of torch so the command line starts fast)."""

from __future__ import annotations

from zeroseg.errors import ConfigError

# What every registered family's image sides are a multiple of, checked before any model is loaded: the greatest
# common divisor of the families' default latent divisors (sd: 64, sdxl: 32, sd3 / flux / pixart: 16), so no size
# a family accepts is refused early. A loaded backbone checks its own, exact divisor (``Backbone.check_image_size``).
CONFIG_TIME_LATENT_DIVISOR = 16
TRAINING_TIMESTEPS = 1000
"""Training timesteps of every registered family (a loaded backbone checks its own schedule)."""


def check_image_size(image_size: int, divisor: int, *, model: str | None = None) -> None:
    """Raise :class:`ConfigError` unless ``image_size`` is a positive multiple of ``divisor``."""
    if image_size < divisor or image_size % divisor:
        which = f" for model `{model}`" if model else ""
        raise ConfigError(
            f"must be a multiple of {divisor}, at least {divisor}{which} (got {image_size})", setting="image_size"
        )


def check_capture_settings(image_size: int | None, timestep: int | None) -> None:
    """Raise :class:`ConfigError` for an image size no denoiser can take or a timestep outside training (``None``:
    the model's default, checked once the model is known)."""
    if image_size is not None:
        check_image_size(image_size, CONFIG_TIME_LATENT_DIVISOR)
    if timestep is not None and not 0 <= timestep < TRAINING_TIMESTEPS:
        raise ConfigError(f"must be in [0, {TRAINING_TIMESTEPS - 1}] (got {timestep})", setting="timestep")
