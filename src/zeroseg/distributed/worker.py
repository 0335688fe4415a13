"""The segmenting worker: loads the pipeline once, then segments decoded batches and writes their outputs.

Ray Data runs :class:`SegmentWorker` as a pool of actors (``map_batches(SegmentWorker, ...)``); this module
itself does not import Ray, so the worker's logic runs (and is tested) in a plain process too. Each batch goes
through :class:`zeroseg.folder_run.FolderRun`, the run behind the local mode, so both write the same files. Per-image
problems never raise: each image gets an outcome row (:data:`zeroseg.distributed.report.OUTCOME_COLUMNS`)
saying whether it was segmented, skipped or failed, where, why, and how long each stage took.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zeroseg.folder_run import SETTINGS_FILE, STATUS_FAILED, FolderRun

from . import reading
from .report import OUTCOME_COLUMNS, STAGES
from .sinks import make_sink
from .storage import write_bytes


@dataclass
class JobSpec:
    """Everything a worker needs, sent once to each actor.

    Attributes:
        pipeline: keyword arguments of :func:`zeroseg.pipeline.build_pipeline` (method, model, settings...).
        output: output folder or URI.
        output_format: ``"files"`` (the local mode's files) or ``"parquet"`` (per-segment rows).
        formats: the file formats written with ``"files"`` (``png``, ``overlay``, ``json``, ``labelled``).
        overwrite: replace existing outputs instead of skipping them.
        threads: torch threads per worker (None: leave torch's default).
        before_batch: called in the worker with a batch's image ids before it is segmented (fault
            injection in tests, custom logging); must be picklable.
    """

    pipeline: dict[str, Any]
    output: str
    output_format: str = "files"
    formats: tuple[str, ...] = ("png", "overlay")
    overwrite: bool = False
    threads: int | None = None
    before_batch: Callable[[list[str]], None] | None = field(default=None, repr=False)


class SegmentWorker:
    """A callable class for ``Dataset.map_batches``: decoded rows in, outcome rows out."""

    def __init__(self, job: JobSpec) -> None:
        import torch

        from zeroseg.pipeline import build_pipeline

        if job.threads:
            torch.set_num_threads(job.threads)
        self.job = job
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.pipeline = build_pipeline(**job.pipeline, keep_tree="tree" in job.formats)
        sink = make_sink(job.output, job.output_format, job.formats, overwrite=job.overwrite)
        self.run = FolderRun(
            self.pipeline, sink, write_settings=lambda document: write_bytes(job.output, SETTINGS_FILE, document)
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        outcomes = _Outcomes(self.name)
        ids, images = [], []
        for row in range(len(batch[reading.IMAGE_ID])):
            image_id, location = str(batch[reading.IMAGE_ID][row]), str(batch[reading.LOCATION][row])
            read_s = float(batch[reading.READ_S][row])
            error = str(batch[reading.ERROR][row])
            if error:
                outcomes.add(image_id, location, STATUS_FAILED, stage="read", error=error, read=read_s)
                continue
            ids.append((image_id, location, read_s))
            images.append(
                reading.pixels_of(batch[reading.PIXELS][row], batch[reading.HEIGHT][row], batch[reading.WIDTH][row])
            )
        if self.job.before_batch is not None:
            self.job.before_batch([image_id for image_id, *_ in ids])
        if images:
            self._segment(ids, images, outcomes)
        return outcomes.columns(busy_s=time.perf_counter() - start)

    def _segment(self, ids: list[tuple[str, str, float]], images: list[np.ndarray], outcomes: _Outcomes) -> None:
        """Segment and write the decoded images through the folder run, one outcome row each."""
        from zeroseg.folder_run import FolderJob

        jobs = [
            FolderJob(image, image_id, location) for image, (image_id, location, _) in zip(images, ids, strict=True)
        ]
        read_s = {image_id: seconds for image_id, _, seconds in ids}
        for outcome in self.run(jobs):
            image_id, timings = outcome.job.stem, outcome.timings
            stage_s = {
                "read": read_s[image_id],
                "capture": float(timings.get("capture", 0.0)),
                "cluster": float(timings.get("segment", 0.0)),
                "name": float(timings.get("name", 0.0)),
                "write": float(timings.get("write", 0.0)),
            }
            outcomes.add(
                image_id,
                outcome.job.source,
                outcome.status,
                stage=outcome.stage,
                error=outcome.error,
                segments=outcome.segments,
                **stage_s,
            )


class _Outcomes:
    """Outcome rows of one batch, turned into columns at the end."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        image_id: str,
        location: str,
        status: str,
        *,
        stage: str = "",
        error: str = "",
        segments: int = 0,
        **seconds: float,
    ) -> int:
        row = {"image_id": image_id, "location": location, "status": status, "stage": stage, "error": error}
        row |= {"worker": self.worker, "busy_s": 0.0, "finished_at": 0.0, "segments": segments}
        row |= {f"{name}_s": float(seconds.get(name, 0.0)) for name in STAGES}
        self.rows.append(row)
        return len(self.rows) - 1

    def columns(self, *, busy_s: float) -> dict[str, np.ndarray]:
        """The rows as columns; the batch's wall time is shared out over its images."""
        share, now = busy_s / max(len(self.rows), 1), time.time()
        for row in self.rows:
            row["busy_s"], row["finished_at"] = share, now
        return {name: np.array([row[name] for row in self.rows], dtype=_dtype(name)) for name in OUTCOME_COLUMNS}


def _dtype(name: str) -> Any:
    if name.endswith("_s") or name == "finished_at":
        return np.float64
    return np.int32 if name == "segments" else object
