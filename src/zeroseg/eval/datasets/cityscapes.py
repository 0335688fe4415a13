"""Cityscapes-27: the 27 classes of labelIds 7..33 (DiffSeg/DiffCut ``cityscapes_27_mapping``), val 500 images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zeroseg.eval.datasets.base import Sample, SegmentationDataset, list_files, lookup_table, read_metadata
from zeroseg.eval.datasets.registry import register_dataset

CITYSCAPES_27_CLASSES = (
    "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge", "tunnel",
    "pole", "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky", "person", "rider",
    "car", "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle",
)  # fmt: skip


@register_dataset
class Cityscapes27(SegmentationDataset):
    """Cityscapes with 27 classes; labelIds outside 7..33 (and 255) are ignored."""

    name = "cityscapes-27"
    display_name = "Cityscapes-27"
    splits = ("val", "train", "test")
    default_split = "val"
    layout = (
        "Expected `<root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png` and "
        "`<root>/gtFine/<split>/<city>/*_gtFine_labelIds.png` (leftImg8bit_trainvaltest.zip, "
        "gtFine_trainvaltest.zip)."
    )
    num_classes = 27
    class_names = CITYSCAPES_27_CLASSES

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        table = read_metadata("cityscapes27_mapping.json")["label_id_to_class"]
        self._table = lookup_table({int(k): int(v) for k, v in table.items()})
        super().__init__(root, split)

    def find_samples(self) -> list[Sample]:
        image_root = self.root / "leftImg8bit" / self.split
        samples: list[Sample] = []
        cities = sorted(p for p in image_root.iterdir() if p.is_dir()) if image_root.is_dir() else []
        for city in cities:
            images = [p for p in list_files(city, (".png",)) if p.stem.endswith("_leftImg8bit")]
            label_dir = self.root / "gtFine" / self.split / city.name
            samples += self.pair_by_stem(images, label_dir, "_gtFine_labelIds.png", image_suffix="_leftImg8bit")
        return samples

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        return self._table[np.clip(raw, 0, 255)]
