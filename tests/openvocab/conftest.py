"""Fixtures for open-vocabulary tests: a tiny random open_clip model with a ConvNeXt tower, built offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_MODEL_NAME = "zeroseg-tiny-convnext"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {
        "timm_model_name": "convnext_atto",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "mlp",
        "timm_drop": 0.0,
        "image_size": 64,
    },
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def open_clip():
    """The open_clip module, or a skip when the ``clip`` extra is not installed."""
    from zeroseg.errors import MissingDependencyError
    from zeroseg.openvocab.clip_model import import_open_clip

    try:
        return import_open_clip()
    except MissingDependencyError as exc:
        pytest.skip(f"open_clip unavailable: {exc}")


@pytest.fixture(scope="session")
def tiny_clip(open_clip):
    """A seeded random CLIP (ConvNeXt-atto tower, 1-layer text tower, 16-d embeddings) and open_clip's tokenizer."""
    from open_clip.model import CLIP

    from zeroseg.openvocab.clip_model import ClipModel

    torch.manual_seed(0)
    model = CLIP(**TINY_CONFIG).eval()
    tokenizer = open_clip.get_tokenizer("convnext_large_d_320")  # bundled BPE vocabulary: offline
    return ClipModel(model=model, tokenizer=tokenizer, name=TINY_MODEL_NAME, pretrained=None)


@pytest.fixture(scope="session")
def tiny_checkpoint(open_clip, tiny_clip, tmp_path_factory) -> Path:
    """The tiny model's config registered with open_clip and its weights saved to a local file."""
    folder = tmp_path_factory.mktemp("tiny_clip")
    config_path = folder / f"{TINY_MODEL_NAME}.json"
    config_path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config_path)
    weights = folder / "tiny_clip.bin"
    torch.save(tiny_clip.model.state_dict(), weights)
    return weights


@pytest.fixture(scope="session")
def tiny_vit_clip(open_clip):
    """A tiny random CLIP with a ViT visual tower (no dense ConvNeXt features)."""
    from open_clip.model import CLIP

    torch.manual_seed(0)
    return CLIP(
        embed_dim=16,
        vision_cfg={"layers": 1, "width": 32, "head_width": 16, "patch_size": 16, "image_size": 32},
        text_cfg=TINY_CONFIG["text_cfg"],
    ).eval()
