"""Data types shared across zeroseg: the result of segmenting one image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SegmentationResult:
    """The segmentation of one image.

    Attributes:
        labels: ``(H, W)`` int32 label map at the original image resolution, values contiguous 0..K-1.
        method: name of the method that produced it (``"diffseg"`` or ``"diffcut"``).
        settings: every setting used (method config, model, capture settings), JSON-serialisable.
        source: where the image came from (a path), if known.
        names: optional name per segment id (open-vocabulary labelling), index = label value.
        scores: optional confidence per segment id, same indexing as ``names``.
    """

    labels: np.ndarray
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    names: list[str] | None = None
    scores: list[float] | None = None

    @property
    def num_segments(self) -> int:
        """Number of distinct segments in ``labels``."""
        return int(np.unique(self.labels).size)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the label map."""
        return int(self.labels.shape[0]), int(self.labels.shape[1])
