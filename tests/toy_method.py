"""A toy third method, registered from inside the test suite: it must work in every front end untouched.

``toy`` captures the UNet input latent of the tiny backbone and cuts the image into ``stripes`` vertical bands
by the latent column (planted, known answer: band k covers columns [k W / n, (k+1) W / n)).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from zeroseg.errors import ConfigError
from zeroseg.options import setting
from zeroseg.registry import MethodSpec, register_method, unregister_method
from zeroseg.segmenter import Segmenter
from zeroseg.validation import check_capture_settings


@dataclass(frozen=True)
class ToyConfig:
    """Settings of the toy method."""

    model: str = setting("tiny", "Model folder.", capture=True)
    image_size: int = setting(64, "Side of the square the model sees.", flag="size", capture=True)
    timestep: int = setting(10, "UNet timestep.", capture=True)
    stripes: int = setting(3, "Number of vertical bands.", ui=True)

    def __post_init__(self) -> None:
        check_capture_settings(self.image_size, self.timestep)
        if self.stripes < 1:
            raise ConfigError(f"must be at least 1 (got {self.stripes})", setting="stripes")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Toy(Segmenter):
    """Vertical bands; the capture is the VAE latent (one real backbone call per batch)."""

    method = "toy"
    config_class = ToyConfig

    @torch.inference_mode()
    def capture(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        latents, _ = self.denoiser_inputs(images, noise_seed=None)
        return [{"latent": latent.float().cpu()} for latent in latents]

    def segment_capture(self, capture, *, output_size, image=None) -> torch.Tensor:
        height, width = output_size
        columns = torch.arange(width) * self.config.stripes // width
        return columns.expand(height, width).clone()


SPEC = MethodSpec(
    name="toy",
    segmenter=f"{__name__}:Toy",
    config=f"{__name__}:ToyConfig",
    summary="Toy bands (tests only).",
    protocol="diffseg",
    baselines=("kmeans-c",),
)


@contextlib.contextmanager
def toy_method_registered() -> Iterator[MethodSpec]:
    """Register ``toy`` for the duration of the block."""
    register_method(SPEC, replace=True)
    try:
        yield SPEC
    finally:
        unregister_method("toy")
