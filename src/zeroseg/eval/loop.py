"""The evaluation loop shared by every protocol: run hash, resumable results log, shards, batches, timing.

A run walks the selected images in batches: the scorer prepares each image (crop and resizes of its protocol),
the captures come from the feature cache or one backbone pass, and the scorer turns each capture into a
per-image record (and the prediction it scored). Records are appended to a JSON-lines log named by the hash of
every setting (zeroseg's numerics version and the cache storage included), so a run killed half way resumes
where it stopped and ends with the same totals, and results of another numerics version are never reported as
current: a settings file beside each log lets a run find and name such logs instead. What a scorer decides (how
to cluster, refine and score) is :class:`Scorer`; :mod:`zeroseg.eval.matching_scorer` (Hungarian matching) and
:mod:`zeroseg.eval.open_vocabulary` (CLIP names) are the two.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from zeroseg import _version
from zeroseg.errors import ConfigError
from zeroseg.eval.cache import FeatureCache, hash_key, write_atomic
from zeroseg.eval.datasets.base import IGNORE, Sample, SegmentationDataset
from zeroseg.eval.protocols import Protocol
from zeroseg.eval.report import EvaluationReport, build_report, not_reused_line
from zeroseg.refine.compiled import preload as preload_kernels
from zeroseg.refine.stage import Refinement

if TYPE_CHECKING:
    from zeroseg.segmenter import Segmenter

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, float], None]
"""Called after each image with (images done, images in the run, running mIoU)."""


class ResultsLog:
    """Per-image results of one run, as JSON lines under ``folder/<run hash>[.rank<r>].jsonl``.

    Every file of the run hash is read back (so ranks of a multi-device run share their progress); each
    process appends only to its own file. A line cut short by a kill is skipped. ``<run hash>.settings.json``
    beside the log holds the settings the hash stands for.
    """

    def __init__(self, folder: Path, run_hash: str, *, rank: int | None = None) -> None:
        self.folder = Path(folder)
        self.run_hash = run_hash
        suffix = "" if rank is None else f".rank{rank}"
        self.path = self.folder / f"{run_hash}{suffix}.jsonl"

    @property
    def settings_path(self) -> Path:
        """The settings file of this run (shared by its ranks)."""
        return self.folder / f"{self.run_hash}.settings.json"

    def write_settings(self, settings: dict[str, Any]) -> None:
        """Record the run's settings beside its log, once."""
        if self.settings_path.is_file():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(settings, sort_keys=True, default=str, indent=1).encode("utf-8")
        write_atomic(self.settings_path, lambda handle: handle.write(text))

    def clear(self) -> None:
        """Forget this process's earlier results (a restarted run)."""
        self.path.unlink(missing_ok=True)

    def read(self, *, own_only: bool = False) -> dict[str, dict[str, Any]]:
        """Records of completed images, by image id (of every rank, or of this process's file only)."""
        records: dict[str, dict[str, Any]] = {}
        paths = [self.path] if own_only else sorted(self.folder.glob(f"{self.run_hash}*.jsonl"))
        for path in paths:
            if not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "id" in record:
                    records[record["id"]] = record
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Append one record and flush it to disk."""
        self.folder.mkdir(parents=True, exist_ok=True)
        prefix = ""
        if self.path.is_file() and self.path.stat().st_size > 0:
            with self.path.open("rb") as handle:
                handle.seek(-1, 2)
                prefix = "" if handle.read(1) == b"\n" else "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(prefix + json.dumps(record) + "\n")
            handle.flush()


@dataclass
class RunTiming:
    """Seconds spent and images handled by one run (the report's ``timing``)."""

    capture_s: float = 0.0
    cluster_s: float = 0.0
    captured: int = 0
    cached: int = 0
    clustered: int = 0
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Scored:
    """One image as a scorer saw it: its record, the prediction scored and the targets it was scored against."""

    record: dict[str, Any]
    prediction: np.ndarray
    targets: list[np.ndarray]


class RunningMean:
    """The mIoU shown while a run is in progress: the mean of the images' mIoU."""

    def __init__(self, image_miou: Callable[[dict[str, Any]], float]) -> None:
        self.image_miou = image_miou
        self.total = 0.0
        self.count = 0

    def add(self, record: dict[str, Any]) -> None:
        """Count one image's record."""
        value = self.image_miou(record)
        if not math.isnan(value):
            self.total += value
            self.count += 1

    @property
    def miou(self) -> float:
        """The running mIoU (NaN before any scored image)."""
        return self.total / self.count if self.count else math.nan


class Scorer(ABC):
    """How one protocol turns a capture into a per-image record and records into dataset metrics."""

    protocol: Protocol
    refinement: Refinement | None = None
    """The refinement the loop applies to :meth:`segment`'s labels (``None``: none)."""
    timing_fields: tuple[str, ...] = ()
    """Extra seconds the scorer reports in ``timing`` (e.g. ``clip_seconds``)."""

    @abstractmethod
    def check(self, dataset: SegmentationDataset) -> None:
        """Refuse a dataset this scorer cannot score (before any image is processed)."""

    @abstractmethod
    def run_settings(self) -> dict[str, Any]:
        """The scorer's own settings that determine the scores (part of the run hash)."""

    @abstractmethod
    def report_fields(self) -> dict[str, Any]:
        """The report's ``protocol``, ``matching``, ``baseline`` and ``open_vocabulary`` entries."""

    @abstractmethod
    def prepare(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(H, W, 3)`` uint8 -> (``(3, S, S)`` backbone input, image at the evaluation size) in [0, 1]."""

    @abstractmethod
    def segment(self, sample: Sample, capture: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """One capture's labels at the evaluation size, before refinement, and what scoring needs (targets)."""

    @abstractmethod
    def score(self, labels: torch.Tensor, image: torch.Tensor, targets: Any, timing: RunTiming) -> Scored:
        """Score the refined labels of one image (``image``: the image at the evaluation size)."""

    @abstractmethod
    def summarize(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Dataset metrics (``miou``, ``pixel_accuracy``, ``per_class_iou``, ``num_images``, ...) from records."""

    @abstractmethod
    def running(self) -> Any:
        """A running score (``add(record)``, ``miou``) shown while the run is in progress."""


def method_settings(segmenter: Segmenter) -> dict[str, Any]:
    """The segmenter's method settings as a JSON-ready dict."""
    return dict(segmenter.config.to_dict())


def capture_cache_key(segmenter: Segmenter, protocol: Protocol, dataset: SegmentationDataset) -> dict[str, Any]:
    """Everything that determines a stored capture: the segmenter's capture key, the crop, the dataset and
    zeroseg's numerics version."""
    input_side, _ = protocol.sizes(segmenter.image_size)
    return {
        "numerics": _version.NUMERICS_VERSION,
        "capture": segmenter.capture_key(),
        "crop_margin": protocol.crop_margin,
        "input_size": input_side,
        "dataset": dataset.name,
        "root": str(dataset.root.resolve()),
        "split": dataset.split,
    }


def run_settings(
    segmenter: Segmenter, dataset: SegmentationDataset, scorer: Scorer, *, storage: str = "lossless"
) -> dict[str, Any]:
    """Everything that determines the scores of a run (its hash names the results log).

    ``storage`` is the feature cache's (``lossless`` without a cache): a lossy cache changes the numbers.
    """
    return {
        "numerics": _version.NUMERICS_VERSION,
        "cache_storage": storage,
        "capture": capture_cache_key(segmenter, scorer.protocol, dataset),
        "method": segmenter.method,
        "config": method_settings(segmenter),
        "dataset": dataset.settings(),
        "protocol": scorer.protocol.to_dict(),
        **scorer.run_settings(),
    }


VERSIONED_SETTINGS = ("numerics", "cache_storage")
"""Run settings that say how the numbers were computed rather than what was asked for."""


def _asked(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as their JSON reads back, without :data:`VERSIONED_SETTINGS`."""
    plain = json.loads(json.dumps(settings, sort_keys=True, default=str))
    for name in VERSIONED_SETTINGS:
        plain.pop(name, None)
    if isinstance(plain.get("capture"), dict):
        plain["capture"].pop("numerics", None)
    return plain


def other_versions(log: ResultsLog, settings: dict[str, Any], image_ids: set[str]) -> list[dict[str, Any]]:
    """Logs beside ``log`` of the same run under another numerics version or cache storage that hold results
    of ``image_ids``: their path, ``numerics_version``, ``cache_storage`` and how many ``images``."""
    asked = _asked(settings)
    found = []
    for path in sorted(log.folder.glob("*.settings.json")):
        run_hash = path.name.removesuffix(".settings.json")
        if run_hash == log.run_hash:
            continue
        try:
            other = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(other, dict) or _asked(other) != asked:
            continue
        images = len(image_ids & ResultsLog(log.folder, run_hash).read().keys())
        if images:
            logs = sorted(log.folder.glob(f"{run_hash}*.jsonl"))
            found.append({
                "log": str(logs[0]) if len(logs) == 1 else str(log.folder / f"{run_hash}*.jsonl"),
                "numerics_version": other.get("numerics"),
                "cache_storage": other.get("cache_storage", "lossless"),
                "images": images,
            })  # fmt: skip
    return found


def _png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    img = Image.fromarray(array.astype(np.uint16 if array.max(initial=0) > 255 else np.uint8))
    write_atomic(path, lambda handle: img.save(handle, format="PNG"))


def save_prediction_pngs(folder: Path, sample: Sample, pred: np.ndarray, gts: list[np.ndarray]) -> None:
    """Write ``<id>.png`` (the prediction) and ``<id>_gt.png`` (``_gt_<i>`` per annotator; ignore = 255)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, gt in enumerate(gts):
        name = f"{sample.id}_gt.png" if len(gts) == 1 else f"{sample.id}_gt_{index}.png"
        ignore = 255 if gt.max(initial=0) < 255 else 65535
        _png(np.where(gt == IGNORE, ignore, gt), folder / name)
    _png(pred, folder / f"{sample.id}.png")  # last: its presence marks the image's files complete


def predictions_saved(folder: Path, sample: Sample) -> bool:
    """Whether :func:`save_prediction_pngs` wrote ``sample``'s files to ``folder``."""
    return (folder / f"{sample.id}.png").is_file()


def load_captures(
    segmenter: Segmenter,
    batch: Sequence[Sample],
    images: Sequence[torch.Tensor],
    *,
    cache: FeatureCache | None,
    cache_key: dict[str, Any],
    timing: RunTiming,
) -> list[dict[str, torch.Tensor]]:
    """The backbone captures of a batch: from the cache when stored, else one backbone pass over the missing ones
    (as the cache stores them, so a lossy cache gives the same values fresh or cached).

    Args:
        segmenter: the segmenter whose backbone runs.
        batch: the batch's samples.
        images: their ``(3, S, S)`` prepared images, same order.
        cache: the feature cache (``None``: capture every image).
        cache_key: the run's capture key (:func:`capture_cache_key`).
        timing: counters updated with capture time and cache hits.

    Returns:
        One capture per sample, in order.
    """
    captures: list[dict[str, torch.Tensor] | None] = [
        cache.get(cache_key, s.id, source=s.image_path) if cache is not None else None for s in batch
    ]
    missing = [i for i, c in enumerate(captures) if c is None]
    if missing:
        t0 = time.perf_counter()
        with torch.inference_mode():
            fresh = segmenter.capture(torch.stack([images[i] for i in missing]))
            fresh = [{name: value.cpu() for name, value in capture.items()} for capture in fresh]
        timing.capture_s += time.perf_counter() - t0
        timing.captured += len(missing)
        for i, capture in zip(missing, fresh, strict=True):
            captures[i] = capture if cache is None else cache.as_stored(capture)
            if cache is not None:
                cache.put(cache_key, batch[i].id, capture, source=batch[i].image_path)
    timing.cached += len(batch) - len(missing)
    return [c for c in captures if c is not None]


def check_run_arguments(*, limit: int | None, batch_size: int) -> None:
    """Refuse a batch size or limit below 1."""
    if batch_size < 1:
        raise ConfigError(f"`batch_size` must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ConfigError(f"`limit` must be >= 1, got {limit}")


def run(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    scorer: Scorer,
    *,
    cache: FeatureCache | None = None,
    results_dir: Path | None = None,
    save_predictions: Path | None = None,
    limit: int | None = None,
    batch_size: int = 1,
    progress: ProgressCallback | None = None,
    shard: tuple[int, int] | None = None,
    preset: str | None = None,
    restart: bool = False,
) -> EvaluationReport:
    """Score ``segmenter`` on ``dataset`` with ``scorer``, resuming an identical earlier run.

    An image is reused from the results log only when everything asked for is there: with ``save_predictions``,
    images whose PNGs are missing from that folder are computed again (their captures come from the cache).

    Args:
        segmenter: a segmenter with its method settings already set.
        dataset: an opened dataset (:func:`zeroseg.eval.datasets.create_dataset`).
        scorer: the protocol's scorer.
        cache: feature cache for the backbone captures (its storage is part of the run hash); ``None``
            computes every capture.
        results_dir: folder of the resumable per-image results logs; ``None`` keeps results in memory only.
        save_predictions: folder receiving each image's prediction and targets as PNGs.
        limit: evaluate only the first ``limit`` images.
        batch_size: images per backbone pass.
        progress: called after each image with (done, total, running mIoU), and once at the start of a resumed
            run.
        shard: ``(rank, world)`` evaluates images ``rank, rank + world, ...`` only (one process per device).
        preset: preset name recorded in the report.
        restart: ignore and overwrite the results of an earlier identical run instead of resuming it.

    Returns:
        The report of all images done so far for this run (all of them unless sharded); ``resumed`` says
        which results log was reused and for how many images, ``not_reused`` which logs of another numerics
        version or cache storage held results of the images computed again.
    """
    check_run_arguments(limit=limit, batch_size=batch_size)
    scorer.check(dataset)
    storage = cache.storage if cache is not None else "lossless"
    settings = run_settings(segmenter, dataset, scorer, storage=storage)
    run_hash = hash_key(settings)[:24]
    log = None if results_dir is None else ResultsLog(results_dir, run_hash, rank=None if shard is None else shard[0])
    if log is not None:
        log.write_settings(settings)
    if log is not None and restart:
        log.clear()
    done = log.read(own_only=restart) if log is not None else {}
    samples = list(dataset)[:limit] if limit else list(dataset)
    selected = samples if shard is None else samples[shard[0] :: shard[1]]
    folder = Path(save_predictions) if save_predictions is not None else None
    reusable = {s.id: done[s.id] for s in selected if s.id in done and (folder is None or predictions_saved(folder, s))}
    pending = [s for s in selected if s.id not in reusable]
    resumed = None
    if reusable and log is not None:
        resumed = {"log": str(log.path), "images": len(reusable), "of": len(selected)}
        logger.info("resuming run %s from %s: %d of %d images reused", run_hash, log.path, len(reusable), len(selected))
    not_reused = None
    if log is not None and pending and not restart:
        not_reused = other_versions(log, settings, {s.id for s in pending}) or None
        for entry in not_reused or []:
            logger.warning("%s", not_reused_line(entry, settings["numerics"]))
    records = dict(reusable)
    running = scorer.running()
    for record in records.values():
        running.add(record)
    if progress is not None and records:
        progress(len(records), len(selected), running.miou)
    cache_key = settings["capture"]
    preload_kernels()  # the refinement's compiled kernels load while the first captures run
    timing = RunTiming(extra=dict.fromkeys(scorer.timing_fields, 0.0))
    start = time.perf_counter()
    for batch_start in range(0, len(pending), batch_size):
        batch = pending[batch_start : batch_start + batch_size]
        prepared = [scorer.prepare(dataset.load_image(s)) for s in batch]
        images = [image for image, _ in prepared]
        captures = load_captures(segmenter, batch, images, cache=cache, cache_key=cache_key, timing=timing)
        for sample, (_, eval_image), capture in zip(batch, prepared, captures, strict=True):
            t0 = time.perf_counter()
            scored = score_capture(scorer, sample, capture, eval_image, timing)
            record = {"id": sample.id, "run": run_hash, **scored.record}
            timing.cluster_s += time.perf_counter() - t0
            timing.clustered += 1
            records[sample.id] = record
            if log is not None:
                log.append(record)
            if folder is not None:
                save_prediction_pngs(folder, sample, scored.prediction, scored.targets)
            running.add(record)
            if progress is not None:
                progress(len(records), len(selected), running.miou)
    elapsed = time.perf_counter() - start
    ordered = [records[s.id] for s in selected if s.id in records]
    header = {
        "method": segmenter.method,
        "preset": preset,
        "dataset": dataset.settings(),
        "settings": method_settings(segmenter),
        "capture": cache_key["capture"],
        "run_id": run_hash,
        "numerics_version": settings["numerics"],
        "cache_storage": storage,
        **scorer.report_fields(),
    }
    summary = scorer.summarize(ordered)
    return build_report(header, summary, run_timing(timing, elapsed, len(reusable)), resumed, not_reused)


def score_capture(
    scorer: Scorer, sample: Sample, capture: dict[str, torch.Tensor], image: torch.Tensor, timing: RunTiming
) -> Scored:
    """Segment one capture, refine it (the one place evaluation refines labels) and score it."""
    with torch.inference_mode():
        labels, targets = scorer.segment(sample, capture)
        if scorer.refinement is not None:
            labels = scorer.refinement(labels, image)
    return scorer.score(labels, image, targets, timing)


def run_timing(timing: RunTiming, elapsed: float, resumed: int) -> dict[str, Any]:
    """The report's ``timing`` section."""
    return {
        "seconds": elapsed,
        "images_per_second": timing.clustered / elapsed if elapsed > 0 else math.nan,
        "capture_seconds": timing.capture_s,
        "cluster_seconds": timing.cluster_s,
        **timing.extra,
        "images_captured": timing.captured,
        "images_from_cache": timing.cached,
        "images_resumed": resumed,
    }
