"""Open-vocabulary names for segments with CLIP (DiffCut's open-vocabulary extension, for any method).

Needs the optional ``clip`` extra (``pip install 'zeroseg[clip]'``): open_clip is imported lazily, only when a
model is loaded, and pycocotools only when masks are exported.
"""

from zeroseg.openvocab.clip_model import DEFAULT_MODEL_NAME, DEFAULT_PRETRAINED, ClipModel, load_clip_model
from zeroseg.openvocab.export import (
    decode_rle,
    draw_labelled_overlay,
    draw_overlay,
    encode_rle,
    name_and_export,
    segments_to_json,
)
from zeroseg.openvocab.naming import Segment, SegmentNamer, merge_same_label
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
    "Segment",
    "SegmentNamer",
    "Vocabulary",
    "decode_rle",
    "draw_labelled_overlay",
    "draw_overlay",
    "encode_rle",
    "list_vocabularies",
    "load_clip_model",
    "load_vocabulary",
    "merge_same_label",
    "name_and_export",
    "predict_open_vocabulary",
    "prepare_open_vocabulary_target",
    "resolve_vocabulary",
    "segments_to_json",
]
