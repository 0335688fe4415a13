"""Segmenting images into an output folder: the one run behind ``zeroseg segment`` and every Ray worker.

:func:`resolve_formats` turns ``--save`` into formats and refuses those whose needs (names, a segment tree) the
run cannot meet, before any model loads. :class:`FolderRun` then takes a pipeline and its jobs (an image and
the stem its outputs are written under) and, for each image: skips it when its outputs exist, claims it (so
runs sharing the folder share the work), segments it through :meth:`Pipeline.stream`, writes every format
atomically, releases the claim, and says what happened in an :class:`ImageOutcome`. Images another run holds
are looked at again once the others are done, until that run has written them or let them go. The settings
file (``zeroseg-settings.json``) is written once per run, from the pipeline's settings: the same bytes from
every front end.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeroseg.errors import ConfigError, ZeroSegError, one_line

SETTINGS_FILE = "zeroseg-settings.json"
"""Every setting of the run, beside its outputs."""

CLAIM_POLL_SECONDS = 0.5
"""How often to look again at an image another run is writing."""

STATUS_DONE, STATUS_SKIPPED, STATUS_FAILED = "done", "skipped", "failed"


@dataclass(frozen=True)
class FolderJob:
    """One image to segment into the folder.

    Attributes:
        image: what :meth:`Pipeline.stream` takes (a path, an array, a PIL image).
        stem: the outputs' name inside the folder, without suffix (may contain ``/``).
        source: how the image is named in outputs and errors (a path or URI).
    """

    image: Any
    stem: str
    source: str


@dataclass
class ImageOutcome:
    """What happened to one job.

    Attributes:
        job: the job.
        status: ``done``, ``skipped`` (outputs existed, or another run wrote them) or ``failed``.
        stage: where it failed (``segment`` or ``write``), else empty.
        error: the one-line error naming the image, else empty.
        by_other_run: skipped because another run wrote it while this one ran.
        segments: number of segments written.
        timings: the result's stage seconds (``load``, ``capture``, ``segment``, ``name``) plus ``write``.
    """

    job: FolderJob
    status: str
    stage: str = ""
    error: str = ""
    by_other_run: bool = False
    segments: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def resolve_formats(save: str | Sequence[str] | None, *, method: str, named: bool) -> tuple[str, ...]:
    """The output formats of a run: ``save`` parsed, or the defaults (more when segments are named).

    Each format declares what it needs (:attr:`zeroseg.writers.Format.needs`); a need the run cannot meet is
    refused here, before any model loads.

    Raises:
        ConfigError: an unknown format, or one whose needs the method or the naming settings do not offer.
    """
    from zeroseg.registry import list_methods, method_class
    from zeroseg.writers import DEFAULT_FORMATS, FORMATS, NAMED_DEFAULT_FORMATS, parse_formats

    formats = parse_formats(save) if save else (NAMED_DEFAULT_FORMATS if named else DEFAULT_FORMATS)
    offered = {"names"} if named else set()
    if method_class(method).tree_spec is not None:
        offered.add("tree")
    for name in formats:
        for need in sorted(FORMATS[name].needs - offered):
            if need == "names":
                raise ConfigError(f"the `{name}` output needs --labels or --vocabulary")
            with_tree = ", ".join(m for m in list_methods() if method_class(m).tree_spec is not None)
            raise ConfigError(f"the `{name}` output needs a method with a segment tree ({with_tree}), not {method}")
    return formats


def settings_document(settings: dict[str, Any]) -> bytes:
    """The settings file's bytes: zeroseg's version and numerics version, then every setting of the run."""
    from zeroseg import _version

    header = {"zeroseg": _version.__version__}
    numerics = getattr(_version, "NUMERICS_VERSION", None)
    if numerics is not None:
        header["numerics"] = numerics
    return (json.dumps({**header, **settings}, indent=2) + "\n").encode("utf-8")


def unfinished(jobs: Iterable[FolderJob], sink: Any) -> tuple[list[FolderJob], int]:
    """The jobs whose outputs are not all written yet, and how many are (looked at before any model loads)."""
    todo, finished = [], 0
    for job in jobs:
        if not sink.overwrite and sink.complete(job.stem):
            finished += 1
        else:
            todo.append(job)
    return todo, finished


class FolderRun:
    """Segment jobs into one output folder with a pipeline, sharing the folder with other runs.

    Args:
        pipeline: a :class:`~zeroseg.pipeline.Pipeline` (built with ``keep_tree`` when a format needs it).
        sink: where outputs go: a :class:`~zeroseg.writers.OutputWriter` (files), or any object with its
            ``overwrite``, ``complete(stem)``, ``claim(stem)`` and ``write(result, stem)`` (the Parquet sink
            also has ``flush(stems)``, called after each call with the stems it holds back).
        write_settings: writes the settings file's bytes (default: ``zeroseg-settings.json`` in the writer's
            folder, atomically); called once, before the first image is written.
        poll_seconds: how often to look again at images another run holds.
    """

    def __init__(
        self,
        pipeline: Any,
        sink: Any,
        *,
        write_settings: Callable[[bytes], None] | None = None,
        poll_seconds: float = CLAIM_POLL_SECONDS,
    ) -> None:
        self.pipeline = pipeline
        self.sink = sink
        self.write_settings = write_settings or self._settings_in_folder
        self.poll_seconds = poll_seconds
        self.settings_written = False

    def __call__(
        self, jobs: Iterable[FolderJob], *, waiting: Callable[[int], None] | None = None
    ) -> Iterator[ImageOutcome]:
        """Segment and write ``jobs``; one outcome per job, in order (images another run held come last).

        ``waiting`` is called with the number of images another run holds each time this run waits for them.
        """
        pending = list(jobs)
        held_elsewhere: set[str] = set()
        while pending:
            deferred: list[FolderJob] = []
            yield from self._pass(pending, deferred, held_elsewhere)
            pending = deferred
            if pending:
                if waiting is not None:
                    waiting(len(pending))
                time.sleep(self.poll_seconds)

    def _pass(
        self, jobs: list[FolderJob], deferred: list[FolderJob], held_elsewhere: set[str]
    ) -> Iterator[ImageOutcome]:
        from zeroseg.pipeline import Failure, ImageItem

        claims: dict[str, ExitStack] = {}
        in_flight: deque[FolderJob] = deque()
        early: deque[ImageOutcome] = deque()  # skips found while claiming, yielded in turn
        held_back: list[ImageOutcome] = []

        def claimed() -> Iterator[ImageItem]:
            for job in jobs:
                if self._written(job, held_elsewhere):
                    early.append(ImageOutcome(job, STATUS_SKIPPED, by_other_run=True))
                    continue
                claim = ExitStack()
                if not claim.enter_context(self.sink.claim(job.stem)):
                    claim.close()
                    deferred.append(job)
                    held_elsewhere.add(job.stem)
                    continue
                if self._written(job, held_elsewhere):  # written and let go between the first look and the claim
                    claim.close()
                    early.append(ImageOutcome(job, STATUS_SKIPPED, by_other_run=True))
                    continue
                claims[job.stem] = claim
                in_flight.append(job)
                yield ImageItem(job.image, job.source)

        try:
            for item in self.pipeline.stream(claimed()):
                while early:
                    yield early.popleft()
                job = in_flight.popleft()
                try:
                    outcome = self._write(job, item, Failure)
                finally:
                    claims.pop(job.stem).close()
                if outcome.status == STATUS_DONE and hasattr(self.sink, "flush"):
                    held_back.append(outcome)
                else:
                    yield outcome
            yield from early
            yield from self._flush(held_back)
        finally:
            for claim in claims.values():
                claim.close()

    def _written(self, job: FolderJob, held_elsewhere: set[str]) -> bool:
        """Outputs complete and not to be redone (with ``overwrite``, only an image another run just wrote)."""
        if not self.sink.complete(job.stem):
            return False
        return not self.sink.overwrite or job.stem in held_elsewhere

    def _write(self, job: FolderJob, item: Any, failure_type: type) -> ImageOutcome:
        if isinstance(item, failure_type):
            return ImageOutcome(job, STATUS_FAILED, stage="segment", error=item.error)
        start = time.perf_counter()
        try:
            if not self.settings_written:
                self.write_settings(settings_document(item.settings))
                self.settings_written = True
            self.sink.write(item, job.stem)
        except ZeroSegError as exc:
            return ImageOutcome(job, STATUS_FAILED, stage="write", error=one_line(exc))
        except (OSError, ValueError, RuntimeError) as exc:
            error = f"{job.source}: {type(exc).__name__}: {one_line(exc)}"
            return ImageOutcome(job, STATUS_FAILED, stage="write", error=error)
        timings = {**(item.timings or {}), "write": time.perf_counter() - start}
        return ImageOutcome(job, STATUS_DONE, segments=item.num_segments, timings=timings)

    def _flush(self, outcomes: list[ImageOutcome]) -> list[ImageOutcome]:
        """Let a sink that holds outputs back write them; if it cannot, each of its images failed."""
        if not outcomes:
            return []
        start = time.perf_counter()
        try:
            self.sink.flush([outcome.job.stem for outcome in outcomes])
        except (ZeroSegError, OSError, ValueError) as exc:
            for outcome in outcomes:
                outcome.status, outcome.stage, outcome.error = STATUS_FAILED, "write", one_line(exc)
            return outcomes
        share = (time.perf_counter() - start) / len(outcomes)
        for outcome in outcomes:
            outcome.timings["write"] = outcome.timings.get("write", 0.0) + share
        return outcomes

    def _settings_in_folder(self, document: bytes) -> None:
        from zeroseg.outputs import atomic_write

        with atomic_write(Path(self.sink.folder) / SETTINGS_FILE) as temp:
            temp.write_bytes(document)
