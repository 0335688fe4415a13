"""Open-vocabulary names for segments with CLIP (DiffCut's open-vocabulary extension, for any method).

Needs the optional ``clip`` extra (``pip install 'zeroseg[clip]'``): open_clip is imported lazily, only when a
model is loaded. Writing named segments (JSON with COCO RLE masks, labelled overlays) is :mod:`zeroseg.writers`.
"""

from zeroseg.openvocab.clip_model import DEFAULT_MODEL_NAME, DEFAULT_PRETRAINED, ClipModel, load_clip_model
from zeroseg.openvocab.naming import NamedSegment, SegmentNamer, merge_same_label
from zeroseg.openvocab.protocol import (
    CLIP_IMAGE_SIZE,
    predict_open_vocabulary,
    prepare_open_vocabulary_target,
)
from zeroseg.openvocab.text import VILD_TEMPLATES
from zeroseg.openvocab.vocabularies import Vocabulary, list_vocabularies, load_vocabulary, resolve_vocabulary

__all__ = [
    "CLIP_IMAGE_SIZE",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_PRETRAINED",
    "VILD_TEMPLATES",
    "ClipModel",
    "NamedSegment",
    "SegmentNamer",
    "Vocabulary",
    "list_vocabularies",
    "load_clip_model",
    "load_vocabulary",
    "merge_same_label",
    "predict_open_vocabulary",
    "prepare_open_vocabulary_target",
    "resolve_vocabulary",
]
