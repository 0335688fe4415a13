"""``zeroseg segment --engine ray``: the command line's options turned into a :func:`segment_on_ray` job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zeroseg.errors import ConfigError
from zeroseg.folder_run import resolve_formats


def segment_with_ray(
    inputs: list[str],
    *,
    out: Path,
    method: str,
    settings: dict[str, Any],
    device: str,
    dtype: str | None,
    load_options: dict[str, Any],
    naming: Any,
    save: str | None,
    output_format: str,
    batch_size: int,
    recursive: bool,
    overwrite: bool,
    address: str | None,
    num_workers: int | None,
    gpus_per_worker: float | None,
    max_retries: int | None = None,
) -> int:
    """Run the job, print its throughput report; returns the exit code (1 when any image failed).

    Raises:
        ZeroSegError: bad settings or inputs, or Ray cannot start (one line).
    """
    from zeroseg.cli.options import err_console
    from zeroseg.distributed.engine import RayOptions, segment_on_ray

    formats = resolve_formats(save, method=method, named=naming.enabled)
    if save and output_format == "parquet":
        raise ConfigError("`--save` chooses files; with `--format parquet` the segments go to Parquet instead")
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if device.startswith("cuda") else 0.0
    options = RayOptions(
        address=address, num_workers=num_workers, gpus_per_worker=gpus_per_worker, batch_size=batch_size
    )
    if max_retries is not None:
        options.max_task_retries = max_retries
    pipeline = {
        "method": method,
        "device": device,
        "dtype": dtype,
        "naming": naming if naming.enabled else None,
        **{key: value for key, value in load_options.items() if value is not None},
        **settings,
    }
    report = segment_on_ray(
        inputs,
        output=str(out),
        pipeline=pipeline,
        options=options,
        output_format=output_format,
        formats=formats,
        overwrite=overwrite,
        recursive=recursive,
        echo=lambda line: err_console.print(line, soft_wrap=True, highlight=False, markup=False),
    )
    for failure in report.failures[:20]:
        err_console.print(f"error: {failure.error}", soft_wrap=True, highlight=False, markup=False)
    if len(report.failures) > 20:
        err_console.print(f"... and {len(report.failures) - 20} more", highlight=False, markup=False)
    return 1 if report.failures else 0
