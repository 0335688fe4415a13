"""ADE20K (SceneParsing, 150 classes), val 2000 images, raw ``annotations/`` PNGs (0 = other, 1-150)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zeroseg.errors import DatasetError
from zeroseg.eval.datasets.base import IGNORE, Sample, SegmentationDataset, first_existing, list_files
from zeroseg.eval.datasets.registry import register_dataset

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)  # fmt: skip


@register_dataset
class ADE20K(SegmentationDataset):
    """ADE20K with 150 classes.

    Args:
        root: the folder holding ``ADEChallengeData2016`` (or that folder itself).
        split: ``val`` (default, ``validation/``) or ``train`` (``training/``).
        exact_reference: score like DiffCut (``label < 150`` on the raw values): raw 0 ("other") is class 0 and
            the last class (raw 150, "flag") is ignored. By default raw 0 is ignored and raw 1-150 become
            classes 0-149.
    """

    name = "ade20k"
    display_name = "ADE20K"
    splits = ("val", "train")
    default_split = "val"
    layout = (
        "Expected `<root>/ADEChallengeData2016/images/{training,validation}/*.jpg` and "
        "`<root>/ADEChallengeData2016/annotations/{training,validation}/*.png` (ADEChallengeData2016.zip)."
    )
    num_classes = 150

    def __init__(self, root: str | Path, split: str | None = None, *, exact_reference: bool = False) -> None:
        self.exact_reference = exact_reference
        self.class_names = ("other", *ADE20K_CLASSES[:149]) if exact_reference else ADE20K_CLASSES
        super().__init__(root, split)

    def find_samples(self) -> list[Sample]:
        base = first_existing([self.root / "ADEChallengeData2016"]) or self.root
        folder = {"val": "validation", "train": "training"}[self.split]
        image_dir, label_dir = base / "images" / folder, base / "annotations" / folder
        if not image_dir.is_dir() or not label_dir.is_dir():
            raise DatasetError(f"{self.display_name}: {image_dir} or {label_dir} not found. {self.layout}")
        return self.pair_by_stem(list_files(image_dir, (".jpg",)), label_dir, ".png")

    def settings(self) -> dict[str, object]:
        return {**super().settings(), "exact_reference": self.exact_reference}

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        if self.exact_reference:
            return np.where((raw >= 0) & (raw < 150), raw, IGNORE)
        return np.where((raw >= 1) & (raw <= 150), raw - 1, IGNORE)
