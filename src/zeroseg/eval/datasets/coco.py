"""COCO-Stuff-27 and COCO-Object: COCO val2017 images with the COCO-Stuff 164k label PNGs.

Both use the curated list of 2175 val2017 images (IIC/PiCIE/STEGO; DiffSeg ``Coco164kFull_Stuff_Coarse_7.txt``,
DiffCut ``dataloader/coco``). Labels come from ``stuffthingmaps_trainval2017`` (fine ids 0-181, 255 unlabelled):

- COCO-Stuff-27: fine -> 27 coarse classes (``fine_to_coarse_dict.pickle``), 255 -> ignore.
- COCO-Object: thing ids -> 80 classes, everything else (stuff and 255) -> background, the 81st class
  (``coco_object_mapping.pickle``; DiffCut issue #3 confirms the COCO-Stuff PNGs are used).
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
    lookup_table,
    read_metadata,
)
from zeroseg.eval.datasets.registry import register_dataset

# Coarse index order of the fine_to_coarse table (PiCIE/STEGO order: things, then stuff).
COCO_STUFF_27_CLASSES = (
    "electronic", "appliance", "food-things", "furniture-things", "indoor", "kitchen", "accessory", "animal",
    "outdoor", "person", "sports", "vehicle", "ceiling", "floor", "food-stuff", "furniture-stuff",
    "rawmaterial", "textile", "wall", "window", "building", "ground", "plant", "sky", "solid", "structural",
    "water",
)  # fmt: skip

COCO_THING_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

_LAYOUT = (
    "Expected COCO val2017 images in `<root>/val2017/*.jpg` (or `<root>/images/val2017/`) and the COCO-Stuff "
    "label PNGs in `<root>/stuffthingmaps_trainval2017/val2017/*.png` (or `<root>/annotations/val2017/`, "
    "`<root>/annotation_val2017/`), as unpacked from val2017.zip and stuffthingmaps_trainval2017.zip."
)


def curated_image_ids() -> list[str]:
    """The 2175 image ids of the curated COCO-Stuff-27 evaluation list."""
    return list(read_metadata("cocostuff27_curated_val_ids.txt"))


class _CocoStuffBase(SegmentationDataset):
    splits = ("curated", "val")
    default_split = "curated"
    layout = _LAYOUT

    def find_samples(self) -> list[Sample]:
        image_dir = first_existing([self.root / "val2017", self.root / "images" / "val2017"])
        label_dir = first_existing(
            [
                self.root / "stuffthingmaps_trainval2017" / "val2017",
                self.root / "annotations" / "val2017",
                self.root / "annotation_val2017",
                self.root / "stuffthingmaps" / "val2017",
            ]
        )
        if image_dir is None or label_dir is None:
            what = "image folder" if image_dir is None else "label folder"
            raise DatasetError(f"{self.display_name}: no {what} under {self.root}. {self.layout}")
        if self.split == "val":
            return self.pair_by_stem(list_files(image_dir, (".jpg",)), label_dir, ".png")
        samples, missing = [], []
        listed = curated_image_ids()
        for image_id in listed:
            image, label = image_dir / f"{image_id}.jpg", label_dir / f"{image_id}.png"
            if image.is_file() and label.is_file():
                samples.append(Sample(id=image_id, image_path=image, label_paths=(label,)))
            else:
                missing.append(image if not image.is_file() else label)
        if missing:
            raise DatasetError(
                f"{self.display_name}: {len(missing)} of the {len(listed)} curated images are missing, "
                f"e.g. {missing[0]}. {self.layout}"
            )
        return samples


@register_dataset
class CocoStuff27(_CocoStuffBase):
    """COCO-Stuff-27 (27 coarse classes), curated 2175 val2017 images by default."""

    name = "coco-stuff-27"
    display_name = "COCO-Stuff-27"
    num_classes = 27
    class_names = COCO_STUFF_27_CLASSES

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        table = read_metadata("cocostuff27_fine_to_coarse.json")["fine_index_to_coarse_index"]
        self._table = lookup_table({int(k): int(v) for k, v in table.items()})
        super().__init__(root, split)

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        return self._table[np.clip(raw, 0, 255)]


@register_dataset
class CocoObject(_CocoStuffBase):
    """COCO-Object: 80 thing classes plus background (index 80), from the COCO-Stuff label PNGs."""

    name = "coco-object"
    display_name = "COCO-Object"
    num_classes = 81
    class_names = (*COCO_THING_CLASSES, "background")
    background_class = 80

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        table = read_metadata("coco_object_mapping.json")["fine_index_to_object_index"]
        mapped = {int(k): (int(v) if int(v) < 80 else 80) for k, v in table.items()}
        self._table = lookup_table(mapped, default=80)
        super().__init__(root, split)

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        out = self._table[np.clip(raw, 0, 255)]
        return np.where(out == IGNORE, 80, out)
