"""DiffCut's open-vocabulary evaluation protocol: class-id maps from segments, and targets to score.

Per image (spec §4): the image is the 1024² centre crop in [0, 1]; segments are predicted at 1024² (the
official code adds 1 to the ids and refines them with PAMR first; ids do not matter here); every segment
is named with CLIP, fed the 1024² image (COCO-Object: bilinearly upsampled to 2048²); every pixel gets its
segment's class. The ground truth is resized to 1024² with nearest-exact and shifted by +1 so that
background (-1) becomes class 0. The metric is multiclass IoU per image, averaged over images; the run
over a dataset (``zeroseg evaluate --open-vocabulary``) is :mod:`zeroseg.eval.open_vocabulary`.

References:
    DiffCut (Couairon et al., NeurIPS 2024), Tab. 4 and official ``eval_diffcut_openvoc.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError
from zeroseg.openvocab.naming import SegmentNamer, image_to_tensor

logger = logging.getLogger(__name__)

EVAL_SIZE = 1024
"""Side of the square at which predictions and targets are compared (official code)."""

CLIP_IMAGE_SIZE = {"voc": 1024, "context": 1024, "coco-object": 2048}
"""CLIP input side per benchmark: COCO-Object images are upsampled to 2048² (official code)."""


def predict_open_vocabulary(
    namer: SegmentNamer,
    image: Any,
    segment_labels: np.ndarray | torch.Tensor,
    *,
    size: int = EVAL_SIZE,
    clip_image_size: int | None = None,
) -> torch.Tensor:
    """Class-id map of one image: each pixel gets the class CLIP gives its segment.

    Args:
        namer: a :class:`SegmentNamer` whose vocabulary is the benchmark's (``voc``, ``context``,
            ``coco-object``: background = class 0).
        image: the evaluation image in [0, 1] (PIL, ``(H, W, 3)`` uint8 or ``(3, H, W)`` float); resized to
            ``size`` (bilinear) when it is not already ``size × size``.
        segment_labels: ``(h, w)`` integer segment ids; resized to ``size`` with nearest-exact if needed.
        size: evaluation side, 1024 (official code).
        clip_image_size: CLIP input side; default ``size`` (use :data:`CLIP_IMAGE_SIZE` per benchmark).

    Returns:
        ``(size, size)`` int64 class indices into ``namer.class_names``.

    Raises:
        ConfigError: ``segment_labels`` is not an (h, w) integer map with at least one segment.
    """
    labels = torch.as_tensor(
        np.asarray(segment_labels) if not isinstance(segment_labels, torch.Tensor) else segment_labels
    )
    if labels.ndim != 2 or labels.is_floating_point():
        raise ConfigError(f"`segment_labels` must be an (h, w) integer map; got {labels.dtype} {tuple(labels.shape)}")
    if tuple(labels.shape) != (size, size):
        labels = F.interpolate(labels[None, None].float(), size=(size, size), mode="nearest-exact")[0, 0].long()
    labels = labels.long() + 1  # official `pred += 1`: ids start at 1, no effect on naming
    pixels = image_to_tensor(image)
    if tuple(pixels.shape[-2:]) != (size, size):
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    array = labels.numpy()
    segment_ids, probabilities = namer.classify_segments(
        pixels[0], array, image_size=clip_image_size if clip_image_size is not None else size
    )
    if segment_ids.size == 0:
        raise ConfigError("`segment_labels` has no segment (every value is negative)")
    lookup = np.zeros(int(segment_ids.max()) + 1, dtype=np.int64)
    lookup[segment_ids] = probabilities.argmax(axis=1)
    prediction = np.where(array >= 0, lookup[np.clip(array, 0, None)], 0)
    return torch.from_numpy(prediction)


def prepare_open_vocabulary_target(target: np.ndarray | torch.Tensor, *, size: int = EVAL_SIZE) -> torch.Tensor:
    """Ground truth for open-vocabulary scoring: nearest-exact resize to ``size``, then ``+1`` (-1 → 0).

    Args:
        target: ``(H, W)`` integer labels with background pixels as -1 (dataset loaders' output).
        size: evaluation side, 1024 (official code).

    Returns:
        ``(size, size)`` int64 class indices matching a vocabulary with background at index 0.
    """
    labels = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target)
    if labels.ndim != 2:
        raise ConfigError(f"`target` must be an (H, W) label map; got shape {tuple(labels.shape)}")
    if tuple(labels.shape) != (size, size):
        labels = F.interpolate(labels[None, None].float(), size=(size, size), mode="nearest-exact")[0, 0]
    return labels.long() + 1
