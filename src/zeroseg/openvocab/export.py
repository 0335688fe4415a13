"""Writing named segments: a JSON file with COCO RLE masks, and an overlay with their names drawn on."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from zeroseg.errors import ConfigError, require
from zeroseg.openvocab.naming import Segment, SegmentNamer, image_to_tensor
from zeroseg.openvocab.naming import merge_same_label as merge_segments_by_label
from zeroseg.outputs import atomic_write, ensure_folder, make_overlay

logger = logging.getLogger(__name__)

OVERLAY_ALPHA = 0.5
"""Weight of the segment colours in the overlay."""


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of an ``(H, W)`` boolean mask: ``{"size": [H, W], "counts": str}`` (pycocotools)."""
    mask_utils = require("pycocotools.mask", "clip", "COCO RLE export")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_rle`: ``(H, W)`` bool mask."""
    mask_utils = require("pycocotools.mask", "clip", "COCO RLE export")
    counts = rle["counts"]
    return mask_utils.decode(
        {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    ).astype(bool)


def segments_to_json(
    segments: Sequence[Segment],
    labels: np.ndarray,
    destination: str | Path | None = None,
    *,
    class_names: Sequence[str] | None = None,
    num_alternatives: int = 3,
) -> dict[str, Any]:
    """Serialise named segments: label, score, area, bbox, COCO RLE mask, and the best alternatives.

    Args:
        segments: named segments of ``labels``.
        labels: ``(H, W)`` integer label map.
        destination: JSON file to write; ``None`` only returns the dict.
        class_names: the vocabulary's names (for alternatives); without them no alternatives are listed.
        num_alternatives: how many runner-up classes to list per segment.

    Returns:
        ``{"height", "width", "segments": [{"id", "label", "class_index", "score", "area", "bbox",
        "segmentation", "alternatives"}]}``; ``bbox`` is ``[x, y, width, height]``.
    """
    array = np.asarray(labels)
    if array.ndim != 2:
        raise ConfigError(f"`labels` must be an (H, W) label map; got shape {array.shape}")
    records = []
    for segment in segments:
        record: dict[str, Any] = {
            "id": segment.segment_id,
            "label": segment.label,
            "class_index": segment.class_index,
            "score": round(float(segment.score), 6),
            "area": segment.area,
            "bbox": list(segment.bbox),
            "segmentation": encode_rle(array == segment.segment_id),
        }
        if class_names is not None and num_alternatives > 0:
            order = np.argsort(-segment.probabilities)
            record["alternatives"] = [
                {"label": class_names[i], "score": round(float(segment.probabilities[i]), 6)}
                for i in order[1 : num_alternatives + 1]
            ]
        records.append(record)
    document = {"height": int(array.shape[0]), "width": int(array.shape[1]), "segments": records}
    if destination is not None:
        path = Path(destination)
        ensure_folder(path.parent)
        with atomic_write(path) as temp:
            temp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        logger.info("Wrote %d named segments to %s", len(records), path)
    return document


def label_anchor(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the most interior pixel of a mask (maximum of the distance transform)."""
    padded = np.pad(mask, 1)
    distance = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def _to_rgb_array(image: Any, shape: tuple[int, int]) -> np.ndarray:
    pixels = image_to_tensor(image)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    rgb = Image.fromarray((pixels * 255).round().astype(np.uint8))
    if rgb.size != (shape[1], shape[0]):
        rgb = rgb.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(rgb)


def draw_overlay(image: Any, labels: np.ndarray, *, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """The standard overlay (:func:`zeroseg.outputs.make_overlay`: palette colours and boundaries) of the image
    resized to the label map; pixels with a negative label stay clear."""
    array = np.asarray(labels)
    rgb = _to_rgb_array(image, array.shape)
    valid = array >= 0
    overlay = np.asarray(make_overlay(Image.fromarray(rgb), np.where(valid, array, 0), alpha=alpha)).copy()
    overlay[~valid] = rgb[~valid]
    return Image.fromarray(overlay)


def draw_labelled_overlay(
    image: Any, labels: np.ndarray, names: dict[int, str] | Sequence[str], *, alpha: float = OVERLAY_ALPHA
) -> Image.Image:
    """Overlay with each segment's name written at its most interior point on a dark box.

    Args:
        image: PIL image, ``(H, W, 3)`` uint8 or ``(3, H, W)`` float in [0, 1].
        labels: ``(H, W)`` integer label map.
        names: name per segment id (dict, or a list indexed by id).
        alpha: colour weight of the overlay.

    Returns:
        RGB image of the label map's size.
    """
    array = np.asarray(labels)
    overlay = draw_overlay(image, array, alpha=alpha)
    draw = ImageDraw.Draw(overlay)
    font = ImageFont.load_default()
    lookup = dict(names) if isinstance(names, dict) else dict(enumerate(names))
    height, width = array.shape
    for segment_id, name in lookup.items():
        mask = array == segment_id
        if not mask.any() or not name:
            continue
        x, y = label_anchor(mask)
        left, top, right, bottom = draw.textbbox((0, 0), name, font=font)
        text_w, text_h = right - left, bottom - top
        x0 = int(np.clip(x - text_w // 2, 0, max(width - text_w - 2, 0)))
        y0 = int(np.clip(y - text_h // 2, 0, max(height - text_h - 2, 0)))
        draw.rectangle((x0 - 1, y0 - 1, x0 + text_w + 2, y0 + text_h + 2), fill=(0, 0, 0))
        draw.text((x0 - left + 1, y0 - top + 1), name, fill=(255, 255, 255), font=font)
    return overlay


def name_and_export(
    result_labels: np.ndarray,
    image: Any,
    namer: SegmentNamer,
    out_stem: str | Path,
    *,
    merge_same_label: bool = False,
) -> tuple[np.ndarray, list[Segment]]:
    """Name the segments of one image and write ``<stem>.json`` and ``<stem>_labelled.jpg``.

    Args:
        result_labels: ``(H, W)`` integer label map (``SegmentationResult.labels``).
        image: the segmented image (resized to the label map for drawing).
        namer: the :class:`SegmentNamer` to use.
        out_stem: output path without extension.
        merge_same_label: merge segments that get the same class before writing.

    Returns:
        The (possibly merged) label map and its named segments.
    """
    labels = np.asarray(result_labels)
    segments = namer.name_segments(image, labels)
    if merge_same_label:
        labels, segments = merge_segments_by_label(labels, segments)
    stem = Path(out_stem)
    segments_to_json(segments, labels, stem.with_name(stem.name + ".json"), class_names=namer.class_names)
    overlay = draw_labelled_overlay(image, labels, {s.segment_id: s.label for s in segments})
    with atomic_write(stem.with_name(stem.name + "_labelled.jpg")) as temp:
        overlay.save(temp, format="JPEG", quality=92)
    return labels, segments
