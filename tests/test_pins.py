"""Label maps pinned from the code before the pipeline existed: every front end must reproduce them bit for bit.

The digests were computed with the original ``Segmenter.segment_batch`` on the tiny random-weight models (CPU,
float32, torch 2.13) and must not change when code moves. PAMR-free settings keep the pins independent of
refinement speed work; a PAMR pin covers the refined path at a size below its working-resolution bound.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pin_machine import float_kernels_key, pins_for_this_machine
from zeroseg.registry import create_segmenter

CASES = {
    "diffseg": ("sd", {"image_size": 128}),
    "diffseg-fine": ("sd", {"image_size": 128, "noise": True, "kl_threshold": 1e-4, "anchors": 8}),
    "diffseg-refine": ("sd", {"image_size": 128, "noise": True, "kl_threshold": (1e-4, 1e-3, 1e-3), "refine": True}),
    "diffseg-exact": ("sd", {"image_size": 128, "noise": True, "kl_threshold": 1e-4, "exact_reference": True}),
    "diffcut-nopamr": ("sdxl", {"image_size": 128, "pamr": False, "tau": 0.9}),
    "diffcut-pamr": ("sdxl", {"image_size": 128, "pamr_iters": 3, "pamr_dilations": (1, 2), "tau": 0.9}),
    "diffcut-exact": ("sdxl", {"image_size": 128, "pamr": False, "tau": 0.9, "exact_reference": True}),
}
PINS = Path(__file__).with_name("pinned_labels.json")
"""Label-map digests per float-kernel machine (see :mod:`pin_machine`)."""


def pinned(case: str) -> list[str]:
    """The pinned digests of ``case`` for this machine's float kernels (the test skips where there are none)."""
    return pins_for_this_machine(json.loads(PINS.read_text()))[case]


def pin_image(height: int = 96, width: int = 136, seed: int = 3) -> np.ndarray:
    """Four colour quadrants with seeded noise: a non-square image with known structure."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2, : width // 2] = (220, 30, 30)
    image[: height // 2, width // 2 :] = (30, 200, 40)
    image[height // 2 :, : width // 2] = (30, 40, 210)
    image[height // 2 :, width // 2 :] = (230, 230, 40)
    return np.clip(image.astype(int) + rng.integers(-25, 25, image.shape), 0, 255).astype(np.uint8)


def digest(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int32).tobytes()).hexdigest()[:16]


def pinned_segmenter(case: str, request: pytest.FixtureRequest):
    family = CASES[case][0]
    return _segmenter(case, request.getfixturevalue(f"{family}_backbone"))


def _segmenter(case: str, backbone):
    return create_segmenter(case.split("-")[0], model=backbone.model, backbone=backbone, **CASES[case][1])


@pytest.mark.parametrize("case", sorted(CASES))
def test_segment_batch_reproduces_the_pinned_label_maps(case, request):
    segmenter = pinned_segmenter(case, request)
    results = segmenter.segment_batch([pin_image(), pin_image(80, 80, seed=4)])
    assert [digest(r.labels) for r in results] == pinned(case)


if __name__ == "__main__" and "--write" in sys.argv:  # record this machine's pins (after a deliberate change)
    import tempfile

    from zeroseg.backbones import load_backbone
    from zeroseg.testing import make_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        backbones = {f: load_backbone(str(make_tiny_model(Path(tmp) / f, f))) for f in ("sd", "sdxl")}
        images = [pin_image(), pin_image(80, 80, seed=4)]
        digests = {
            case: [digest(r.labels) for r in _segmenter(case, backbones[family]).segment_batch(images)]
            for case, (family, _) in sorted(CASES.items())
        }
    recorded = json.loads(PINS.read_text()) if PINS.exists() else {}
    recorded[float_kernels_key()] = digests
    PINS.write_text(json.dumps(recorded, indent=2) + "\n")
