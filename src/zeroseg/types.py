"""Data types shared across zeroseg: the result of segmenting one image and its segments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Segment:
    """One segment of a label map.

    Attributes:
        id: its value in the label map.
        area: number of pixels.
        bbox: ``(x, y, width, height)`` in pixels (COCO convention).
        label: name of its best class when the segments were named, else ``None``.
        score: probability of that class, else ``None``.
        class_index: index of that class in the vocabulary, else ``None``.
        alternatives: the runner-up classes as ``(label, score)``, best first.
    """

    id: int
    area: int
    bbox: tuple[int, int, int, int]
    label: str | None = None
    score: float | None = None
    class_index: int | None = None
    alternatives: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (naming fields only when named)."""
        record: dict[str, Any] = {"id": self.id, "area": self.area, "bbox": list(self.bbox)}
        if self.label is not None:
            record |= {"label": self.label, "class_index": self.class_index, "score": round(float(self.score), 6)}
            record["alternatives"] = [{"label": name, "score": round(float(s), 6)} for name, s in self.alternatives]
        return record


def segments_of(labels: np.ndarray) -> list[Segment]:
    """Area and bounding box of every segment of an ``(H, W)`` label map with ids 0..K-1, in id order."""
    from scipy import ndimage  # C-speed bounding boxes; imported on first use (it is slow to import)

    array = np.asarray(labels)
    if array.size == 0:
        return []
    areas = np.bincount(array.ravel(), minlength=int(array.max()) + 1)
    segments = []
    for index, box in enumerate(ndimage.find_objects(array + 1)):
        if box is None:
            continue
        rows, cols = box
        bbox = (int(cols.start), int(rows.start), int(cols.stop - cols.start), int(rows.stop - rows.start))
        segments.append(Segment(id=index, area=int(areas[index]), bbox=bbox))
    return segments


@dataclass
class SegmentationResult:
    """The segmentation of one image.

    Attributes:
        labels: ``(H, W)`` int32 label map at the original image resolution, values contiguous 0..K-1.
        method: name of the method that produced it (``"diffseg"`` or ``"diffcut"``).
        settings: every setting used (method config, model, capture settings, naming), JSON-serialisable.
        source: where the image came from (a path or URI), if known.
        segments: one record per segment id, in id order (named when a vocabulary was given).
        image: the ``(H, W, 3)`` uint8 RGB image the labels belong to (what overlays are drawn on).
        capture: the backbone capture (plain tensors) when the pipeline was asked to keep it, for re-segmenting
            with other method settings without another backbone pass.
        tree: DiffCut's NCut tree when kept (granularity after the fact), else ``None``.
        timings: seconds spent per stage (``load``, ``capture``, ``segment``, ``name``).
    """

    labels: np.ndarray
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    segments: list[Segment] = field(default_factory=list)
    image: np.ndarray | None = field(default=None, repr=False)
    capture: dict[str, Any] | None = field(default=None, repr=False)
    tree: Any = field(default=None, repr=False)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.segments:
            self.segments = segments_of(self.labels)

    @property
    def num_segments(self) -> int:
        """Number of distinct segments in ``labels``."""
        return int(np.unique(self.labels).size)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the label map."""
        return int(self.labels.shape[0]), int(self.labels.shape[1])

    @property
    def names(self) -> list[str | None]:
        """Name per segment id (``None`` where unnamed), index = label value."""
        return [segment.label for segment in self.segments]

    @property
    def scores(self) -> list[float | None]:
        """Score per segment id, same indexing as :attr:`names`."""
        return [segment.score for segment in self.segments]

    @property
    def named(self) -> bool:
        """Whether the segments carry names."""
        return any(segment.label is not None for segment in self.segments)
