"""Dataset base class: image/label pairs read from a dataset's own on-disk layout.

Every loader returns labels as int64 class maps with :data:`IGNORE` (-1) for pixels that are not scored, after
the dataset's label mapping (e.g. COCO-Stuff fine ids -> 27 coarse classes). Datasets with several human
annotations per image (BSDS500) return one map per annotator.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from zeroseg.errors import ConfigError, DatasetError, ImageError

logger = logging.getLogger(__name__)

IGNORE = -1
"""Label value of pixels left out of every metric."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Sample:
    """One evaluation image.

    Attributes:
        id: identifier unique within the dataset split (file stem), used for caches and saved predictions.
        image_path: the image file.
        label_paths: the annotation file(s); several for multi-annotator datasets.
    """

    id: str
    image_path: Path
    label_paths: tuple[Path, ...] = field(default_factory=tuple)


def read_metadata(name: str) -> Any:
    """Read a vendored metadata file from ``zeroseg/eval/data`` (JSON parsed, text as lines)."""
    text = resources.files("zeroseg.eval").joinpath("data", name).read_text(encoding="utf-8")
    if name.endswith(".json"):
        return json.loads(text)
    return [line.strip() for line in text.splitlines() if line.strip()]


def lookup_table(mapping: Mapping[int, int], *, size: int = 256, default: int = IGNORE) -> np.ndarray:
    """Build a ``(size,)`` int64 table mapping raw label values to class ids (unlisted values -> ``default``)."""
    table = np.full(size, default, dtype=np.int64)
    for raw, cls in mapping.items():
        if 0 <= int(raw) < size:
            table[int(raw)] = int(cls)
    return table


def read_image_array(path: Path) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` uint8 RGB (grayscale and RGBA are converted).

    Unlike :func:`zeroseg.image.load_image` this keeps the stored pixel order and ignores EXIF orientation:
    the datasets' label maps are aligned with the stored pixels, as the official loaders read them.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc


def read_label_png(path: Path) -> np.ndarray:
    """Read a label PNG's raw values (palette indices for palette PNGs, not colours) as an int64 array."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16", "I;16B", "1"):
                raise ImageError(f"label file {path} has mode {img.mode}; expected a one-channel label PNG")
            return np.asarray(img).astype(np.int64)
    except OSError as exc:
        raise ImageError(f"cannot read label file {path}: {exc}") from exc


def list_files(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Files in ``folder`` with one of ``suffixes`` (case-insensitive), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def first_existing(candidates: Sequence[Path]) -> Path | None:
    """The first candidate folder that exists."""
    return next((p for p in candidates if p.is_dir()), None)


class SegmentationDataset:
    """Base class of the evaluation datasets.

    Subclasses set the class attributes, implement :meth:`find_samples` (raising :class:`DatasetError` that
    names the expected layout) and :meth:`convert_label` (raw values -> class ids with :data:`IGNORE`).

    Args:
        root: the dataset folder, as the dataset's own download unpacks.
        split: one of :attr:`splits`; ``None`` picks :attr:`default_split` (the split the papers evaluate on).
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]] = ("val",)
    default_split: ClassVar[str] = "val"
    layout: ClassVar[str] = ""
    multi_annotator: ClassVar[bool] = False

    num_classes: int | None = None
    class_names: tuple[str, ...] = ()
    background_class: int | None = None

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        self.root = Path(root).expanduser()
        self.split = self.default_split if split is None else split
        if self.split not in self.splits:
            raise ConfigError(
                f"`split` must be one of {', '.join(self.splits)} for {self.display_name}, got {self.split!r}"
            )
        if not self.root.is_dir():
            raise DatasetError(f"{self.display_name}: dataset root {self.root} does not exist. {self.layout}")
        self.samples: list[Sample] = self.find_samples()
        if not self.samples:
            raise DatasetError(f"{self.display_name}: no images found under {self.root}. {self.layout}")
        logger.info("%s %s: %d images under %s", self.display_name, self.split, len(self.samples), self.root)

    def find_samples(self) -> list[Sample]:
        """List the split's images and their label files."""
        raise NotImplementedError

    def convert_label(self, raw: np.ndarray) -> np.ndarray:
        """Map raw label values to class ids, :data:`IGNORE` for unscored pixels."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """Everything that determines what is scored (recorded in reports)."""
        return {"dataset": self.name, "root": str(self.root), "split": self.split}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def load_image(self, sample: Sample) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB image."""
        return read_image_array(sample.image_path)

    def load_labels(self, sample: Sample) -> list[np.ndarray]:
        """One ``(H, W)`` int64 class map per annotation (one for single-annotator datasets)."""
        return [self.convert_label(read_label_png(path)) for path in sample.label_paths]

    def class_name(self, index: int) -> str:
        """Name of class ``index`` (``class_<index>`` when the dataset has no names)."""
        if 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class_{index}"

    def pair_by_stem(
        self, images: Sequence[Path], label_dir: Path, label_suffix: str, *, image_suffix: str = ""
    ) -> list[Sample]:
        """Pair each image with ``label_dir/<stem without image_suffix><label_suffix>``; error if any is missing."""
        samples, missing = [], []
        for image in images:
            stem = (
                image.stem[: -len(image_suffix)] if image_suffix and image.stem.endswith(image_suffix) else image.stem
            )
            label = label_dir / f"{stem}{label_suffix}"
            if label.is_file():
                samples.append(Sample(id=stem, image_path=image, label_paths=(label,)))
            else:
                missing.append(label)
        if missing:
            raise DatasetError(
                f"{self.display_name}: {len(missing)} of {len(images)} images have no label file, e.g. "
                f"{missing[0]} is missing. {self.layout}"
            )
        return samples
