"""Evaluation runs: score a segmenter on a dataset under a protocol, resumably, and sweep settings.

One run = for each image: crop/resize (protocol) -> capture (UNet pass, from the feature cache when
possible) -> clustering with the segmenter's current settings (or a baseline) -> background merge ->
PAMR -> matching. Each image's counts are appended to a JSON-lines log as it completes, so a run killed half
way resumes where it stopped and ends with the same totals.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
import torch

from zeroseg.errors import ConfigError
from zeroseg.eval.background import merge_background
from zeroseg.eval.baselines import Baseline
from zeroseg.eval.cache import FeatureCache, hash_key, write_atomic
from zeroseg.eval.datasets.base import IGNORE, Sample, SegmentationDataset
from zeroseg.eval.matching import DatasetMatcher, confusion_matrix, counts_from_matching, match_clusters
from zeroseg.eval.metrics import IoUAccumulator, image_scores, nanmean
from zeroseg.eval.protocols import Protocol, get_protocol, prepare_image, prepare_labels, resize_image
from zeroseg.eval.report import EvaluationReport

logger = logging.getLogger(__name__)

MATCHINGS = ("per-image", "dataset")
ProgressCallback = Callable[[int, int, float], None]
"""Called after each image with (images done, images in the run, running mIoU)."""


class Segmenter(TypingProtocol):
    """What the evaluation needs from a segmenter (``zeroseg.create_segmenter`` returns one)."""

    method: str
    config: Any
    image_size: int

    def capture(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]: ...

    def capture_key(self) -> dict[str, Any]: ...

    def segment_capture(
        self,
        capture: dict[str, torch.Tensor],
        *,
        output_size: tuple[int, int],
        image: torch.Tensor | None = None,
    ) -> torch.Tensor: ...

    def with_config(self, **overrides: Any) -> Segmenter: ...


class ResultsLog:
    """Per-image results of one run, as JSON lines under ``folder/<run hash>[.rank<r>].jsonl``.

    Every file of the run hash is read back (so ranks of a multi-device run share their progress); each
    process appends only to its own file. A line cut short by a kill is skipped.
    """

    def __init__(self, folder: Path, run_hash: str, *, rank: int | None = None) -> None:
        self.folder = Path(folder)
        self.run_hash = run_hash
        suffix = "" if rank is None else f".rank{rank}"
        self.path = self.folder / f"{run_hash}{suffix}.jsonl"

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


def method_settings(segmenter: Segmenter) -> dict[str, Any]:
    """The segmenter's method settings as a JSON-ready dict."""
    config = segmenter.config
    return dict(config.to_dict()) if hasattr(config, "to_dict") else {}


def capture_cache_key(segmenter: Segmenter, protocol: Protocol, dataset: SegmentationDataset) -> dict[str, Any]:
    """Everything that determines a stored capture: the segmenter's capture key, the crop and the dataset."""
    input_side, _ = protocol.sizes(segmenter.image_size)
    return {
        "capture": segmenter.capture_key(),
        "crop_margin": protocol.crop_margin,
        "input_size": input_side,
        "dataset": dataset.name,
        "root": str(dataset.root.resolve()),
        "split": dataset.split,
    }


def run_settings(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    protocol: Protocol,
    baseline: Baseline | None,
    matching: str,
) -> dict[str, Any]:
    """Everything that determines the scores of a run (its hash names the results log)."""
    return {
        "capture": capture_cache_key(segmenter, protocol, dataset),
        "method": segmenter.method,
        "config": method_settings(segmenter),
        "dataset": dataset.settings(),
        "protocol": protocol.to_dict(),
        "baseline": baseline.to_dict() if baseline else None,
        "matching": matching,
    }


def _num_classes(dataset: SegmentationDataset, gt: np.ndarray) -> int:
    if dataset.num_classes is not None:
        return dataset.num_classes
    return max(1, int(gt.max()) + 1)  # per-image regions (BSDS500)


def _png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    if array.max(initial=0) > 255:
        img = Image.fromarray(array.astype(np.uint16))
    else:
        img = Image.fromarray(array.astype(np.uint8))
    write_atomic(path, lambda handle: img.save(handle, format="PNG"))


def save_prediction_pngs(folder: Path, sample: Sample, pred: np.ndarray, gts: list[np.ndarray]) -> None:
    """Write ``<id>.png`` (the prediction) and ``<id>_gt.png`` (``_gt_<i>`` per annotator; ignore = 255)."""
    folder.mkdir(parents=True, exist_ok=True)
    _png(pred, folder / f"{sample.id}.png")
    for index, gt in enumerate(gts):
        name = f"{sample.id}_gt.png" if len(gts) == 1 else f"{sample.id}_gt_{index}.png"
        ignore = 255 if gt.max(initial=0) < 255 else 65535
        _png(np.where(gt == IGNORE, ignore, gt), folder / name)


def _counts_record(counts: Any) -> dict[str, Any]:
    return {
        "tp": counts.tp.tolist(),
        "fp": counts.fp.tolist(),
        "fn": counts.fn.tolist(),
        "valid": int(counts.valid),
    }


def score_image(pred: np.ndarray, gts: list[np.ndarray], dataset: SegmentationDataset, matching: str) -> dict[str, Any]:
    """The record of one image: matched counts per annotation (and its confusion matrix for dataset matching)."""
    annotations = []
    hist_record = None
    for gt in gts:
        num_classes = _num_classes(dataset, gt)
        hist = confusion_matrix(gt, pred, num_classes)
        annotations.append(_counts_record(counts_from_matching(hist, match_clusters(hist))))
        if matching == "dataset" and hist_record is None:
            rows, cols = np.nonzero(hist)
            hist_record = [[int(r), int(c), int(hist[r, c])] for r, c in zip(rows, cols, strict=True)]
    record: dict[str, Any] = {"counts": annotations}
    if hist_record is not None:
        record["hist"] = hist_record
    return record


def summarize(records: Iterable[dict[str, Any]], dataset: SegmentationDataset, matching: str) -> dict[str, Any]:
    """Dataset metrics from per-image records: mIoU, pixel accuracy, per-class IoU (and per-annotator stats)."""
    records = list(records)
    if dataset.multi_annotator:
        mean_iou, best_iou, mean_acc, best_acc = [], [], [], []
        for record in records:
            scores = [image_scores(_as_counts(c)) for c in record["counts"]]
            ious = np.array([s[0] for s in scores])
            accs = np.array([s[1] for s in scores])
            mean_iou.append(nanmean(ious))
            mean_acc.append(nanmean(accs))
            best_iou.append(float(np.nanmax(ious)) if np.isfinite(ious).any() else math.nan)
            best_acc.append(float(np.nanmax(accs)) if np.isfinite(accs).any() else math.nan)
        return {
            "miou": nanmean(np.array(mean_iou)),
            "pixel_accuracy": nanmean(np.array(mean_acc)),
            "per_class_iou": {},
            "num_images": len(records),
            "annotators": {
                "mean": {"miou": nanmean(np.array(mean_iou)), "pixel_accuracy": nanmean(np.array(mean_acc))},
                "best": {"miou": nanmean(np.array(best_iou)), "pixel_accuracy": nanmean(np.array(best_acc))},
                "note": "per-image Hungarian matching against each annotator; mIoU and accuracy averaged over "
                "images, then mean or best over the image's annotators",
            },
        }
    num_classes = dataset.num_classes or 1
    acc = IoUAccumulator(num_classes)
    if matching == "dataset":
        matcher = DatasetMatcher(num_classes)
        for record in records:
            width = 1 + max((c for _, c, _ in record.get("hist", [])), default=0)
            hist = np.zeros((num_classes, max(width, num_classes)), dtype=np.int64)
            for r, c, n in record.get("hist", []):
                hist[r, c] = n
            matcher.add_hist(hist)
        acc.add(matcher.counts())
    else:
        for record in records:
            acc.add(_as_counts(record["counts"][0]))
    ious = acc.per_class_iou()
    return {
        "miou": acc.miou,
        "pixel_accuracy": acc.pixel_accuracy,
        "per_class_iou": {dataset.class_name(i): (None if math.isnan(v) else float(v)) for i, v in enumerate(ious)},
        "num_images": len(records),
    }


def _as_counts(entry: dict[str, Any]) -> Any:
    from zeroseg.eval.metrics import as_counts

    return as_counts(entry["tp"], entry["fp"], entry["fn"], entry["valid"])


def _running_miou(accumulator: IoUAccumulator | None, values: list[float]) -> float:
    if accumulator is not None:
        return accumulator.miou
    return nanmean(np.array(values)) if values else math.nan


def load_captures(
    segmenter: Segmenter,
    batch: Sequence[Sample],
    images: Sequence[torch.Tensor],
    *,
    cache: FeatureCache | None,
    cache_key: dict[str, Any],
    timing: RunTiming,
) -> list[dict[str, torch.Tensor]]:
    """The UNet captures of a batch: from the cache when stored, else one backbone pass over the missing ones.

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
        timing.capture_s += time.perf_counter() - t0
        timing.captured += len(missing)
        for i, capture in zip(missing, fresh, strict=True):
            captures[i] = capture
            if cache is not None:
                cache.put(cache_key, batch[i].id, capture, source=batch[i].image_path)
    timing.cached += len(batch) - len(missing)
    return [c for c in captures if c is not None]


def evaluate(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    *,
    protocol: Protocol | str | None = None,
    baseline: Baseline | None = None,
    matching: str = "per-image",
    cache: FeatureCache | None = None,
    results_dir: Path | None = None,
    save_predictions: Path | None = None,
    limit: int | None = None,
    batch_size: int = 1,
    progress: ProgressCallback | None = None,
    shard: tuple[int, int] | None = None,
    preset: str | None = None,
    collect: list[dict[str, Any]] | None = None,
    restart: bool = False,
) -> EvaluationReport:
    """Score ``segmenter`` on ``dataset``.

    Args:
        segmenter: a segmenter (``zeroseg.create_segmenter``), with its method settings already set.
        dataset: an opened dataset (:func:`zeroseg.eval.datasets.create_dataset`).
        protocol: protocol or its name; ``None`` = the protocol of ``segmenter.method``.
        baseline: score a baseline on the method's capture instead of the method's clustering.
        matching: ``per-image`` (DiffSeg/DiffCut protocol) or ``dataset`` (PiCIE/STEGO).
        cache: feature cache for the UNet captures; ``None`` computes every capture.
        results_dir: folder of the resumable per-image results logs; ``None`` keeps results in memory only.
        save_predictions: folder receiving ``<id>.png`` (prediction at the evaluation size, before matching)
            and ``<id>_gt.png`` (ground truth as scored, ignore = 255).
        limit: evaluate only the first ``limit`` images.
        batch_size: images per UNet pass.
        progress: called after each image with (done, total, running mIoU).
        shard: ``(rank, world)`` evaluates images ``rank, rank + world, ...`` only (one process per device).
        preset: preset name recorded in the report.
        collect: if given, receives the per-image records (done before and now) of the selected images.
        restart: ignore and overwrite the results of an earlier identical run instead of resuming it.

    Returns:
        The :class:`EvaluationReport` of all images done so far for this run (all of them unless sharded).

    Raises:
        ConfigError: for an unknown matching or protocol, or a baseline/method mismatch.
    """
    if matching not in MATCHINGS:
        raise ConfigError(f"`matching` must be one of {', '.join(MATCHINGS)}, got {matching!r}")
    if matching == "dataset" and dataset.multi_annotator:
        raise ConfigError(f"`matching`='dataset' needs fixed classes; {dataset.display_name} has per-image regions")
    if batch_size < 1:
        raise ConfigError(f"`batch_size` must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ConfigError(f"`limit` must be >= 1, got {limit}")
    protocol = get_protocol(segmenter.method) if protocol is None else protocol
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    input_side, eval_side = protocol.sizes(segmenter.image_size)
    settings = run_settings(segmenter, dataset, protocol, baseline, matching)
    run_hash = hash_key(settings)[:24]
    log = None
    if results_dir is not None:
        log = ResultsLog(results_dir, run_hash, rank=None if shard is None else shard[0])
    if log is not None and restart:
        log.clear()
    done = log.read(own_only=restart) if log is not None else {}
    samples = list(dataset)[:limit] if limit else list(dataset)
    selected = samples if shard is None else samples[shard[0] :: shard[1]]
    pending = [s for s in selected if s.id not in done]
    if done:
        logger.info(
            "resuming run %s: %d of %d images already done",
            run_hash,
            len(selected) - len(pending),
            len(selected),
        )
    records = {s.id: done[s.id] for s in selected if s.id in done}
    running = None if dataset.multi_annotator or matching == "dataset" else IoUAccumulator(dataset.num_classes or 1)
    running_values: list[float] = []
    for record in records.values():
        if running is not None:
            running.add(_as_counts(record["counts"][0]))
    cache_key = settings["capture"]
    config = segmenter.config
    use_pamr = bool(getattr(config, "pamr", False))
    timing = RunTiming()
    start = time.perf_counter()
    for batch_start in range(0, len(pending), batch_size):
        batch = pending[batch_start : batch_start + batch_size]
        images = [prepare_image(dataset.load_image(s), protocol, input_side) for s in batch]
        captures = load_captures(segmenter, batch, images, cache=cache, cache_key=cache_key, timing=timing)
        for sample, image, capture in zip(batch, images, captures, strict=True):
            t0 = time.perf_counter()
            gts = [prepare_labels(gt, protocol, input_side, eval_side) for gt in dataset.load_labels(sample)]
            pred = _predict(segmenter, capture, image, gts, dataset, protocol, baseline, eval_side, use_pamr)
            record = {"id": sample.id, "run": run_hash, **score_image(pred, gts, dataset, matching)}
            timing.cluster_s += time.perf_counter() - t0
            timing.clustered += 1
            records[sample.id] = record
            if log is not None:
                log.append(record)
            if save_predictions is not None:
                save_prediction_pngs(Path(save_predictions), sample, pred, gts)
            if running is not None:
                running.add(_as_counts(record["counts"][0]))
            else:
                running_values.append(image_scores(_as_counts(record["counts"][0]))[0])
            if progress is not None:
                progress(len(records), len(selected), _running_miou(running, running_values))
    elapsed = time.perf_counter() - start
    ordered = [records[s.id] for s in selected if s.id in records]
    if collect is not None:
        collect.extend(ordered)
    summary = summarize(ordered, dataset, matching)
    return EvaluationReport(
        **summary,
        method=segmenter.method,
        preset=preset,
        dataset=dataset.settings(),
        settings=method_settings(segmenter),
        capture=cache_key["capture"],
        protocol=protocol.to_dict(),
        baseline=baseline.to_dict() if baseline else None,
        matching=matching,
        run_id=run_hash,
        timing={
            "seconds": elapsed,
            "images_per_second": timing.clustered / elapsed if elapsed > 0 else math.nan,
            "capture_seconds": timing.capture_s,
            "cluster_seconds": timing.cluster_s,
            "images_captured": timing.captured,
            "images_from_cache": timing.cached,
            "images_resumed": len(selected) - len(pending),
        },
    )


def _predict(
    segmenter: Segmenter,
    capture: dict[str, torch.Tensor],
    image: torch.Tensor,
    gts: list[np.ndarray],
    dataset: SegmentationDataset,
    protocol: Protocol,
    baseline: Baseline | None,
    eval_side: int,
    use_pamr: bool,
) -> np.ndarray:
    """Cluster one capture at the evaluation size, merge the background, refine with PAMR."""
    size = (eval_side, eval_side)
    small_image = resize_image(image, eval_side)
    pamr_later = use_pamr and protocol.pamr_after_merge
    if baseline is not None:
        valid = gts[0][gts[0] != IGNORE]
        labels = baseline.predict(capture, output_size=size, num_gt_classes=int(np.unique(valid).size))
    else:
        pass_image = None if (pamr_later or not use_pamr) else small_image
        labels = segmenter.segment_capture(capture, output_size=size, image=pass_image)
    pred = labels.cpu().numpy().astype(np.int64)
    if pred.shape != size:
        raise ConfigError(f"the segmenter returned labels of shape {pred.shape}, expected {size}")
    if protocol.background_merge and dataset.background_class is not None:
        pred = merge_background(
            pred, gts[0], num_classes=dataset.num_classes or 1, background_class=dataset.background_class
        )
    if pamr_later:
        from zeroseg.refine.pamr import refine_labels

        config = segmenter.config
        refined = refine_labels(
            torch.from_numpy(pred),
            small_image,
            num_iter=int(getattr(config, "pamr_iters", 10)),
            dilations=tuple(getattr(config, "pamr_dilations", (1, 2, 4, 8))),
        )
        pred = refined.cpu().numpy().astype(np.int64)
    return pred


def expand_grid(grid: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All combinations of a settings grid, in order (last key fastest)."""
    if not grid:
        return [{}]
    names = list(grid)
    for name in names:
        if len(grid[name]) == 0:
            raise ConfigError(f"sweep values for `{name}` are empty")
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def sweep(
    segmenter: Segmenter,
    dataset: SegmentationDataset,
    grid: dict[str, Sequence[Any]],
    **options: Any,
) -> list[EvaluationReport]:
    """Evaluate every combination of ``grid`` (method settings); captures come from the shared cache.

    The first combination fills the feature cache, the others rerun only the clustering.
    Keyword options are those of :func:`evaluate`.
    """
    reports = []
    for combo in expand_grid(grid):
        logger.info("sweep step %s", combo)
        reports.append(evaluate(segmenter.with_config(**combo), dataset, **options))
    return reports
