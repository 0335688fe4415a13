"""Latents, noise, conditioning, captured attention and features of the tiny models, pinned bit for bit.

The pins (``pinned_outputs.json``) were written from the backbone code before the family adapters existed, so
any refactor of loading, encoding or capture must reproduce them exactly. They depend on the float kernels (torch
build, CPU vendor and instruction set, see :mod:`pin_machine`), so they are kept per machine key and compared only
where this machine's were recorded; record them (on a new kind of machine, or after a deliberate change) with
``PYTHONPATH=tests python tests/backbones/test_pinned_outputs.py --write``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from pin_machine import float_kernels_key, pins_for_this_machine

PINS = Path(__file__).with_name("pinned_outputs.json")
SIZE = 128


def _digest(value: torch.Tensor) -> str:
    tensor = value.detach().contiguous().cpu()
    header = f"{tuple(tensor.shape)}|{tensor.dtype}|".encode()
    return hashlib.sha256(header + tensor.numpy().tobytes()).hexdigest()


def _state_digest(module: torch.nn.Module) -> str:
    hasher = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        hasher.update(name.encode() + _digest(tensor).encode())
    return hasher.hexdigest()


def outputs(backbone) -> dict[str, str]:
    """Digest of everything the backbone hands to the methods, for one seeded batch of two images.

    Runs on one thread: CPU float reductions split over threads are not bit-reproducible across thread counts.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _outputs(backbone)
    finally:
        torch.set_num_threads(threads)


def _outputs(backbone) -> dict[str, str]:
    from zeroseg.backbones import (
        add_noise,
        capture_features,
        capture_self_attention,
        empty_prompt_conditioning,
        encode_images,
    )

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, SIZE, SIZE, generator=generator)
    latents = encode_images(backbone, images)
    noisy = add_noise(backbone, latents, 50, seed=3)
    conditioning = empty_prompt_conditioning(backbone, 2, SIZE)
    added = dict(conditioning.per_image)
    hidden = added.pop("encoder_hidden_states")
    digests = {"latents": _digest(latents), "noisy": _digest(noisy), "hidden": _digest(hidden)}
    for name, value in sorted(added.items()):
        digests[f"added.{name}"] = _digest(value)
    for side, probs in sorted(capture_self_attention(backbone, latents, 300, conditioning).items()):
        digests[f"attention.{side}"] = _digest(probs)
    digests["features"] = _digest(capture_features(backbone, noisy, 50, conditioning))
    digests["alphas_cumprod"] = _digest(backbone.schedule.alphas_cumprod)
    digests["unet"] = _state_digest(backbone.denoiser)
    digests["vae"] = _state_digest(backbone.vae)
    for i, encoder in enumerate(backbone.text_encoders):
        digests[f"text_encoder.{i}"] = _state_digest(encoder)
    return digests


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_backbone_outputs_equal_the_pins_bit_for_bit(family, request):
    pins = pins_for_this_machine(json.loads(PINS.read_text()))
    backbone = request.getfixturevalue(f"{family}_backbone")
    assert outputs(backbone) == pins[family]


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    from zeroseg.backbones import load_backbone
    from zeroseg.testing import make_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        pins = {
            family: outputs(load_backbone(str(make_tiny_model(Path(tmp) / family, family))))
            for family in ("sd", "sdxl")
        }
    recorded = json.loads(PINS.read_text()) if PINS.exists() else {}
    recorded[float_kernels_key()] = pins
    PINS.write_text(json.dumps(recorded, indent=2) + "\n")
