"""The folder run behind every front end: formats and their needs, skips, claims, waits, failures, settings."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zeroseg.errors import ConfigError
from zeroseg.folder_run import (
    SETTINGS_FILE,
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_SKIPPED,
    FolderJob,
    FolderRun,
    resolve_formats,
    settings_document,
    unfinished,
)
from zeroseg.pipeline import build_pipeline
from zeroseg.refine.relabel import canonical_labels
from zeroseg.writers import OutputWriter


@pytest.fixture(scope="module")
def pipeline(sd_backbone):
    return build_pipeline("diffseg", backbone=sd_backbone, model=sd_backbone.model, image_size=64, batch_size=2)


def _jobs(folder: Path, count: int = 3) -> list[FolderJob]:
    rng = np.random.default_rng(count)
    jobs = []
    for index in range(count):
        path = folder / f"img{index}.png"
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
        jobs.append(FolderJob(path, f"img{index}", str(path)))
    return jobs


def test_formats_declare_their_needs_and_are_refused_before_loading():
    assert resolve_formats(None, method="diffcut", named=False) == ("png", "overlay")
    assert resolve_formats(None, method="diffseg", named=True) == ("png", "overlay", "json", "labelled")
    assert resolve_formats("png,tree", method="diffcut", named=False) == ("png", "tree")
    with pytest.raises(ConfigError, match=r"`tree` output needs a method with a segment tree \(diffcut\), not diffseg"):
        resolve_formats("png,tree", method="diffseg", named=False)
    with pytest.raises(ConfigError, match="`labelled` output needs --labels or --vocabulary"):
        resolve_formats("labelled", method="diffcut", named=False)
    with pytest.raises(ConfigError, match="unknown output format"):
        resolve_formats("png,gif", method="diffcut", named=False)


def test_writes_every_image_with_canonical_ids_and_the_settings_file_once(pipeline, tmp_path):
    jobs = _jobs(tmp_path)
    writer = OutputWriter(tmp_path / "out", ("png", "json"))
    outcomes = list(FolderRun(pipeline, writer)(jobs))
    assert [o.status for o in outcomes] == [STATUS_DONE] * 3
    assert all(o.segments > 0 and o.timings["write"] >= 0 for o in outcomes)
    for job in jobs:
        labels = np.asarray(Image.open(tmp_path / "out" / f"{job.stem}.png")).astype(np.int32)
        assert np.array_equal(labels, canonical_labels(labels))
    settings = (tmp_path / "out" / SETTINGS_FILE).read_bytes()
    assert settings == settings_document(pipeline.settings())
    assert json.loads(settings)["method"] == "diffseg" and "numerics" in json.loads(settings)


def test_existing_outputs_are_skipped_and_a_bad_image_fails_alone(pipeline, tmp_path):
    jobs = _jobs(tmp_path)
    writer = OutputWriter(tmp_path / "out", ("png",))
    list(FolderRun(pipeline, writer)(jobs[:1]))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    jobs.append(FolderJob(broken, "broken", str(broken)))
    todo, finished = unfinished(jobs, writer)
    assert finished == 1 and [job.stem for job in todo] == ["img1", "img2", "broken"]
    outcomes = {o.job.stem: o for o in FolderRun(pipeline, writer)(todo)}
    assert outcomes["img1"].status == outcomes["img2"].status == STATUS_DONE
    assert outcomes["broken"].status == STATUS_FAILED and outcomes["broken"].stage == "segment"
    assert "broken.png" in outcomes["broken"].error and "\n" not in outcomes["broken"].error


def test_an_image_another_run_holds_is_waited_for_and_counted_as_its(pipeline, tmp_path):
    jobs = _jobs(tmp_path, 2)
    writer = OutputWriter(tmp_path / "out", ("png",))
    other = OutputWriter(tmp_path / "out", ("png",))
    result = pipeline([jobs[1].image])[0]
    waits = []
    with other.claim("img1") as held:
        assert held

        def finish_later() -> None:
            time.sleep(0.3)
            other.write(result, "img1")

        thread = threading.Thread(target=finish_later)
        thread.start()
        run = FolderRun(pipeline, writer, poll_seconds=0.05)
        outcomes = list(run(jobs, waiting=waits.append))
        thread.join()
    assert [(o.job.stem, o.status, o.by_other_run) for o in outcomes] == [
        ("img0", STATUS_DONE, False),
        ("img1", STATUS_SKIPPED, True),
    ]
    assert waits and waits[0] == 1


def test_a_write_failure_is_one_line_and_the_run_goes_on(pipeline, tmp_path):
    jobs = _jobs(tmp_path, 2)
    writer = OutputWriter(tmp_path / "out", ("png",))
    (tmp_path / "out" / "img0.png").mkdir()  # a folder where the file should go
    outcomes = {
        o.job.stem: o for o in FolderRun(pipeline, OutputWriter(tmp_path / "out", ("png",), overwrite=True))(jobs)
    }
    assert outcomes["img0"].status == STATUS_FAILED and outcomes["img0"].stage == "write"
    assert outcomes["img1"].status == STATUS_DONE and writer.complete("img1")
