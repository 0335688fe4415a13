"""The page's sample image, drawn in code (no binary file, no licence question): sky, sun, hills, a house."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SAMPLE_NAME = "sample-scene.png"


def draw_sample(width: int = 384, height: int = 288, *, seed: int = 0) -> Image.Image:
    """A small outdoor scene with a few clear regions and mild texture, for trying the page."""
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    sky = (np.array([90, 150, 230]) * (1 - rows) + np.array([200, 225, 250]) * rows).astype(np.float64)
    pixels = np.broadcast_to(sky, (height, width, 3)).copy()
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((int(width * 0.72), int(height * 0.08), int(width * 0.86), int(height * 0.27)), fill=(250, 215, 80))
    draw.ellipse((-width // 2, int(height * 0.55), width, int(height * 1.6)), fill=(70, 150, 60))
    draw.ellipse((width // 3, int(height * 0.62), int(width * 1.6), int(height * 1.7)), fill=(45, 115, 45))
    left, top = int(width * 0.18), int(height * 0.48)
    draw.rectangle((left, top, left + width // 4, top + height // 4), fill=(190, 70, 55))
    draw.polygon(
        [(left - 8, top), (left + width // 8, top - height // 6), (left + width // 4 + 8, top)], fill=(90, 50, 40)
    )
    draw.rectangle(
        (left + width // 10, top + height // 9, left + width // 10 + 18, top + height // 4), fill=(60, 40, 30)
    )
    noise = np.random.default_rng(seed).normal(0.0, 6.0, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, np.float64) + noise, 0, 255).astype(np.uint8))


def write_sample(folder: str | Path) -> Path:
    """Write the sample PNG into ``folder`` and return its path."""
    path = Path(folder) / SAMPLE_NAME
    draw_sample().save(path)
    return path
