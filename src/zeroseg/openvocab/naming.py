"""Naming segments with CLIP: one label and score per segment of a label map, and merging by label.

References:
    DiffCut (Couairon et al., NeurIPS 2024), Sec. 4.4 and official ``eval_diffcut_openvoc.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from zeroseg.errors import ConfigError, ImageError
from zeroseg.openvocab.clip_model import DEFAULT_MODEL_NAME, DEFAULT_PRETRAINED, ClipModel, load_clip_model
from zeroseg.openvocab.dense import check_convnext_tower, embed_segments, masks_from_labels
from zeroseg.openvocab.text import VILD_TEMPLATES, build_text_classifier, classify_embeddings, logit_scale_of
from zeroseg.openvocab.vocabularies import Vocabulary, resolve_vocabulary

logger = logging.getLogger(__name__)


@dataclass
class NamedSegment:
    """One segment of a label map with its class probabilities (what the namer computes).

    Attributes:
        segment_id: its value in the label map.
        label: display name of the best class.
        class_index: index of that class in the vocabulary.
        score: softmax probability of that class.
        area: number of pixels.
        bbox: ``(x, y, width, height)`` in pixels (COCO convention).
        probabilities: ``(N,)`` softmax over all classes of the vocabulary.
    """

    segment_id: int
    label: str
    class_index: int
    score: float
    area: int
    bbox: tuple[int, int, int, int]
    probabilities: np.ndarray = field(repr=False)


def image_to_tensor(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """PIL, ``(H, W, 3)`` uint8 or ``(3, H, W)`` / ``(1, 3, H, W)`` float in [0, 1] → ``(1, 3, H, W)``.

    Raises:
        ImageError: any other shape or type.
    """
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8:
            return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()
        image = torch.from_numpy(np.ascontiguousarray(image))
    if isinstance(image, torch.Tensor):
        tensor = image[None] if image.ndim == 3 else image
        if tensor.ndim == 4 and tensor.shape[0] == 1 and tensor.shape[1] == 3 and tensor.is_floating_point():
            return tensor.to(torch.float32)
    shape = getattr(image, "shape", None)
    raise ImageError(
        f"`image` must be a PIL image, an (H, W, 3) uint8 array or a (3, H, W) float tensor in [0, 1]; "
        f"got {type(image).__name__} with shape {shape}"
    )


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x, y, width, height)`` of the True pixels of an ``(H, W)`` mask (zeros when empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0, 0, 0, 0)
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def _check_labels(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ConfigError(f"`labels` must be an (H, W) integer label map; got dtype {array.dtype}, shape {array.shape}")
    return array


class SegmentNamer:
    """Names the segments of a label map with an open_clip model and a vocabulary.

    Each segment's dense ConvNeXt features are mask-pooled and projected into CLIP space, then compared with
    template-averaged text embeddings of every synonym (max over synonyms, softmax over classes).

    Image handling. The official code feeds the image in [0, 1] **without** CLIP's mean/std normalisation
    (``exact_reference=True`` keeps that). By default the image is normalised with the model's own mean/std,
    as the CLIP weights were trained on normalised pixels; the published open-vocabulary numbers were measured
    without it, so use ``exact_reference=True`` to reproduce them. The fixed default also pools segments that
    vanish on the stride-32 feature grid by area instead of pooling a zero vector.

    Args:
        model_name: open_clip model name; default ``convnext_large_d_320`` (official code).
        pretrained: open_clip tag, local checkpoint path, or ``None`` for random weights; default
            ``laion2b_s29b_b131k_ft_soup`` (official code).
        vocabulary: shipped vocabulary name (``voc``, ``context``, ``coco-object``, ``ade20k``,
            ``coco-stuff``, ``cityscapes``: the official lists), a class list (``"cat,dog,sky|clouds"`` or a list
            of strings; ``|`` separates synonyms), or a :class:`Vocabulary`.
        device: where CLIP runs (the loaded model's device when ``clip`` is given).
        add_background: for class lists, prepend a ``background`` class at index 0 (as for Context).
        templates: prompt templates; default the 14 ViLD templates.
        image_size: side of the square the image is resized to (bilinear) before CLIP; ``None`` keeps the
            image at the label map's size. Official evaluation: 1024 (2048 for COCO-Object).
        exact_reference: reproduce the official code's quirks (see above).
        clip: an already loaded :class:`ClipModel`; then ``model_name`` and ``pretrained`` are ignored.

    Raises:
        ConfigError: bad vocabulary, model name, or a non-ConvNeXt visual tower.
        WeightsNotFoundError: weights not in the cache and not downloadable.
        MissingDependencyError: open_clip is not installed.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL_NAME,
        pretrained: str | Path | None = DEFAULT_PRETRAINED,
        *,
        vocabulary: str | Sequence[str] | Vocabulary,
        device: str | torch.device = "cpu",
        add_background: bool = False,
        templates: Sequence[str] = VILD_TEMPLATES,
        image_size: int | None = None,
        exact_reference: bool = False,
        clip: ClipModel | None = None,
    ) -> None:
        if image_size is not None and (not isinstance(image_size, int) or image_size < 32):
            raise ConfigError(f"`image_size` must be an int >= 32 or None; got {image_size!r}")
        if not templates or any("{}" not in t for t in templates):
            raise ConfigError(f"`templates` must each contain '{{}}'; got {list(templates)!r}")
        self.vocabulary = resolve_vocabulary(vocabulary, add_background=add_background)
        self.clip = clip if clip is not None else load_clip_model(model_name, pretrained, device=device)
        check_convnext_tower(self.clip.model)
        self.device = torch.device(device) if clip is None else next(self.clip.model.parameters()).device
        self.templates = tuple(templates)
        self.image_size = image_size
        self.exact_reference = exact_reference

    @property
    def class_names(self) -> list[str]:
        """Display name of each class, index = class index."""
        return self.vocabulary.names

    def text_classifier(self):  # noqa: ANN201 - TextClassifier
        """The (cached) text classifier of this model and vocabulary."""
        return build_text_classifier(
            self.clip.model,
            self.clip.tokenizer,
            self.vocabulary,
            templates=self.templates,
            cache_key=self.clip.cache_key,
        )

    def prepare_pixels(self, image: Any, size: tuple[int, int], *, image_size: int | None = None) -> torch.Tensor:
        """Image → ``(1, 3, h, w)`` CLIP input.

        Resized to a square of ``image_size`` (default the namer's), or to ``size`` when neither is set;
        normalised with the model's mean/std unless ``exact_reference``.
        """
        pixels = image_to_tensor(image).to(self.device)
        side = image_size if image_size is not None else self.image_size
        target = (side, side) if side is not None else size
        if tuple(pixels.shape[-2:]) != tuple(target):
            pixels = F.interpolate(pixels, size=target, mode="bilinear", align_corners=False)
        if not self.exact_reference:
            visual = self.clip.model.visual
            mean = torch.tensor(getattr(visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073))
            std = torch.tensor(getattr(visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711))
            pixels = (pixels - mean.to(pixels)[None, :, None, None]) / std.to(pixels)[None, :, None, None]
        return pixels

    def classify_segments(
        self, image: Any, labels: np.ndarray | torch.Tensor, *, image_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities of every segment.

        Args:
            image: PIL image, ``(H, W, 3)`` uint8 or ``(3, H, W)`` float in [0, 1].
            labels: ``(H, W)`` integer label map; negative values are unlabelled and ignored.
            image_size: CLIP input side for this call (overrides the namer's ``image_size``).

        Returns:
            ``(Q,)`` segment ids (sorted) and ``(Q, N)`` class probabilities.
        """
        array = _check_labels(labels)
        segment_ids = np.unique(array)
        segment_ids = segment_ids[segment_ids >= 0]
        if segment_ids.size == 0:
            return segment_ids.astype(np.int64), np.zeros((0, self.vocabulary.num_classes), np.float32)
        classifier = self.text_classifier()
        with torch.inference_mode():
            pixels = self.prepare_pixels(image, array.shape, image_size=image_size)
            label_tensor = torch.from_numpy(array.astype(np.int64))
            masks = masks_from_labels(label_tensor, torch.from_numpy(segment_ids.astype(np.int64)))[None]
            embeddings = embed_segments(self.clip.model, pixels, masks, keep_small_segments=not self.exact_reference)[0]
            _, probabilities = classify_embeddings(embeddings, classifier, logit_scale=logit_scale_of(self.clip.model))
        return segment_ids.astype(np.int64), probabilities.float().cpu().numpy()

    def name_segments(self, image: Any, labels: np.ndarray | torch.Tensor) -> list[NamedSegment]:
        """Give every segment of ``labels`` a class name and score.

        Args:
            image: PIL image, ``(H, W, 3)`` uint8 or ``(3, H, W)`` float tensor in [0, 1].
            labels: ``(H, W)`` integer label map (e.g. ``SegmentationResult.labels``).

        Returns:
            One :class:`NamedSegment` per segment id, in increasing id order.
        """
        array = _check_labels(labels)
        segment_ids, probabilities = self.classify_segments(image, array)
        return segments_from_probabilities(array, segment_ids, probabilities, self.class_names)


def segments_from_probabilities(
    labels: np.ndarray, segment_ids: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> list[NamedSegment]:
    """Build :class:`NamedSegment` records from per-segment ``(Q, N)`` probabilities (argmax = label)."""
    segments = []
    for segment_id, probs in zip(segment_ids.tolist(), probabilities, strict=True):
        mask = labels == segment_id
        best = int(np.argmax(probs))
        segments.append(
            NamedSegment(
                segment_id=int(segment_id),
                label=class_names[best],
                class_index=best,
                score=float(probs[best]),
                area=int(mask.sum()),
                bbox=bounding_box(mask),
                probabilities=np.asarray(probs, dtype=np.float32),
            )
        )
    return segments


def merge_same_label(labels: np.ndarray, segments: Sequence[NamedSegment]) -> tuple[np.ndarray, list[NamedSegment]]:
    """Merge segments that got the same class into one segment per class.

    The merged segment's probabilities are the area-weighted mean of its parts; its score is that mean's
    value for the shared class. Ids are relabelled 0..K-1 in order of each class's first (smallest) id;
    negative (unlabelled) pixels stay as they are.

    Args:
        labels: ``(H, W)`` integer label map the segments describe.
        segments: output of :meth:`SegmentNamer.name_segments` for ``labels``.

    Returns:
        The new ``(H, W)`` int32 label map and its segments.
    """
    array = _check_labels(labels)
    known = {s.segment_id for s in segments}
    present = {int(v) for v in np.unique(array) if v >= 0}
    if present - known:
        raise ConfigError(f"`segments` do not describe segment ids {sorted(present - known)} found in `labels`")
    groups: dict[int, list[NamedSegment]] = {}
    for segment in sorted((s for s in segments if s.segment_id in present), key=lambda s: s.segment_id):
        groups.setdefault(segment.class_index, []).append(segment)
    lookup = {}
    for new_id, members in enumerate(groups.values()):
        for member in members:
            lookup[member.segment_id] = new_id
    merged = np.full(array.shape, -1, dtype=np.int64)
    for old_id, new_id in lookup.items():
        merged[array == old_id] = new_id
    negative = array < 0
    merged[negative] = array[negative]
    out = []
    for new_id, members in enumerate(groups.values()):
        areas = np.array([m.area for m in members], dtype=np.float64)
        probs = np.average(np.stack([m.probabilities for m in members]), axis=0, weights=np.maximum(areas, 1))
        mask = merged == new_id
        first = members[0]
        out.append(
            NamedSegment(
                segment_id=new_id,
                label=first.label,
                class_index=first.class_index,
                score=float(probs[first.class_index]),
                area=int(mask.sum()),
                bbox=bounding_box(mask),
                probabilities=probs.astype(np.float32),
            )
        )
    return merged.astype(np.int32), out
