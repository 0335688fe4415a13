"""Evaluation protocols (how images and labels are prepared) and presets reproducing the papers' tables.

- DiffSeg (``benchmarks.ipynb``): centre square crop of side min(H, W); image bilinear to 512 (no antialias);
  labels nearest (TF half-pixel = ``nearest-exact``) to 512; evaluation at 512.
- DiffCut (``eval_diffcut.py``, ``dataloader/iterator.py``): centre square crop of side min(H, W) - 1; image
  bilinear to 1024; labels ``nearest-exact`` to 1024 then ``nearest`` to 128; evaluation at 128; background
  merge, then PAMR on the image bilinearly downsampled to 128.
- Open vocabulary (DiffCut ``eval_diffcut_openvoc.py``): the method's own crop and input size, segments and
  labels at 1024, PAMR there (15 iterations, dilations 1..64), classes from CLIP, per-image IoU; see
  :mod:`zeroseg.eval.open_vocabulary`.

Paper presets run the methods with ``exact_reference=True``: the published numbers came from the official code,
so a preset keeps its numerics (and the dataset quirks the official loaders have) to reproduce them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError
from zeroseg.eval.datasets.base import IGNORE
from zeroseg.image import resize
from zeroseg.refine.stage import Refinement


@dataclass(frozen=True)
class Protocol:
    """How one method is evaluated.

    Attributes:
        name: protocol name (``diffseg``, ``diffcut`` or ``open-vocabulary``).
        crop_margin: the centre square has side ``min(H, W) - crop_margin`` (0 DiffSeg, 1 DiffCut).
        input_size: side the image is resized to before the backbone; ``None`` = the segmenter's ``image_size``.
        eval_divisor: evaluation side = input side // eval_divisor (1 DiffSeg: 512; 8 DiffCut: 128).
        label_steps: resizes applied to the cropped labels: ``"input"`` (nearest-exact to the input side) and/or
            ``"eval"`` (to the evaluation side with :attr:`eval_label_mode`).
        eval_label_mode: interpolation of the last label resize (``nearest-exact`` or ``nearest``).
        background_merge: run the many-to-one background merge on datasets with a background class.
        refinement: PAMR settings for methods that do not refine themselves, when an evaluation asks for
            refinement (a self-refining method follows its own ``pamr*`` settings). Refinement runs at the
            evaluation size, after the background merge.
    """

    name: str
    crop_margin: int = 0
    input_size: int | None = None
    eval_divisor: int = 1
    label_steps: tuple[str, ...] = ("eval",)
    eval_label_mode: str = "nearest-exact"
    background_merge: bool = True
    refinement: Refinement = Refinement()

    def __post_init__(self) -> None:
        if self.crop_margin < 0:
            raise ConfigError(f"`crop_margin` must be >= 0, got {self.crop_margin}")
        if self.eval_divisor < 1:
            raise ConfigError(f"`eval_divisor` must be >= 1, got {self.eval_divisor}")
        if self.eval_label_mode not in ("nearest", "nearest-exact"):
            raise ConfigError(f"`eval_label_mode` must be nearest or nearest-exact, got {self.eval_label_mode!r}")

    def sizes(self, image_size: int) -> tuple[int, int]:
        """``(input side, evaluation side)`` for a segmenter whose backbone sees ``image_size``."""
        side = self.input_size or image_size
        return side, max(1, side // self.eval_divisor)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {**dataclasses.asdict(self), "refinement": self.refinement.to_dict()}


PROTOCOLS: dict[str, Protocol] = {
    "diffseg": Protocol(name="diffseg", crop_margin=0, eval_divisor=1, label_steps=("eval",)),
    "diffcut": Protocol(
        name="diffcut",
        crop_margin=1,
        eval_divisor=8,
        label_steps=("input", "eval"),
        eval_label_mode="nearest",
    ),
}


OPEN_VOCABULARY = "open-vocabulary"
OPEN_VOCABULARY_REFINEMENT = Refinement(iterations=15, dilations=(1, 2, 4, 8, 12, 24, 32, 64))
"""PAMR of the official open-vocabulary evaluation (``eval_diffcut_openvoc.py``)."""


def get_protocol(name: str) -> Protocol:
    """The protocol named ``name`` (``diffseg`` or ``diffcut``)."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"`protocol` must be one of {', '.join(PROTOCOLS)}, got {name!r}") from None


def method_protocol(method: str) -> Protocol:
    """The unsupervised protocol of a registered method (``MethodSpec.protocol``)."""
    from zeroseg.registry import get_method

    return get_protocol(get_method(method).protocol)


def open_vocabulary_protocol(method: str) -> Protocol:
    """The open-vocabulary protocol for ``method``: its own crop and input size, segments at the input side."""
    return Protocol(
        name=OPEN_VOCABULARY,
        crop_margin=method_protocol(method).crop_margin,
        eval_divisor=1,
        label_steps=("eval",),
        eval_label_mode="nearest-exact",
        background_merge=False,
        refinement=OPEN_VOCABULARY_REFINEMENT,
    )


def center_crop_square(array: np.ndarray, margin: int = 0) -> np.ndarray:
    """Centre square of side ``min(H, W) - margin`` of an ``(H, W, ...)`` array; offsets ``(H - c) // 2``."""
    h, w = array.shape[:2]
    side = min(h, w) - margin
    if side < 1:
        raise ConfigError(f"image of size {h}x{w} is too small for a centre crop with margin {margin}")
    top, left = (h - side) // 2, (w - side) // 2
    return array[top : top + side, left : left + side]


def resize_image(image: torch.Tensor, side: int) -> torch.Tensor:
    """Bilinear resize (half-pixel centres, no antialias) of a ``(3, H, W)`` float image to ``(3, side, side)``."""
    if image.shape[-2:] == (side, side):
        return image
    return resize(image, (side, side))


def resize_labels(labels: np.ndarray, side: int, mode: str) -> np.ndarray:
    """Nearest resize (``nearest`` or ``nearest-exact``) of an ``(H, W)`` int map to ``(side, side)``."""
    if labels.shape == (side, side):
        return labels
    t = torch.from_numpy(labels.astype(np.float32))[None, None]
    return F.interpolate(t, size=(side, side), mode=mode)[0, 0].numpy().astype(np.int64)


def prepare_image(image: np.ndarray, protocol: Protocol, input_side: int) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> cropped ``(3, S, S)`` float in [0, 1] at the input side."""
    crop = center_crop_square(image, protocol.crop_margin)
    tensor = torch.from_numpy(np.array(crop, copy=True)).permute(2, 0, 1).float() / 255.0
    return resize_image(tensor, input_side)


def prepare_labels(labels: np.ndarray, protocol: Protocol, input_side: int, eval_side: int) -> np.ndarray:
    """Crop and resize an ``(H, W)`` class map the way the protocol does; ignore stays :data:`IGNORE`."""
    out = center_crop_square(labels, protocol.crop_margin)
    if "input" in protocol.label_steps:
        out = resize_labels(out, input_side, "nearest-exact")
    if "eval" in protocol.label_steps:
        out = resize_labels(out, eval_side, protocol.eval_label_mode)
    return np.where(out < 0, IGNORE, out)


@dataclass(frozen=True)
class Preset:
    """One row of a paper table: method, dataset, protocol and method settings.

    Attributes:
        method: ``diffseg`` or ``diffcut``.
        dataset: dataset name (:func:`zeroseg.eval.datasets.list_datasets`).
        protocol: protocol name.
        settings: method settings passed to ``create_segmenter``.
        dataset_options: options of the dataset loader (e.g. the official label quirks).
        open_vocabulary: for ``protocol="open-vocabulary"``, the
            :class:`~zeroseg.eval.open_vocabulary.OpenVocabularyOptions` fields it sets.
        source: where the setting and the published numbers come from.
    """

    method: str
    dataset: str
    protocol: str
    settings: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    open_vocabulary: dict[str, Any] | None = None


_EXACT = {"exact_reference": True}
"""Method setting of every paper preset: the official code's numerics, which produced the published numbers."""
_DIFFCUT_PAMR = {"tau": 0.5, "alpha": 10, "pamr": True, "pamr_iters": 10, "pamr_dilations": (1, 2, 4, 8), **_EXACT}
_DIFFCUT_TABLE = {
    # dataset: (dataset options, mIoU with PAMR (Tab. 1), mIoU without PAMR (Tab. 2/5))
    "voc": ({"exact_reference": True}, 65.2, 62.0),
    "context": ({}, 56.5, 54.1),
    "coco-object": ({}, 34.1, 32.0),
    "coco-stuff-27": ({}, 49.1, 46.1),
    "cityscapes-27": ({}, 30.6, 28.4),
    "ade20k": ({"exact_reference": True}, 44.3, 42.4),
}
_OPEN_VOCABULARY_TABLE = {
    # dataset: (dataset options, per-image mIoU (Tab. 4))
    "voc": ({"exact_reference": True}, 63.0),
    "context": ({}, 24.6),
    "coco-object": ({}, 36.0),
}
_SHORT = {"coco-stuff-27": "coco", "cityscapes-27": "cityscapes", "coco-object": "coco-object"}


def _build_presets() -> dict[str, Preset]:
    presets = {
        "diffseg-coco": Preset(
            method="diffseg",
            dataset="coco-stuff-27",
            protocol="diffseg",
            settings={"kl_threshold": 1.1, "refine": False, **_EXACT},
            source="DiffSeg paper Tab. 1 (mIoU 43.6, pixel accuracy 72.5); benchmarks.ipynb (tau 1.1, no refine, 512)",
        ),
        "diffseg-cityscapes": Preset(
            method="diffseg",
            dataset="cityscapes-27",
            protocol="diffseg",
            settings={"kl_threshold": 0.9, "refine": False, **_EXACT},
            source="DiffSeg paper Tab. 1 (mIoU 21.2, pixel accuracy 76.0); benchmarks.ipynb comment (tau 0.9; the "
            "logged run used 1.1)",
        ),
    }
    for dataset, (options, with_pamr, without_pamr) in _DIFFCUT_TABLE.items():
        short = _SHORT.get(dataset, dataset)
        presets[f"diffcut-{short}"] = Preset(
            method="diffcut",
            dataset=dataset,
            protocol="diffcut",
            settings=dict(_DIFFCUT_PAMR),
            dataset_options=dict(options),
            source=f"DiffCut paper Tab. 1 (mIoU {with_pamr}; SSD-1B, tau 0.5, alpha 10, + PAMR)",
        )
        presets[f"diffcut-{short}-nopamr"] = Preset(
            method="diffcut",
            dataset=dataset,
            protocol="diffcut",
            settings={**_DIFFCUT_PAMR, "pamr": False},
            dataset_options=dict(options),
            source=f"DiffCut paper Tab. 2/5 (mIoU {without_pamr}; SSD-1B, tau 0.5, alpha 10, without PAMR)",
        )
    for dataset, (options, reported) in _OPEN_VOCABULARY_TABLE.items():
        presets[f"diffcut-{dataset}-openvocab"] = Preset(
            method="diffcut",
            dataset=dataset,
            protocol=OPEN_VOCABULARY,
            settings={"tau": 0.5, "alpha": 10, **_EXACT},
            dataset_options=dict(options),
            source=f"DiffCut paper Tab. 4 (per-image mIoU {reported}); eval_diffcut_openvoc.py (SSD-1B, tau 0.5, "
            "alpha 10, segments at 1024, PAMR 15 iterations, CLIP convnext_large_d_320 without mean/std "
            "normalisation)",
            open_vocabulary={"exact_reference": True},
        )
    return presets


PRESETS: dict[str, Preset] = _build_presets()


def get_preset(name: str) -> Preset:
    """The preset named ``name`` (see :data:`PRESETS`)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"`preset` must be one of {', '.join(sorted(PRESETS))}, got {name!r}") from None
