"""Local edits of a result (the page's split and merge) and their replay from a settings document.

DiffCut edits its NCut tree: ``{"op": "split" | "merge", "node": id}`` (:class:`zeroseg.diffcut.tree.EditedTree`),
then re-segments from the kept capture, so concept assignment and PAMR run on the edited cut. DiffSeg edits
its label map: ``{"op": "merge", "segments": [a, b]}`` joins segment ``b`` into ``a`` (ids as shown when the
edit was made). The page records the edits in the result's settings (``settings["edits"]``, in the JSON
download) and in the tree download; :func:`replay` redoes a run from that document:

    >>> document = json.load(open("photo.json"))
    >>> result = replay("photo.jpg", document, device="cuda")    # the page's label map, edits included
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np

from zeroseg.errors import ConfigError

RUN_KEYS = ("method", "model", "device", "dtype", "naming", "edits", "defaults_from")
"""Keys of a result's settings that are not method or capture settings."""


def merge_labels(labels: np.ndarray, keep: int, other: int) -> np.ndarray:
    """``labels`` with segment ``other`` joined into ``keep``, ids made canonical again."""
    from zeroseg.refine.relabel import canonical_labels

    present = set(np.unique(labels).tolist())
    for segment in (keep, other):
        if segment not in present:
            raise ConfigError(f"there is no segment {segment} to merge")
    if keep == other:
        raise ConfigError(f"segment {keep} cannot be merged with itself")
    merged = np.where(labels == other, keep, labels)
    return np.asarray(canonical_labels(merged), np.int32)


def apply_label_edits(result: Any, edits: list[dict[str, Any]], *, namer: Any = None) -> Any:
    """The result with DiffSeg's label-map merges applied in order (segments named again with ``namer``)."""
    from zeroseg.pipeline import name_segments
    from zeroseg.types import segments_of

    labels = result.labels
    for edit in edits:
        if edit.get("op") != "merge" or len(edit.get("segments", ())) != 2:
            raise ConfigError(f"a label-map edit must be {{'op': 'merge', 'segments': [a, b]}}, got {edit!r}")
        labels = merge_labels(labels, int(edit["segments"][0]), int(edit["segments"][1]))
    if namer is not None:
        from PIL import Image

        labels, segments = name_segments(namer, Image.fromarray(result.image), labels)
    else:
        segments = segments_of(labels)
    return replace(result, labels=labels, segments=segments)


def with_edits(result: Any, edits: list[dict[str, Any]]) -> Any:
    """The result with ``edits`` recorded in its settings (what the JSON download writes)."""
    if not edits:
        return result
    return replace(result, settings=result.settings | {"edits": [dict(edit) for edit in edits]})


def segment_regions(result: Any, tau: float) -> dict[int, int]:
    """DiffCut: for each output segment id, the NCut tree region (a leaf of the cut at ``tau``) it comes from.

    Concept assignment gives each output pixel one leaf of the cut by feature similarity, and PAMR moves the
    borders, so an output segment is matched to the leaf holding most of its pixels (the cut's region map
    upsampled to the output by nearest neighbour).
    """
    from zeroseg.diffcut.tree import EditedTree

    tree = result.tree if isinstance(result.tree, EditedTree) else EditedTree(result.tree)
    grid = tree.regions(tau).numpy()
    height, width = result.labels.shape
    rows = np.arange(height) * grid.shape[0] // height
    cols = np.arange(width) * grid.shape[1] // width
    regions = grid[rows[:, None], cols[None, :]]
    labels = result.labels.astype(np.int64)
    count = int(labels.max()) + 1
    pairs = np.bincount(labels.ravel() * len(tree.nodes) + regions.ravel(), minlength=count * len(tree.nodes))
    return {segment: int(row.argmax()) for segment, row in enumerate(pairs.reshape(count, len(tree.nodes)))}


def replay(
    image: str | os.PathLike[str] | Any,
    document: dict[str, Any],
    *,
    model: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    naming: Any = None,
) -> Any:
    """Redo a page's run with its edits: one backbone pass, then the recorded splits and merges.

    Args:
        image: the image (path, PIL image, array) the document was made from.
        document: the JSON download (``{"settings": ...}``) or its ``settings`` alone.
        model / device / dtype: override the recorded model (e.g. a local folder), where and how it runs.
        naming: :class:`zeroseg.pipeline.NamingOptions` when the page named the segments.

    Returns:
        The :class:`zeroseg.types.SegmentationResult`, with the edits recorded in its settings.
    """
    from zeroseg.diffcut.tree import EditedTree
    from zeroseg.pipeline import build_pipeline

    settings = dict(document.get("settings", document))
    edits = list(settings.get("edits", ()))
    method = settings.get("method")
    if method is None:
        raise ConfigError("the settings document names no method")
    overrides = {key: value for key, value in settings.items() if key not in RUN_KEYS}
    if isinstance(overrides.get("pamr_dilations"), list):
        overrides["pamr_dilations"] = tuple(overrides["pamr_dilations"])
    pipe = build_pipeline(
        method,
        model=model or settings.get("model"),
        device=device,
        dtype=dtype or settings.get("dtype"),
        naming=naming,
        keep_capture=bool(edits),
        keep_tree=True if edits else None,
        **overrides,
    )
    (result,) = pipe(image)
    if not edits:
        return result
    if result.tree is not None:
        result = pipe.resegment(replace(result, tree=EditedTree(result.tree, edits)))
    else:
        result = apply_label_edits(result, edits, namer=pipe.namer)
    return with_edits(result, edits)
