"""zeroseg: zero-shot, unsupervised image segmentation from pretrained Stable Diffusion models.

Two methods read what a diffusion UNet already knows about an image: DiffSeg (Tian et al., CVPR 2024) merges
self-attention maps, DiffCut (Couairon et al., NeurIPS 2024) cuts the encoder's feature graph recursively.
Names are imported lazily, so ``import zeroseg`` (and ``zeroseg --help``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zeroseg._lazy import lazy_exports
from zeroseg._version import __version__

_LAZY = {
    "DiffSeg": "zeroseg.diffseg.segmenter",
    "DiffSegConfig": "zeroseg.diffseg.config",
    "DiffCut": "zeroseg.diffcut.segmenter",
    "DiffCutConfig": "zeroseg.diffcut.config",
    "SegmentationResult": "zeroseg.types",
    "Segment": "zeroseg.types",
    "Pipeline": "zeroseg.pipeline",
    "build_pipeline": "zeroseg.pipeline",
    "create_segmenter": "zeroseg.registry",
    "list_methods": "zeroseg.registry",
    "load_backbone": "zeroseg.backbones.loading",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from zeroseg.backbones.loading import load_backbone
    from zeroseg.diffcut.config import DiffCutConfig
    from zeroseg.diffcut.segmenter import DiffCut
    from zeroseg.diffseg.config import DiffSegConfig
    from zeroseg.diffseg.segmenter import DiffSeg
    from zeroseg.pipeline import Pipeline, build_pipeline
    from zeroseg.registry import create_segmenter, list_methods
    from zeroseg.types import Segment, SegmentationResult


__getattr__ = lazy_exports(__name__, _LAZY)
