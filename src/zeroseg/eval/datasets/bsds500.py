"""BSDS500: natural images with 4-9 human segmentations each (``groundTruth/<split>/*.mat``).

Region ids are per image and per annotator, not classes; evaluation matches each annotator's regions to the
predicted segments per image and reports the mean and the best over annotators.
"""

from __future__ import annotations

import numpy as np

from zeroseg.errors import DatasetError, ImageError
from zeroseg.eval.datasets.base import Sample, SegmentationDataset, first_existing, list_files
from zeroseg.eval.datasets.registry import register_dataset


@register_dataset
class BSDS500(SegmentationDataset):
    """BSDS500 (Berkeley Segmentation Dataset); default split ``test`` (200 images, the benchmark split)."""

    name = "bsds500"
    display_name = "BSDS500"
    splits = ("test", "val", "train")
    default_split = "test"
    multi_annotator = True
    layout = (
        "Expected `<root>/images/<split>/*.jpg` and `<root>/groundTruth/<split>/*.mat` (the `BSR/BSDS500/data` "
        "folder of BSR_bsds500.tgz; `<root>` may also be the folder holding `BSR`)."
    )

    def find_samples(self) -> list[Sample]:
        base = (
            first_existing([self.root / "BSR" / "BSDS500" / "data", self.root / "BSDS500" / "data", self.root])
            or self.root
        )
        image_dir, label_dir = base / "images" / self.split, base / "groundTruth" / self.split
        if not image_dir.is_dir() or not label_dir.is_dir():
            raise DatasetError(f"{self.display_name}: {image_dir} or {label_dir} not found. {self.layout}")
        return self.pair_by_stem(list_files(image_dir, (".jpg",)), label_dir, ".mat")

    def load_labels(self, sample: Sample) -> list[np.ndarray]:
        """One ``(H, W)`` region map per annotator, region ids from 0 (file ids start at 1)."""
        from scipy.io import loadmat

        try:
            cell = loadmat(str(sample.label_paths[0]))["groundTruth"]
        except (OSError, ValueError, KeyError) as exc:
            raise ImageError(f"cannot read BSDS ground truth {sample.label_paths[0]}: {exc}") from exc
        return [self.convert_label(np.asarray(entry["Segmentation"][0, 0])) for entry in cell.ravel()]

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        return raw.astype(np.int64) - 1
