"""Fixtures of the evaluation tests: tiny datasets written in their real layouts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from zeroseg.registry import register_method, unregister_method

from . import toy_method as toy_method_module
from .fakes import quadrant_image, write_png


@pytest.fixture
def quadrant_folder(tmp_path: Path) -> Path:
    """A ``folder`` dataset of 5 quadrant images (32x32) with class-id labels 0-3, ignore 255."""
    root = tmp_path / "quadrants"
    orders = [(0, 1, 2, 3), (1, 0, 3, 2), (2, 3, 0, 1), (3, 2, 1, 0), (0, 0, 1, 1)]
    for i, order in enumerate(orders):
        image, labels = quadrant_image(order)
        labels = labels.copy()
        labels[0, :4] = 255  # a few ignored pixels
        write_png(root / "images" / f"img{i}.png", image)
        write_png(root / "labels" / f"img{i}.png", labels)
    return root


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the user's cache folder."""
    monkeypatch.setenv("ZEROSEG_CACHE", str(tmp_path / "zeroseg-cache"))


@pytest.fixture
def toy_method() -> Iterator[str]:
    """The toy third method registered for the test (and removed afterwards); its name."""
    register_method(toy_method_module.SPEC)
    toy_method_module.QuadrantSegmenter.captured[0] = 0
    yield toy_method_module.NAME
    unregister_method(toy_method_module.NAME)
