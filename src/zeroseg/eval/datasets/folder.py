"""Any labelled folder: ``<root>/images/*`` with ``<root>/labels/<stem>.png`` class-id PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zeroseg.errors import ConfigError, DatasetError
from zeroseg.eval.datasets.base import IGNORE, Sample, SegmentationDataset, list_files, read_label_png
from zeroseg.eval.datasets.registry import register_dataset


@register_dataset
class LabelFolder(SegmentationDataset):
    """A generic dataset: images and one-channel label PNGs (pixel value = class id) matched by file stem.

    Args:
        root: folder holding ``images/`` and ``labels/`` (names configurable).
        split: only ``all``.
        ignore_value: label value left out of the metrics (default 255); values >= the number of classes are
            ignored too.
        class_names: optional class names, index = class id; their count sets the number of classes.
        num_classes: number of classes when no names are given; ``None`` scans the labels (max value + 1).
        image_dir: name of the image subfolder.
        label_dir: name of the label subfolder.
    """

    name = "folder"
    display_name = "Label folder"
    splits = ("all",)
    default_split = "all"
    layout = "Expected `<root>/images/*.{jpg,png,...}` and `<root>/labels/<same stem>.png` (one-channel class ids)."

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        *,
        ignore_value: int | None = 255,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        image_dir: str = "images",
        label_dir: str = "labels",
    ) -> None:
        self.ignore_value = ignore_value
        self.image_dir, self.label_dir = image_dir, label_dir
        self.layout = (
            f"Expected `<root>/{image_dir}/*.{{jpg,png,...}}` and `<root>/{label_dir}/<same stem>.png` "
            "(one-channel class ids)."
        )
        super().__init__(root, split)
        if isinstance(class_names, str):
            class_names = [class_names]
        if class_names:
            self.class_names = tuple(str(name) for name in class_names)
            if num_classes is not None and num_classes != len(self.class_names):
                raise ConfigError(
                    f"`num_classes` is {num_classes} but {len(self.class_names)} `class_names` were given"
                )
            num_classes = len(self.class_names)
        if num_classes is None:
            num_classes = self._scan_num_classes()
        if num_classes < 1:
            raise ConfigError(f"`num_classes` must be >= 1, got {num_classes}")
        self.num_classes = num_classes

    def find_samples(self) -> list[Sample]:
        image_dir, label_dir = self.root / self.image_dir, self.root / self.label_dir
        if not image_dir.is_dir() or not label_dir.is_dir():
            raise DatasetError(f"{self.display_name}: {image_dir} or {label_dir} not found. {self.layout}")
        return self.pair_by_stem(list_files(image_dir), label_dir, ".png")

    def _scan_num_classes(self) -> int:
        top = 0
        for sample in self.samples:
            raw = read_label_png(sample.label_paths[0])
            if self.ignore_value is not None:
                raw = raw[raw != self.ignore_value]
            top = max(top, int(raw.max()) + 1 if raw.size else 0)
        if top == 0:
            raise DatasetError(f"{self.display_name}: every label pixel under {self.root} is ignored")
        return top

    def settings(self) -> dict[str, object]:
        return {
            **super().settings(),
            "ignore_value": self.ignore_value,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
        }

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        keep = raw >= 0
        if self.ignore_value is not None:
            keep &= raw != self.ignore_value
        if self.num_classes is not None:
            keep &= raw < self.num_classes
        return np.where(keep, raw, IGNORE)
