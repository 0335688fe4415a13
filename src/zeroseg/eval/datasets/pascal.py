"""Pascal VOC 2012 (21 classes) and Pascal Context (60 classes), both with a background class.

Background is the **last** class index (20 for VOC, 59 for Context), as in DiffCut's loaders where background
(-1) becomes ``N-1``; the many-to-one background merge (:mod:`zeroseg.eval.background`) uses it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zeroseg.errors import DatasetError
from zeroseg.eval.datasets.base import (
    IGNORE,
    Sample,
    SegmentationDataset,
    first_existing,
    list_files,
)
from zeroseg.eval.datasets.registry import register_dataset

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

CONTEXT_59_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building",
    "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog",
    "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike",
    "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves",
    "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall",
    "water", "window", "wood",
)  # fmt: skip


@register_dataset
class PascalVOC(SegmentationDataset):
    """Pascal VOC 2012 segmentation, val 1449 images; 20 object classes + background (index 20).

    The label PNGs are palette images whose indices are the class ids (0 background, 1-20 objects, 255 void).

    Args:
        root: the folder holding ``VOCdevkit`` (or ``VOCdevkit`` itself, or ``VOC2012``).
        split: ``val`` (default) or ``train``.
        exact_reference: score the void boundary pixels (255) as background, as DiffCut's FC-CLIP-prepared
            labels do (needed to reproduce the paper); by default they are ignored.
    """

    name = "voc"
    display_name = "Pascal VOC 2012"
    splits = ("val", "train")
    default_split = "val"
    layout = (
        "Expected `<root>/VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, "
        "ImageSets/Segmentation/<split>.txt}` as unpacked from VOCtrainval_11-May-2012.tar."
    )
    num_classes = 21
    class_names = (*VOC_CLASSES, "background")
    background_class = 20

    def __init__(self, root: str | Path, split: str | None = None, *, exact_reference: bool = False) -> None:
        self.exact_reference = exact_reference
        super().__init__(root, split)

    def find_samples(self) -> list[Sample]:
        base = first_existing([self.root / "VOCdevkit" / "VOC2012", self.root / "VOC2012"]) or self.root
        split_file = base / "ImageSets" / "Segmentation" / f"{self.split}.txt"
        if not split_file.is_file():
            raise DatasetError(f"{self.display_name}: split file {split_file} not found. {self.layout}")
        samples, missing = [], []
        for image_id in split_file.read_text().split():
            image = base / "JPEGImages" / f"{image_id}.jpg"
            label = base / "SegmentationClass" / f"{image_id}.png"
            if image.is_file() and label.is_file():
                samples.append(Sample(id=image_id, image_path=image, label_paths=(label,)))
            else:
                missing.append(label if image.is_file() else image)
        if missing:
            raise DatasetError(
                f"{self.display_name}: {len(missing)} images of {split_file.name} are missing, e.g. {missing[0]}. "
                f"{self.layout}"
            )
        return samples

    def settings(self) -> dict[str, object]:
        return {**super().settings(), "exact_reference": self.exact_reference}

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        out = np.where((raw >= 1) & (raw <= 20), raw - 1, IGNORE)
        out = np.where(raw == 0, 20, out)
        if self.exact_reference:
            out = np.where(raw == 255, 20, out)
        return out


@register_dataset
class PascalContext(SegmentationDataset):
    """Pascal Context, 59 classes + background (index 59), VOC2010 val 5105 images.

    Uses the labels prepared with the Detail API by FC-CLIP's ``prepare_pascal_ctx_sem_seg.py`` (as DiffCut):
    PNGs with values 0-58 and 255 for background.
    """

    name = "context"
    display_name = "Pascal Context"
    splits = ("val", "train")
    default_split = "val"
    layout = (
        "Expected `<root>/pascal_ctx_d2/images/<split>/*.jpg` and "
        "`<root>/pascal_ctx_d2/annotations_ctx59/<split>/*.png` (values 0-58, 255 = background), the output "
        "of FC-CLIP's datasets/prepare_pascal_ctx_sem_seg.py on VOC2010 + trainval_merged.json."
    )
    num_classes = 60
    class_names = (*CONTEXT_59_CLASSES, "background")
    background_class = 59

    def find_samples(self) -> list[Sample]:
        base = first_existing([self.root / "pascal_ctx_d2"]) or self.root
        image_dir = base / "images" / self.split
        label_dir = base / "annotations_ctx59" / self.split
        if not image_dir.is_dir() or not label_dir.is_dir():
            raise DatasetError(f"{self.display_name}: {image_dir} or {label_dir} not found. {self.layout}")
        return self.pair_by_stem(list_files(image_dir), label_dir, ".png")

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        return np.where((raw >= 0) & (raw <= 58), raw, 59)
