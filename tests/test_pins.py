"""Label maps pinned from the code before the pipeline existed: every front end must reproduce them bit for bit.

The digests were computed with the original ``Segmenter.segment_batch`` on the tiny random-weight models (CPU,
float32, torch 2.13) and must not change when code moves. PAMR-free settings keep the pins independent of
refinement speed work; a PAMR pin covers the refined path at a size below its working-resolution bound.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

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
PINNED = {
    "diffcut-exact": ["b28d9b380fbc6f19", "2678da8b775a5f91"],
    "diffcut-nopamr": ["6ed754c7ef8ab9c6", "0c2d6d4f862ae4ab"],
    "diffcut-pamr": ["759eb87ef6bd5697", "bea1951ca07e445e"],
    "diffseg": ["9137697d70dfc21a", "c65206769723a13a"],
    "diffseg-exact": ["7b2758d4546f2101", "b88fcbb2ef36345c"],
    "diffseg-fine": ["9b230c9daf0f8d28", "9c4b45c0c8c29277"],
    "diffseg-refine": ["601211d9be7461c9", "a6900a7709096efd"],
}


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
    family, settings = CASES[case]
    backbone = request.getfixturevalue(f"{family}_backbone")
    method = case.split("-")[0]
    return create_segmenter(method, model=backbone.model, backbone=backbone, **settings)


@pytest.mark.parametrize("case", sorted(CASES))
def test_segment_batch_reproduces_the_pinned_label_maps(case, request):
    segmenter = pinned_segmenter(case, request)
    results = segmenter.segment_batch([pin_image(), pin_image(80, 80, seed=4)])
    assert [digest(r.labels) for r in results] == PINNED[case]
