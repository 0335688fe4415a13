"""Evaluation on several devices: one worker process per device, each on every n-th image.

Workers share the feature cache and write their own results log (``<run>.rank<r>.jsonl``), so a multi-device
run resumes like a single-device one; the parent merges the per-image records into one report.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import time
from pathlib import Path
from typing import Any

from zeroseg.errors import ConfigError, ZeroSegError
from zeroseg.eval.cache import default_cache_dir
from zeroseg.eval.loop import ProgressCallback, ResultsLog
from zeroseg.eval.matching_scorer import summarize as summarize_matched
from zeroseg.eval.open_vocabulary import summarize as summarize_named
from zeroseg.eval.plan import EvaluationPlan, open_dataset, run_plan
from zeroseg.eval.report import REPORT_HEADER, EvaluationReport, build_report

logger = logging.getLogger(__name__)


def available_devices() -> list[str]:
    """``cuda:0 ... cuda:n-1`` when CUDA devices exist, else ``["cpu"]``."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def _worker(
    plan: EvaluationPlan, device: str, rank: int, world: int, save_predictions: str | None, events: Any
) -> None:  # pragma: no cover - runs in a child process
    def progress(done: int, total: int, miou: float) -> None:
        events.put(("progress", rank, done, total, miou))

    try:
        report = run_plan(
            plan, device=device, progress=progress, save_predictions=save_predictions, shard=(rank, world)
        )
        events.put(("done", rank, report.to_dict(), None))
    except ZeroSegError as exc:
        events.put(("error", rank, None, str(exc)))
    except Exception as exc:  # noqa: BLE001 - report any failure to the parent
        events.put(("error", rank, None, f"{type(exc).__name__}: {exc}"))


def run_on_devices(
    plan: EvaluationPlan,
    devices: list[str],
    *,
    progress: ProgressCallback | None = None,
    save_predictions: str | Path | None = None,
) -> EvaluationReport:
    """Run ``plan`` with one process per device and merge the results.

    The parent reads the workers' per-image records from their results logs.

    Raises:
        ConfigError: for fewer than two devices.
        ZeroSegError: if a worker fails (its message is passed on).
    """
    if len(devices) < 2:
        raise ConfigError(f"`devices` must list at least two devices for a parallel run, got {devices}")
    context = mp.get_context("spawn")
    events = context.Queue()
    world = len(devices)
    workers = [
        context.Process(
            target=_worker,
            args=(plan, device, rank, world, str(save_predictions) if save_predictions else None, events),
        )
        for rank, device in enumerate(devices)
    ]
    for worker in workers:
        worker.start()
    done_counts = [0] * world
    totals = [0] * world
    reports: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    start = time.perf_counter()
    while len(reports) + len(errors) < world:
        try:
            kind, rank, *payload = events.get(timeout=1.0)
        except queue.Empty:
            if not any(w.is_alive() for w in workers) and events.empty():
                errors.append("a worker process exited without a result")
                break
            continue
        if kind == "progress":
            done_counts[rank], totals[rank], miou = payload
            if progress is not None:
                progress(sum(done_counts), sum(totals), miou)
        elif kind == "done":
            reports[rank] = payload[0]
        else:
            errors.append(f"{devices[rank]}: {payload[1]}")
    for worker in workers:
        worker.join()
    if errors:
        raise ZeroSegError("evaluation failed on " + "; ".join(errors))
    return merge_shards(plan, reports, time.perf_counter() - start)


def merge_shards(plan: EvaluationPlan, reports: dict[int, dict[str, Any]], elapsed: float) -> EvaluationReport:
    """Build the whole run's report from the shards' results logs (with the report builder of single runs)."""
    first = reports[0]
    dataset = open_dataset(plan)
    cache_root = Path(plan.cache_dir).expanduser() if plan.cache_dir else default_cache_dir()
    records = ResultsLog(cache_root / "runs", first["run_id"]).read()
    samples = list(dataset)[: plan.limit] if plan.limit else list(dataset)
    ordered = [records[s.id] for s in samples if s.id in records]
    timing = {key: sum((r["timing"].get(key) or 0) for r in reports.values()) for key in first["timing"]}
    timing["seconds"] = elapsed
    timing["images_per_second"] = len(ordered) / elapsed if elapsed > 0 else None
    timing["devices"] = len(reports)
    header = {key: first[key] for key in REPORT_HEADER}
    summary = summarize_records(plan, dataset, header, ordered)
    return build_report(header, summary, timing, None, merge_not_reused(reports))


def merge_not_reused(reports: dict[int, dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The shards' ``not_reused`` entries, one per log with the images of every shard added up."""
    merged: dict[str, dict[str, Any]] = {}
    for report in reports.values():
        for entry in report.get("not_reused") or []:
            if entry["log"] in merged:
                merged[entry["log"]]["images"] += entry["images"]
            else:
                merged[entry["log"]] = dict(entry)
    return list(merged.values()) or None


def summarize_records(
    plan: EvaluationPlan, dataset: Any, header: dict[str, Any], records: list[dict[str, Any]]
) -> dict[str, Any]:
    """Dataset metrics of a plan's records, by the summary of the plan's scorer."""
    if plan.open_vocabulary is not None:
        return summarize_named(records, header["open_vocabulary"]["class_names"])
    return summarize_matched(records, dataset, plan.matching)
