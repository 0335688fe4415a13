"""What a distributed run did: the per-image outcome rows, the failures manifest and the throughput report.

Workers return one outcome row per image (:data:`OUTCOME_COLUMNS`); the driver folds them into a
:class:`RunReport` as they stream in. At the end it writes

- ``zeroseg-failures.csv``: one row per image that failed (``image_id``, ``path``, ``stage``, ``error``).
  It has a ``path`` and an ``image_id`` column, so it is itself an input manifest: passing it back to
  ``zeroseg segment`` redoes exactly those images under the same output names;
- ``zeroseg-report.json``: the counts, the throughput overall and per worker, and the time spent per stage.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zeroseg.folder_run import STATUS_DONE, STATUS_SKIPPED

FAILURES_FILE = "zeroseg-failures.csv"
REPORT_FILE = "zeroseg-report.json"
FAILURE_COLUMNS = ("image_id", "path", "stage", "error")

STAGES = ("read", "capture", "cluster", "name", "write")
"""Where time goes, per image: reading + decoding (in the read tasks), the denoiser pass (capture), clustering
(the method's segmentation of the capture), naming (CLIP, when a vocabulary is given) and writing outputs."""

OUTCOME_COLUMNS = ("image_id", "location", "status", "stage", "error", "worker", "busy_s", "finished_at", "segments")
OUTCOME_COLUMNS += tuple(f"{stage}_s" for stage in STAGES)


@dataclass
class FailureRow:
    """A row of the failures manifest: an image that could not be segmented, where (``stage``) and why (one
    line). :class:`zeroseg.pipeline.Failure` is the in-stream counterpart, before an image has an output name."""

    image_id: str
    path: str
    stage: str
    error: str


@dataclass
class WorkerStats:
    """Images one worker process segmented and the seconds it spent on its batches."""

    images: int = 0
    busy_s: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.busy_s if self.busy_s > 0 else 0.0


@dataclass
class RunReport:
    """Counts, failures, per-worker throughput and per-stage time of a run; filled as outcomes arrive."""

    total: int = 0
    already_done: int = 0
    done: int = 0
    skipped: int = 0
    failures: list[FailureRow] = field(default_factory=list)
    workers: dict[str, WorkerStats] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall_s: float = 0.0
    startup_s: float = 0.0
    segments: int = 0
    finished: dict[float, int] = field(default_factory=dict)
    """Images segmented per worker batch, by the (wall clock) time the batch finished."""

    def add_outcomes(self, batch: Mapping[str, Any], skip: Collection[str] = ()) -> list[str]:
        """Fold a batch of outcome rows in, but for images in ``skip`` (already counted: a retried batch may
        deliver some twice); returns the image ids it added."""
        ids = [str(value) for value in batch["image_id"]]
        added = []
        for row in range(len(ids)):
            if ids[row] in skip:
                continue
            added.append(ids[row])
            status = str(batch["status"][row])
            worker = str(batch["worker"][row])
            if status == STATUS_DONE:
                self.done += 1
                self.segments += int(batch["segments"][row])
                finished_at = float(batch["finished_at"][row])
                self.finished[finished_at] = self.finished.get(finished_at, 0) + 1
            elif status == STATUS_SKIPPED:
                self.skipped += 1
            else:
                self.fail(ids[row], str(batch["location"][row]), str(batch["stage"][row]), str(batch["error"][row]))
            for stage in STAGES:
                self.stage_s[stage] += float(batch[f"{stage}_s"][row])
            if worker:
                stats = self.workers.setdefault(worker, WorkerStats())
                stats.images += status == STATUS_DONE
                stats.busy_s += float(batch["busy_s"][row])
        return added

    def fail(self, image_id: str, path: str, stage: str, error: str) -> None:
        self.failures.append(FailureRow(image_id, path, stage, error))

    @property
    def images_per_s(self) -> float:
        """End to end: Ray start-up and model loading included."""
        return self.done / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steady_images_per_s(self) -> float:
        """Once running: the images of every batch after the first to finish, over the time from the first
        batch's end to the last one's (start-up and model loading left out)."""
        times = sorted(self.finished)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return sum(self.finished[t] for t in times[1:]) / (times[-1] - times[0])

    def to_json(self) -> dict[str, Any]:
        """The report document (``zeroseg-report.json``)."""
        return {
            "images": {
                "total": self.total,
                "already_done": self.already_done,
                "segmented": self.done,
                "skipped": self.skipped,
                "failed": len(self.failures),
            },
            "segments": self.segments,
            "wall_s": round(self.wall_s, 3),
            "startup_s": round(self.startup_s, 3),
            "images_per_s": round(self.images_per_s, 4),
            "steady_images_per_s": round(self.steady_images_per_s, 4),
            "workers": {
                name: {"images": s.images, "busy_s": round(s.busy_s, 3), "images_per_s": round(s.images_per_s, 4)}
                for name, s in sorted(self.workers.items())
            },
            "stage_s": {stage: round(seconds, 3) for stage, seconds in self.stage_s.items()},
            "failures_by_stage": _count(f.stage for f in self.failures),
        }

    def lines(self) -> list[str]:
        """The throughput report as plain text lines, for the terminal."""
        counts = f"{self.done} segmented"
        if self.already_done or self.skipped:
            counts += f", {self.already_done + self.skipped} skipped (outputs exist)"
        if self.failures:
            counts += f", {len(self.failures)} failed"
        lines = [f"{counts} in {self.wall_s:.1f} s: {self.images_per_s:.2f} images/s overall"]
        if self.steady_images_per_s:
            lines[0] += f", {self.steady_images_per_s:.2f} once running"
        if self.startup_s:
            lines.append(f"  first result after {self.startup_s:.1f} s (Ray start-up, model load, first batch)")
        for name, stats in sorted(self.workers.items()):
            lines.append(f"  worker {name}: {stats.images} images, {stats.images_per_s:.2f} images/s while busy")
        busy = sum(self.stage_s.values())
        if busy > 0:
            shares = ", ".join(
                f"{stage} {seconds:.1f} s ({100 * seconds / busy:.0f}%)"
                for stage, seconds in self.stage_s.items()
                if seconds > 0 or stage != "name"
            )
            lines.append(f"  time per stage, all workers: {shares}")
        return lines


def failures_csv(failures: Iterable[FailureRow]) -> bytes:
    """The failures manifest as CSV bytes (header always present, so an empty run says so too)."""
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(FAILURE_COLUMNS)
    for failure in failures:
        out.writerow([failure.image_id, failure.path, failure.stage, failure.error])
    return text.getvalue().encode("utf-8")


def report_json(report: RunReport) -> bytes:
    return (json.dumps(report.to_json(), indent=2) + "\n").encode("utf-8")


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
