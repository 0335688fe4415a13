"""A toy third segmentation method, registered from inside the test suite to show how a method plugs in.

``capture`` average-pools the image to an 8x8 colour grid; ``segment_capture`` labels each cell by its dominant
channel when that channel exceeds ``tau``, else 3 ("dark"), and upsamples with nearest. No backbone is loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError
from zeroseg.options import setting
from zeroseg.registry import MethodSpec
from zeroseg.segmenter import Segmenter

NAME = "quadrants"


@dataclass(frozen=True)
class QuadrantConfig:
    """Settings of the toy method, declared as every method's are."""

    model: str = setting("toy-pooling", "Name of the (backbone-free) model, part of the capture key.", capture=True)
    image_size: int = setting(32, "Side of the square the toy sees.", flag="size", capture=True)
    tau: float = setting(0.5, "Channel value above which a cell takes its dominant colour.")

    def __post_init__(self) -> None:
        if not self.tau > 0:
            raise ConfigError(f"must be positive (got {self.tau})", setting="tau")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class QuadrantSegmenter(Segmenter):
    """The toy method: a Segmenter subclass that needs no diffusion backbone."""

    method = NAME
    config_class = QuadrantConfig
    captured: ClassVar[list[int]] = [0]
    """Images captured by every instance (the backbone-pass count a cache must keep low)."""

    def __init__(self, model: str | None = None, *, config: Any = None, device: Any = "cpu", **settings: Any) -> None:
        if model is not None:
            settings["model"] = model
        self.config = replace(config or QuadrantConfig(), **settings)
        self.num_backbone_passes = 0

    def capture_key(self) -> dict[str, Any]:
        return {"method": self.method, "model": self.config.model, "image_size": self.image_size}

    def capture(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        self.captured[0] += images.shape[0]
        return [{"features": p.clone()} for p in F.adaptive_avg_pool2d(images, 8)]

    def segment_capture(
        self, capture: dict[str, torch.Tensor], *, output_size: tuple[int, int], image: torch.Tensor | None = None
    ) -> torch.Tensor:
        top, labels = capture["features"].max(dim=0)
        labels = torch.where(top > self.config.tau, labels, torch.full_like(labels, 3))
        return F.interpolate(labels[None, None].float(), size=output_size, mode="nearest")[0, 0].long()


SPEC = MethodSpec(
    name=NAME,
    segmenter=f"{__name__}:QuadrantSegmenter",
    config=f"{__name__}:QuadrantConfig",
    summary="Toy: dominant colour of an 8x8 grid (tests only).",
    protocol="diffseg",
)
