"""One local Ray for the whole test session (2 CPUs, no dashboard), and a small generated image collection."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

NUM_IMAGES = 24
SIZE = 64
PIPELINE = {"method": "diffseg", "image_size": SIZE, "device": "cpu"}


@pytest.fixture(scope="session")
def ray_session():
    """Ray started once for the session on this machine; shut down at the end."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``photos/`` with NUM_IMAGES small images of several sizes (some in a subfolder), ``broken/`` with two
    files that are not images."""
    root = tmp_path_factory.mktemp("collection")
    photos = root / "photos"
    (photos / "more").mkdir(parents=True)
    rng = np.random.default_rng(7)
    for index in range(NUM_IMAGES):
        height, width = (SIZE, SIZE) if index % 3 else (48, 80)
        pixels = _blocks(rng, height, width)
        folder = photos / "more" if index % 4 == 0 else photos
        Image.fromarray(pixels).save(folder / f"img{index:02d}.png")
    broken = root / "broken"
    broken.mkdir()
    (broken / "notes.png").write_bytes(b"these are not pixels")
    good = photos / "img01.png"
    (broken / "cut.png").write_bytes(good.read_bytes()[:60])
    return root


@pytest.fixture(scope="session")
def pipeline_settings(tiny_sd_path: Path) -> dict:
    return {**PIPELINE, "model": str(tiny_sd_path)}


def _blocks(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A few flat-coloured rectangles with a little noise: something with segments in it."""
    pixels = np.zeros((height, width, 3), dtype=np.int16)
    for _ in range(4):
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        pixels[top : top + height // 2, left : left + width // 2] = rng.integers(0, 255, 3)
    pixels += rng.integers(-10, 10, pixels.shape, dtype=np.int16)
    return np.clip(pixels, 0, 255).astype(np.uint8)
