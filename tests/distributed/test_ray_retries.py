"""Bounded retries on Ray: an image that kills every worker that takes it ends up alone in a batch and in the
failures manifest, the rest of its batch is written, and the job ends."""

from __future__ import annotations

import csv
import json
import shutil
import time

import numpy as np
import pytest

from zeroseg.distributed import FAILURES_FILE, REPORT_FILE, RayOptions, segment_on_ray
from zeroseg.distributed.hooks import KillAlways
from zeroseg.distributed.report import OUTCOME_COLUMNS, RunReport
from zeroseg.errors import ConfigError

NAMES = ("img01", "img02", "img03")


def test_retries_are_bounded_by_default():
    assert RayOptions().max_task_retries == 2
    RayOptions(max_task_retries=0).check()
    with pytest.raises(ConfigError, match="retries must not be negative"):
        RayOptions(max_task_retries=-1).check()


def test_outcomes_delivered_twice_are_counted_once():
    def batch(*ids: str) -> dict:
        rows = {name: np.array([""] * len(ids), dtype=object) for name in OUTCOME_COLUMNS}
        rows |= {name: np.ones(len(ids)) for name in OUTCOME_COLUMNS if name.endswith("_s") or name == "finished_at"}
        rows |= {"image_id": np.array(ids, dtype=object), "status": np.array(["done"] * len(ids), dtype=object)}
        rows |= {"worker": np.array(["w"] * len(ids), dtype=object), "segments": np.full(len(ids), 3)}
        return rows

    report, seen = RunReport(), set()
    seen.update(report.add_outcomes(batch("a", "b"), skip=seen))
    assert report.add_outcomes(batch("b", "c"), skip=seen) == ["c"]
    assert (report.done, report.segments, report.workers["w"].images, report.stage_s["capture"]) == (3, 9, 3, 3.0)


def test_an_image_that_kills_every_worker_is_split_out_and_recorded(
    ray_session, collection, pipeline_settings, tmp_path
):
    photos = tmp_path / "few"
    photos.mkdir()
    for name in NAMES:
        shutil.copy(collection / "photos" / f"{name}.png", photos)
    out = tmp_path / "out"
    killer = KillAlways("img02", str(tmp_path / "kills"))
    lines: list[str] = []
    begin = time.perf_counter()
    report = segment_on_ray(
        [str(photos)],
        output=str(out),
        pipeline=pipeline_settings,
        options=RayOptions(num_workers=2, batch_size=2, max_task_retries=1, progress=False),
        before_batch=killer,
        echo=lines.append,
    )
    assert time.perf_counter() - begin < 120
    # Two attempts in a batch of 2 (img01 shares it), two more alone; then it is given up.
    assert killer.kills() == 4
    assert any("run again in batches of 1" in line for line in lines)
    location = str(photos / "img02.png")
    assert [(f.image_id, f.path, f.stage) for f in report.failures] == [("img02", location, "worker")]
    assert report.failures[0].error == f"{location}: worker died while segmenting it, 2 times (see Ray's logs)"
    assert report.done == len(NAMES) - 1
    assert {p.stem for p in out.glob("img*.png")} == set(NAMES) - {"img02"}
    assert all((out / f"{name}_overlay.jpg").is_file() for name in NAMES if name != "img02")
    with open(out / FAILURES_FILE, newline="") as handle:
        assert [row["image_id"] for row in csv.DictReader(handle)] == ["img02"]
    document = json.loads((out / REPORT_FILE).read_text())
    assert document["images"] == {"total": 3, "already_done": 0, "segmented": 2, "skipped": 0, "failed": 1}
    assert sum(w["images"] for w in document["workers"].values()) == len(NAMES) - 1
