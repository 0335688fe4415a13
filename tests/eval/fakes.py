"""Test helpers: a fake segmenter with the segmenter protocol and synthetic quadrant images."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# Quadrant colours and their classes: red 0, green 1, blue 2, black 3.
COLOURS = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [10, 10, 10]], dtype=np.uint8)


@dataclass(frozen=True)
class FakeConfig:
    """Settings of :class:`FakeSegmenter` (a stand-in with the segmenter protocol)."""

    tau: float = 0.5
    pamr: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FakeSegmenter:
    """Implements the segmenter protocol with a cheap, exactly predictable clustering.

    ``capture`` average-pools the image to an 8x8 colour grid ("features"); ``segment_capture`` labels each cell
    by its dominant channel when that channel exceeds ``tau``, else 3 ("dark"), and upsamples with nearest.
    ``capture_dtype`` is the dtype of the captured grid (a backbone running in half or bfloat16 precision).
    """

    def __init__(self, method: str = "diffseg", config: FakeConfig | None = None, image_size: int = 32,
                 calls: list[int] | None = None, capture_dtype: torch.dtype = torch.float32) -> None:  # fmt: skip
        self.method = method
        self.config = config or FakeConfig()
        self.image_size = image_size
        self.calls = calls if calls is not None else [0]
        self.capture_dtype = capture_dtype

    def capture(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        assert images.shape[1:] == (3, self.image_size, self.image_size)
        self.calls[0] += images.shape[0]
        pooled = F.adaptive_avg_pool2d(images, 8)
        return [{"features": p.to(self.capture_dtype, copy=True)} for p in pooled]

    def capture_key(self) -> dict[str, Any]:
        dtype = str(self.capture_dtype).replace("torch.", "")
        return {"model": "fake", "image_size": self.image_size, "method": self.method, "dtype": dtype}

    def segment_capture(
        self, capture: dict[str, torch.Tensor], *, output_size: tuple[int, int], image: torch.Tensor | None = None
    ) -> torch.Tensor:
        feats = capture["features"]
        top, labels = feats.max(dim=0)
        labels = torch.where(top > self.config.tau, labels, torch.full_like(labels, 3))
        up = F.interpolate(labels[None, None].float(), size=output_size, mode="nearest")
        return up[0, 0].long()

    def with_config(self, **overrides: Any) -> FakeSegmenter:
        config = dataclasses.replace(self.config, **overrides)
        return FakeSegmenter(self.method, config, self.image_size, self.calls, self.capture_dtype)


def quadrant_image(order: tuple[int, int, int, int], size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image of four coloured quadrants (classes ``order`` TL, TR, BL, BR) and its class map."""
    half = size // 2
    labels = np.zeros((size, size), dtype=np.uint8)
    labels[:half, :half], labels[:half, half:] = order[0], order[1]
    labels[half:, :half], labels[half:, half:] = order[2], order[3]
    return COLOURS[labels], labels


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if mode == "P":
        img = img.convert("P")
    img.save(path)
