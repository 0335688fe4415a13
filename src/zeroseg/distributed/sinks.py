"""Where workers put results: the local mode's files, or a Parquet dataset of per-segment rows.

Both sinks are safe to rerun: :func:`finished_ids` says which images a previous run already wrote, so only
the others are segmented again.

- files: :class:`zeroseg.writers.OutputWriter`, exactly the files of the local mode, through the same
  :class:`zeroseg.folder_run.FolderRun` (each image claimed first, so parallel workers and parallel runs never
  write the same image twice);
- :class:`ParquetSink` collects a batch's segments and writes them as one ``segments/part-<hash>.parquet``
  file, atomically. The name is a hash of the batch's image ids, so a batch redone after a worker died
  replaces its own file instead of adding a second copy.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .storage import join, list_files, write_file

SEGMENTS_FOLDER = "segments"
PART_PREFIX = "part-"


def segment_schema():  # noqa: ANN201 - a pyarrow schema
    """Columns of the Parquet output: one row per segment."""
    import pyarrow as pa

    return pa.schema(
        [
            ("image_id", pa.string()),
            ("source", pa.string()),
            ("segment_id", pa.int32()),
            ("area", pa.int64()),
            ("bbox", pa.list_(pa.int32(), 4)),  # x, y, width, height
            ("rle", pa.struct([("size", pa.list_(pa.int32(), 2)), ("counts", pa.string())])),  # COCO RLE, [h, w]
            ("label", pa.string()),
            ("score", pa.float64()),
        ]
    )


class ParquetSink:
    """Per-segment rows of a batch, written together as one Parquet file of the ``segments`` folder.

    A sink of :class:`zeroseg.folder_run.FolderRun`: nothing to claim (the driver hands each image to one
    batch, and :func:`finished_ids` leaves out what a previous run wrote), rows held back until :meth:`flush`.
    """

    overwrite = True  # what exists was left out before the job started

    def __init__(self, location: str) -> None:
        self.folder = join(location, SEGMENTS_FOLDER)
        self.rows: list[dict[str, Any]] = []

    def complete(self, image_id: str) -> bool:
        """Rows are written per batch, so an image is never complete before its batch is flushed."""
        return False

    @contextlib.contextmanager
    def claim(self, image_id: str) -> Iterator[bool]:
        """Always held: the image is this batch's alone."""
        yield True

    def write(self, result: Any, image_id: str) -> None:
        """Hold the image's segment rows until :meth:`flush`."""
        self.rows.extend(segment_rows(image_id, result))

    def flush(self, image_ids: list[str]) -> None:
        """Write the held rows as ``part-<hash of image_ids>.parquet`` (nothing when no image succeeded)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows, self.rows = self.rows, []
        if not rows:
            return
        table = pa.Table.from_pylist(rows, schema=segment_schema())
        digest = hashlib.sha1("\n".join(sorted(image_ids)).encode()).hexdigest()[:20]
        write_file(self.folder, f"{PART_PREFIX}{digest}.parquet", lambda stream: pq.write_table(table, stream))


def segment_rows(image_id: str, result: Any) -> list[dict[str, Any]]:
    """One Parquet row per segment of a result, with the same COCO RLE as the ``json`` output."""
    from zeroseg.rle import encode_label_rles

    rles = encode_label_rles(result.labels, [segment.id for segment in result.segments])
    rows = []
    for segment in result.segments:
        rle = rles[segment.id]
        rows.append(
            {
                "image_id": image_id,
                "source": result.source,
                "segment_id": int(segment.id),
                "area": int(segment.area),
                "bbox": [int(v) for v in segment.bbox],
                "rle": {"size": [int(v) for v in rle["size"]], "counts": _text(rle["counts"])},
                "label": segment.label,
                "score": None if segment.score is None else float(segment.score),
            }
        )
    return rows


def make_sink(location: str, output_format: str, formats: tuple[str, ...], *, overwrite: bool) -> Any:
    """The sink of an output format: ``"files"`` (the local mode's :class:`~zeroseg.writers.OutputWriter`) or
    ``"parquet"``."""
    if output_format == "parquet":
        return ParquetSink(location)
    from zeroseg import writers

    return writers.OutputWriter(Path(location), formats=formats, overwrite=overwrite)


def finished_ids(location: str, output_format: str, formats: tuple[str, ...], image_ids: list[str]) -> set[str]:
    """The image ids among ``image_ids`` that a previous run already wrote completely."""
    if output_format == "parquet":
        return parquet_image_ids(location) & set(image_ids)
    from zeroseg import writers

    writer = writers.OutputWriter(Path(location), formats=formats, overwrite=False)
    return {image_id for image_id in image_ids if writer.complete(image_id)}


def parquet_image_ids(location: str) -> set[str]:
    """Image ids present in the Parquet output at ``location`` (empty when there is none yet)."""
    import pyarrow.parquet as pq

    from .sources import resolve_filesystem

    folder = join(location, SEGMENTS_FOLDER)
    files = list_files(folder, suffix=".parquet")
    if not files:
        return set()
    filesystem, _ = resolve_filesystem(folder)
    ids: set[str] = set()
    for path in files:
        ids.update(pq.read_table(path, columns=["image_id"], filesystem=filesystem).column(0).to_pylist())
    return ids


def read_label_maps(location: str) -> dict[str, Any]:
    """Decode the Parquet output at ``location`` back into ``{image_id: (H, W) int32 label map}``."""
    import numpy as np
    import pyarrow.parquet as pq

    from zeroseg.rle import decode_rle

    from .sources import resolve_filesystem

    folder = join(location, SEGMENTS_FOLDER)
    filesystem, _ = resolve_filesystem(folder)
    maps: dict[str, Any] = {}
    for path in list_files(folder, suffix=".parquet"):
        table = pq.read_table(path, columns=["image_id", "segment_id", "rle"], filesystem=filesystem)
        for image_id, segment_id, rle in zip(*(table.column(i).to_pylist() for i in range(3)), strict=True):
            mask = np.asarray(decode_rle(rle), dtype=bool)
            labels = maps.setdefault(image_id, np.zeros(mask.shape, dtype=np.int32))
            labels[mask] = segment_id
    return maps


def _text(counts: Any) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else str(counts)
