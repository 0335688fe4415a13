"""Evaluation reports: JSON (everything), CSV (one row per run) and Markdown (readable table)."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zeroseg._version import NUMERICS_VERSION, __version__

CSV_FIELDS = (
    "created", "dataset", "split", "method", "preset", "baseline", "matching", "miou", "pixel_accuracy",
    "num_images", "settings", "model", "version", "run_id",
)  # fmt: skip


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _percent(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


@dataclass
class EvaluationReport:
    """The result of one evaluation run.

    Attributes:
        miou: mean IoU, a fraction in [0, 1] (NaN if nothing was scored).
        pixel_accuracy: pixel accuracy, a fraction in [0, 1].
        per_class_iou: IoU per class name (``None`` for classes never seen nor predicted).
        num_images: images scored.
        method: ``diffseg`` or ``diffcut``.
        dataset: dataset settings (name, root, split, label options).
        settings: method settings (``config.to_dict()``).
        capture: the capture key (model, image size, timestep, seed, dtype).
        protocol: protocol settings; the string ``"open-vocabulary"`` for open-vocabulary runs (whose settings
            are in :attr:`open_vocabulary`).
        annotators: multi-annotator datasets: the mean and best over annotators.
        baseline: baseline settings when a baseline was scored.
        matching: ``per-image`` or ``dataset`` (``open-vocabulary``: classes come from CLIP, no matching).
        open_vocabulary: open-vocabulary runs: CLIP model, vocabulary, sizes, PAMR and metric settings.
        preset: preset name, if any.
        run_id: hash of every setting of the run (names its resumable results log).
        numerics_version: zeroseg's numerics version (:data:`zeroseg._version.NUMERICS_VERSION`), part of the
            run id.
        cache_storage: how the feature cache stored the captures scored: ``lossless`` (as captured, also for a
            run without a cache) or ``float16`` (lossy opt-in); part of the run id.
        timing: seconds, images per second, capture vs clustering time.
        resumed: when the run reused an earlier identical run's results: the results log (``log``) and how many
            images it reused (``images`` of ``of``).
        not_reused: results logs of the same settings under another numerics version or cache storage that held
            results of images this run computed again (``log``, ``numerics_version``, ``cache_storage``,
            ``images``).
        version: zeroseg version.
        created: UTC timestamp.
    """

    miou: float
    pixel_accuracy: float
    per_class_iou: dict[str, float | None]
    num_images: int
    method: str = ""
    dataset: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    capture: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] | str = field(default_factory=dict)
    annotators: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    matching: str = "per-image"
    open_vocabulary: dict[str, Any] | None = None
    preset: str | None = None
    run_id: str = ""
    numerics_version: int = NUMERICS_VERSION
    cache_storage: str = "lossless"
    timing: dict[str, Any] = field(default_factory=dict)
    resumed: dict[str, Any] | None = None
    not_reused: list[dict[str, Any]] | None = None
    version: str = __version__
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN written as null)."""
        return _json_safe(asdict(self))

    def headline(self) -> str:
        """One line with the main numbers, in percent."""
        name = self.baseline["name"] if self.baseline else self.method
        if self.open_vocabulary is not None:
            name += " + CLIP (open-vocabulary, per-image mIoU)"
        return (
            f"{self.dataset.get('dataset', '?')} ({self.dataset.get('split', '?')}), {name}: "
            f"mIoU {_percent(self.miou)}, pixel accuracy {_percent(self.pixel_accuracy)} "
            f"over {self.num_images} images"
        )

    def resume_line(self) -> str | None:
        """One line saying that the run resumed, from where and how many images it reused (``None`` if not)."""
        if not self.resumed:
            return None
        return (
            f"Resumed run {self.run_id} from {self.resumed['log']}: reused {self.resumed['images']} of "
            f"{self.resumed['of']} images (--restart recomputes them)"
        )

    def notices(self) -> list[str]:
        """Lines about how the numbers were computed: logs of other versions not reused, a lossy cache."""
        lines = [not_reused_line(entry, self.numerics_version) for entry in self.not_reused or []]
        if self.cache_storage != "lossless":
            lines.append(
                f"Captures were read from a {self.cache_storage} feature cache (lossy): the numbers may differ from "
                "a lossless run"
            )
        return lines

    def csv_row(self) -> dict[str, Any]:
        """The CSV row of this run (:data:`CSV_FIELDS`)."""
        return {
            "created": self.created,
            "dataset": self.dataset.get("dataset", ""),
            "split": self.dataset.get("split", ""),
            "method": self.method,
            "preset": self.preset or "",
            "baseline": self.baseline["name"] if self.baseline else "",
            "matching": self.matching,
            "miou": _json_safe(self.miou),
            "pixel_accuracy": _json_safe(self.pixel_accuracy),
            "num_images": self.num_images,
            "settings": json.dumps(_json_safe(self.settings), sort_keys=True),
            "model": json.dumps(_json_safe(self.capture), sort_keys=True),
            "version": self.version,
            "run_id": self.run_id,
        }

    def to_markdown(self) -> str:
        """A readable summary: settings, headline numbers, per-class IoU."""
        lines = [f"# {self.headline()}", ""]
        lines += ["| metric | value (%) |", "|---|---|"]
        lines += [
            f"| mIoU | {_percent(self.miou)} |",
            f"| pixel accuracy | {_percent(self.pixel_accuracy)} |",
        ]
        if self.annotators:
            for which in ("mean", "best"):
                stats = self.annotators.get(which, {})
                lines.append(f"| mIoU ({which} over annotators) | {_percent(stats.get('miou'))} |")
                lines.append(f"| pixel accuracy ({which} over annotators) | {_percent(stats.get('pixel_accuracy'))} |")
        lines += [
            "",
            f"Images: {self.num_images}. Matching: {self.matching}. zeroseg {self.version} (numerics version "
            f"{self.numerics_version}, {self.cache_storage} feature cache).",
            "",
        ]
        lines += ["| setting | value |", "|---|---|"]
        extra = {"baseline": self.baseline} if self.baseline else {}
        if self.open_vocabulary is not None:
            extra = {f"open_vocabulary.{k}": v for k, v in self.open_vocabulary.items()}
        for key, value in {**self.settings, **extra}.items():
            lines.append(f"| {key} | {value} |")
        if self.per_class_iou:
            lines += ["", "| class | IoU (%) |", "|---|---|"]
            lines += [f"| {name} | {_percent(v)} |" for name, v in self.per_class_iou.items()]
        return "\n".join(lines) + "\n"


REPORT_HEADER = (
    "method", "preset", "dataset", "settings", "capture", "protocol", "baseline", "matching", "open_vocabulary",
    "run_id", "numerics_version", "cache_storage",
)  # fmt: skip
"""The report fields that describe a run (as opposed to its scores and timing)."""


def build_report(
    header: dict[str, Any],
    summary: dict[str, Any],
    timing: dict[str, Any],
    resumed: dict[str, Any] | None = None,
    not_reused: list[dict[str, Any]] | None = None,
) -> EvaluationReport:
    """The report of a run (or of merged shards) from its header, its scorer's summary and its timing.

    Args:
        header: the :data:`REPORT_HEADER` fields (missing ones keep their defaults).
        summary: ``miou``, ``pixel_accuracy``, ``per_class_iou``, ``num_images`` (and ``annotators``).
        timing: the ``timing`` section.
        resumed: the ``resumed`` section, if the run reused earlier results.
        not_reused: the ``not_reused`` section, if logs of another numerics version or storage were passed over.
    """
    described = {key: header[key] for key in REPORT_HEADER if key in header}
    return EvaluationReport(**summary, **described, timing=timing, resumed=resumed, not_reused=not_reused)


def not_reused_line(entry: dict[str, Any], numerics_version: int) -> str:
    """One line saying which results log was not reused and why (an entry of ``not_reused``; ``numerics_version``:
    the run's own)."""
    version = entry.get("numerics_version")
    if version != numerics_version:
        which = "an earlier" if isinstance(version, int) and version < numerics_version else "another"
        what = f"results of {which} zeroseg numerics version ({version})"
    else:
        what = f"results computed from a {entry.get('cache_storage')} feature cache"
    return f"{what} in {entry['log']} were not reused ({entry['images']} images); recomputing"


def write_report(report: EvaluationReport, path: str | Path) -> list[Path]:
    """Write ``path`` (JSON), append a row to ``path`` with ``.csv`` and write ``.md`` beside it.

    Returns:
        The files written.
    """
    from zeroseg.eval.cache import write_atomic

    path = Path(path)
    text = json.dumps(report.to_dict(), indent=2).encode("utf-8")
    write_atomic(path, lambda handle: handle.write(text))
    csv_path = path.with_suffix(".csv")
    append_csv([report], csv_path)
    md_path = path.with_suffix(".md")
    md = report.to_markdown().encode("utf-8")
    write_atomic(md_path, lambda handle: handle.write(md))
    return [path, csv_path, md_path]


def append_csv(reports: list[EvaluationReport], path: str | Path) -> None:
    """Append one row per report to a CSV file (header written when the file is new)."""
    path = Path(path)
    new = not path.is_file() or path.stat().st_size == 0
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_FIELDS))
    if new:
        writer.writeheader()
    for report in reports:
        writer.writerow(report.csv_row())
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(buffer.getvalue())


def sweep_markdown(reports: list[EvaluationReport], varied: list[str]) -> str:
    """A Markdown table with one row per sweep step: the varied settings, mIoU and pixel accuracy."""
    head = "| " + " | ".join([*varied, "mIoU (%)", "pixel accuracy (%)", "images"]) + " |"
    lines = [head, "|" + "---|" * (len(varied) + 3)]
    for report in reports:
        values = [str(report.settings.get(name, "")) for name in varied]
        values += [_percent(report.miou), _percent(report.pixel_accuracy), str(report.num_images)]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"
