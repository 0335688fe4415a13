"""Segmenting an image collection on a Ray cluster with Ray Data (the only zeroseg module that imports Ray).

The job is a streaming Ray Data pipeline (one per pass, see below)::

    from_items(image ids, locations)               the driver's list of what is left to do
      -> map_batches(decode_batch)                 Ray tasks: read + decode, apart from the UNet
      -> map_batches(SegmentWorker, actor pool)    one actor per worker: model loaded once, batches segmented,
                                                   outputs written (claims, atomic files)
      -> outcome rows, streamed back to the driver (counts, failures, throughput)

Fault tolerance is Ray's, with bounds. A worker that dies (a crash, the OOM killer) is restarted and its batch
is run again, possibly on another worker, at most :attr:`RayOptions.max_task_retries` times (default 2); read
tasks are retried as often, and actors restart at most as often as the batches of a pass could kill them (Ray
Data does not replace an actor out of restarts: with none left the job would wait forever). A batch that still
fails is dropped rather than ending the job (``DataContext.max_errored_blocks``), and the driver runs its images
again in a pass of their own, in batches half the size, and so on down to one image a batch (one a block, one in
flight per actor): the rest of the batch gets written, and an image that still kills its worker when alone is
recorded as a failure (``zeroseg-failures.csv``), so a rerun does it again. Everything already written is skipped
before the job starts: a rerun does only what is missing.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from zeroseg.errors import ConfigError, ZeroSegError, one_line, require

from . import reading
from .report import FAILURES_FILE, REPORT_FILE, RunReport, failures_csv, report_json
from .sinks import SEGMENTS_FOLDER, finished_ids
from .sources import expand_sources, is_uri
from .storage import join, write_bytes
from .worker import JobSpec, SegmentWorker

OUTPUT_FORMATS = ("files", "parquet")
_RAY_DATA_ERROR_LOGGERS = (  # where Ray Data logs a dropped block's error and an actor's death, with tracebacks
    "ray.data._internal.execution.streaming_executor_state",
    "ray.data._internal.execution.operators.actor_pool_map_operator",
)
_LOADING_KEYS = frozenset(
    {"method", "device", "dtype", "revision", "variant", "model_config", "naming", "batch_size", "keep_capture"}
)


@dataclass
class RayOptions:
    """How the job runs on Ray.

    Attributes:
        address: ``None`` starts Ray on this machine (a laptop, a single node), ``"auto"`` joins the cluster
            this machine belongs to, ``"ray://head:10001"`` connects to a remote cluster through Ray Client.
        num_workers: segmenting actors (default: as many as the cluster's GPUs / ``gpus_per_worker`` allow,
            or its CPUs / ``cpus_per_worker`` without GPUs).
        gpus_per_worker: GPUs each actor holds (fractions share a GPU); 0 segments on CPUs.
        cpus_per_worker: CPUs each actor holds; on CPU workers it is also torch's thread count.
        read_cpus: CPUs each read + decode task holds.
        batch_size: images per UNet batch, and per batch handed to an actor.
        max_task_retries: times a batch (and a read task) is run again after its worker died before it is given
            up (default 2: three attempts); its images are then run again in smaller batches, and one that
            still kills its worker when alone counts as failed.
        num_cpus: CPUs of a Ray started here (default: all of them); ignored when joining a cluster.
        progress: show Ray Data's progress bars.
        init_options: more keyword arguments for ``ray.init`` (``runtime_env``, ``namespace``, ...).
    """

    address: str | None = None
    num_workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    read_cpus: float = 0.25
    batch_size: int = 1
    max_task_retries: int = 2
    num_cpus: int | None = None
    progress: bool = True
    init_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse impossible settings before anything starts (messages name the command-line flags)."""
        if self.num_workers is not None and self.num_workers < 1:
            raise ConfigError(f"`--num-workers` must be at least 1 (got {self.num_workers})")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"`--gpus-per-worker` must not be negative (got {self.gpus_per_worker})")
        if self.cpus_per_worker <= 0 or self.read_cpus <= 0:
            raise ConfigError("CPUs per worker and per read task must be positive")
        if self.batch_size < 1:
            raise ConfigError(f"`--batch-size` must be at least 1 (got {self.batch_size})")
        if self.max_task_retries < 0:
            raise ConfigError(f"retries must not be negative (got {self.max_task_retries})")


def segment_on_ray(
    inputs: Sequence[str],
    *,
    output: str,
    pipeline: dict[str, Any],
    options: RayOptions | None = None,
    output_format: str = "files",
    formats: tuple[str, ...] = ("png", "overlay"),
    overwrite: bool = False,
    recursive: bool = False,
    path_column: str | None = None,
    before_batch: Callable[[list[str]], None] | None = None,
    echo: Callable[[str], None] | None = print,
) -> RunReport:
    """Segment every image of ``inputs`` on Ray; write outputs, the failures manifest and the report.

    Args:
        inputs: folders, globs, files, URIs, text lists and Parquet/CSV manifests (see
            :func:`zeroseg.distributed.sources.expand_sources`).
        output: output folder (``files``: a folder every worker can write, e.g. a shared mount) or, for
            ``parquet``, a folder or URI of any file system pyarrow supports.
        pipeline: keyword arguments of :func:`zeroseg.pipeline.build_pipeline` (``method``, ``model``,
            ``device``, method settings ...); each worker builds its pipeline from them.
        options: how to run on Ray (:class:`RayOptions`).
        output_format: ``"files"`` (the local mode's files) or ``"parquet"`` (per-segment rows in
            ``<output>/segments/``).
        formats: with ``"files"``, which files to write (:class:`zeroseg.writers.OutputWriter` formats).
        overwrite: redo images whose outputs exist (default: skip them).
        recursive: look into subfolders of folder inputs.
        path_column: the manifests' path column, when not one of the usual names.
        before_batch: called in the worker with each batch's image ids (see :class:`JobSpec`).
        echo: where report lines go (None: nowhere).

    Returns:
        The :class:`RunReport`; its ``failures`` are also in ``<output>/zeroseg-failures.csv``.

    Raises:
        ConfigError: bad options or inputs that give no image at all.
        MissingDependencyError: Ray is not installed (``pip install 'zeroseg[ray]'``).
    """
    options = options or RayOptions()
    options.check()
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"`--format` must be one of {', '.join(OUTPUT_FORMATS)} (got {output_format!r})")
    if output_format == "files" and is_uri(output):
        raise ConfigError(f"`--out` {output}: files need a folder every worker can write; URIs take --format parquet")
    output = _absolute(output)  # workers need not share this process's working directory
    pipeline = {**pipeline, "batch_size": options.batch_size}
    _check_settings(pipeline)
    start = time.perf_counter()
    report = RunReport()
    items, problems = expand_sources(inputs, recursive=recursive, path_column=path_column)
    for line in problems:
        report.fail("", line.split(": ", 1)[0], "input", line)
    if not items and problems:
        raise ConfigError(problems[0] if len(problems) == 1 else f"no images found ({len(problems)} problems)")
    report.total = len(items)
    done = set() if overwrite else finished_ids(output, output_format, formats, [i.image_id for i in items])
    todo = [replace(item, location=_absolute(item.location)) for item in items if item.image_id not in done]
    report.already_done = len(items) - len(todo)
    if todo:
        job = JobSpec(
            pipeline=dict(pipeline),
            output=output,
            output_format=output_format,
            formats=tuple(formats),
            overwrite=overwrite,
            before_batch=before_batch,
        )
        _run(todo, job, options, report, start, echo)
    report.wall_s = time.perf_counter() - start
    write_bytes(output, FAILURES_FILE, failures_csv(report.failures))
    write_bytes(output, REPORT_FILE, report_json(report))
    if echo is not None:
        for line in report.lines():
            echo(line)
        if report.failures:
            echo(f"  failures listed in {join(output, FAILURES_FILE)}")
        if output_format == "parquet":
            echo(f"  segments in {join(output, SEGMENTS_FOLDER)}")
    return report


def _run(
    todo: list[Any], job: JobSpec, options: RayOptions, report: RunReport, start: float, echo: Callable | None
) -> None:
    """Start or join Ray, stream the job's outcomes into ``report``, and run images whose batches were lost again
    in smaller batches until each is alone; those still lost then are recorded as failures."""
    ray = require("ray", "ray", "`--engine ray`")
    require("ray.data", "ray", "`--engine ray`")
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, options)
    left, batch_size, split = todo, options.batch_size, False
    loggers = [logging.getLogger(name) for name in _RAY_DATA_ERROR_LOGGERS]
    for logger in loggers:
        logger.addFilter(_traceback_as_text)
    try:
        workers, cpus = _worker_shape(ray, options)
        if echo is not None:
            echo(f"{len(todo)} images on {workers} worker(s), {cpus:g} CPU(s) each, {options.gpus_per_worker:g} GPU(s)")
        job.threads = None if options.gpus_per_worker else max(1, round(cpus))
        seen: set[str] = set()
        while True:
            shape = {"workers": workers, "cpus_per_worker": cpus, "batch_size": batch_size, "split": split}
            left = _one_pass(ray, left, job, options, report, seen, start, **shape)
            # Ray Data ends a finished pass's actors by dropping their handles, which reference cycles (and logged
            # tracebacks, see _traceback_as_text) hold: collect now, or the next pass waits for the CPUs they hold.
            gc.collect()
            if not left or (split and batch_size == 1):
                break
            batch_size, split = max(1, batch_size // 2), True
            if echo is not None:
                echo(f"{len(left)} image(s) lost with their batches, run again in batches of {batch_size}")
    finally:
        for logger in loggers:
            logger.removeFilter(_traceback_as_text)
        if started_here:
            ray.shutdown()
    attempts = options.max_task_retries + 1
    for item in left:
        error = f"{item.location}: worker died while segmenting it, {_times(attempts)} (see Ray's logs)"
        report.fail(item.image_id, item.location, "worker", error)


def _one_pass(
    ray: Any,
    items: list[Any],
    job: JobSpec,
    options: RayOptions,
    report: RunReport,
    seen: set[str],
    start: float,
    **shape: Any,
) -> list[Any]:
    """Run ``items`` through one pipeline, fold their outcomes into ``report``; returns those that never came back."""
    dataset = _build_dataset(ray, items, job, options, **shape)
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            report.startup_s = report.startup_s or time.perf_counter() - start
            seen.update(report.add_outcomes(batch, skip=seen))
    except ray.exceptions.RayError as exc:
        raise ZeroSegError(f"the Ray job stopped: {_root_cause(exc)}") from None
    return [item for item in items if item.image_id not in seen]


def _traceback_as_text(record: logging.LogRecord) -> bool:
    """Keep a logged error's traceback as text, not as frames: the frames hold the pass's actors, so a handler that
    keeps records (a log capture) would keep them alive, and the next pass would wait forever for their CPUs."""
    if record.exc_info:
        record.exc_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
    return True


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _absolute(location: str) -> str:
    return location if is_uri(location) else os.path.abspath(location)


def _check_settings(pipeline: dict[str, Any]) -> None:
    """Check the method settings here, before any worker spends minutes loading a model with them."""
    from zeroseg.options import build_config
    from zeroseg.registry import DEFAULT_METHOD

    settings = {key: value for key, value in pipeline.items() if key not in _LOADING_KEYS}
    build_config(pipeline.get("method") or DEFAULT_METHOD, settings)
    naming = pipeline.get("naming")
    if naming is not None:
        naming.check()


def _root_cause(exc: BaseException) -> str:
    """The one-line message of the error behind a Ray error (a worker's ZeroSegError, say)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ZeroSegError):
            return one_line(cause)
        cause = getattr(cause, "cause", None) or cause.__cause__
    return one_line(exc)


def _init(ray: Any, options: RayOptions) -> None:
    """Start Ray on this machine (a single-node cluster, no dashboard) or connect to the one at ``options.address``."""
    init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    if options.address is None:
        init["num_cpus"] = options.num_cpus
    else:
        init["address"] = options.address
    try:
        ray.init(**(init | options.init_options))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = options.address or "this machine"
        raise ConfigError(f"`--address`: cannot start or reach Ray at {where} ({exc})") from None


def _build_dataset(ray: Any, todo: list[Any], job: JobSpec, options: RayOptions, **shape: Any) -> Any:
    """:func:`_pipeline` under this job's own Ray Data context (``shape``: its worker and batch arguments)."""
    context = copy.deepcopy(ray.data.DataContext.get_current())  # this job's settings, the caller's left alone
    context.max_errored_blocks = -1  # a batch lost after every retry is recorded, the job goes on
    context.enable_progress_bars = options.progress
    context.print_on_execution_start = options.progress
    context.enable_auto_log_stats = False
    with ray.data.DataContext.current(context):  # datasets keep the context they were made under
        return _pipeline(ray, todo, job, options, **shape)


def _pipeline(
    ray: Any,
    todo: list[Any],
    job: JobSpec,
    options: RayOptions,
    *,
    workers: int,
    cpus_per_worker: float,
    batch_size: int,
    split: bool,
) -> Any:
    """One pass over ``todo``. A ``split`` pass reruns lost images: one batch a block and one batch in flight per
    actor, so a batch whose worker dies takes no other batch down with it."""
    rows = [{reading.IMAGE_ID: item.image_id, reading.LOCATION: item.location} for item in todo]
    blocks = math.ceil(len(rows) / batch_size) if split else _num_blocks(len(rows), batch_size, workers)
    retries = options.max_task_retries
    pool = {"size": min(workers, blocks), "max_tasks_in_flight_per_actor": 1} if split else {"size": workers}
    dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    dataset = dataset.map_batches(
        reading.decode_batch,
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=options.read_cpus,
        max_retries=retries,  # Ray Data's default retries a read task whose process died without limit
    )
    return dataset.map_batches(
        SegmentWorker,
        fn_constructor_args=(job,),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(**pool),
        num_cpus=cpus_per_worker,
        num_gpus=options.gpus_per_worker or None,
        max_task_retries=retries,
        max_restarts=(retries + 1) * blocks,  # each death costs a block an attempt: the retries run out first
    )


def _num_blocks(rows: int, batch_size: int, workers: int) -> int:
    """Blocks are what Ray hands out: at least 4 per worker while there is work (so none idles while another
    holds a long block), at most 8 batches each (so few blocks, little scheduling, on large collections)."""
    batches = math.ceil(rows / batch_size)
    batches_per_block = max(1, min(8, batches // (4 * workers)))
    return max(1, math.ceil(batches / batches_per_block))


def _worker_shape(ray: Any, options: RayOptions) -> tuple[int, float]:
    """How many workers, and how many CPUs each holds.

    Workers hold ``cpus_per_worker`` unless the cluster is too small for that and a read task beside them:
    then they share what is left, so reading never waits forever for a CPU that the workers hold.
    """
    resources = ray.cluster_resources()
    cpus = resources.get("CPU", 1.0)
    if options.gpus_per_worker:
        gpus = resources.get("GPU", 0)
        if gpus < options.gpus_per_worker:
            raise ConfigError(f"`--gpus-per-worker` {options.gpus_per_worker:g}: the Ray cluster has {gpus:g} GPU(s)")
        workers = options.num_workers or max(1, int(gpus / options.gpus_per_worker))
    else:
        workers = options.num_workers or max(1, int((cpus - options.read_cpus) / options.cpus_per_worker))
    spare = (cpus - options.read_cpus) / workers
    if spare <= 0:
        raise ConfigError(f"`--num-workers` {workers}: the Ray cluster has only {cpus:g} CPU(s)")
    return workers, min(options.cpus_per_worker, spare)
