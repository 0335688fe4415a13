"""The distributed batch mode on a local Ray (2 CPUs) with the tiny model: same label maps as the local mode,
nothing lost when a worker dies, bad files in the failures manifest, reruns that redo only what is missing."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from zeroseg.cli.app import app
from zeroseg.distributed import FAILURES_FILE, REPORT_FILE, RayOptions, read_label_maps, segment_on_ray
from zeroseg.distributed.hooks import KillOnce, RecordBatches

from .conftest import NUM_IMAGES, SIZE

OPTIONS = RayOptions(num_workers=2, batch_size=2, progress=False)
runner = CliRunner()


@pytest.fixture(scope="module")
def local_labels(collection: Path, tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """Label maps of the local mode (``zeroseg segment`` without an engine), by output name."""
    out = tmp_path_factory.mktemp("local-out")
    result = runner.invoke(
        app, ["segment", str(collection / "photos"), "-r", *_model_flags(tiny_sd_path), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    return {str(p.relative_to(out).with_suffix("")): np.asarray(Image.open(p)) for p in out.rglob("img*.png")}


@pytest.fixture(scope="module")
def files_run(ray_session, collection: Path, tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """``zeroseg segment --engine ray`` over the photos and the broken files with 2 workers (the Ray of the
    session is joined, not restarted)."""
    out = tmp_path_factory.mktemp("files-out")
    inputs = [str(collection / "photos"), str(collection / "broken"), "-r", "-o", str(out)]
    flags = ["--engine", "ray", "--num-workers", "2", "--batch-size", "2", "--save", "png,overlay,json"]
    result = runner.invoke(app, ["segment", *inputs, *_model_flags(tiny_sd_path), *flags])
    return out, result


def test_two_workers_give_the_local_label_maps(files_run, local_labels):
    out, result = files_run
    assert result.exit_code == 1  # the broken files failed; everything else was done
    assert len(local_labels) == NUM_IMAGES
    for image_id, expected in local_labels.items():
        written = np.asarray(Image.open(out / f"{image_id}.png"))
        np.testing.assert_array_equal(written, expected, err_msg=image_id)
        assert (out / f"{image_id}_overlay.jpg").is_file() and (out / f"{image_id}.json").is_file()
    assert "24 segmented" in result.output and "images/s overall" in result.output


def test_broken_files_land_in_the_failures_manifest_with_one_line_errors(files_run, collection):
    out, result = files_run
    with open(out / FAILURES_FILE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["image_id"] for row in rows) == ["cut", "notes"]
    by_id = {row["image_id"]: row for row in rows}
    assert by_id["notes"]["path"] == str(collection / "broken" / "notes.png")
    assert (
        by_id["notes"]["error"] == f"{collection / 'broken' / 'notes.png'}: not an image file (cannot identify format)"
    )
    assert "truncated or corrupt" in by_id["cut"]["error"] or "cannot" in by_id["cut"]["error"]
    assert all(row["stage"] == "read" and "\n" not in row["error"] for row in rows)
    assert not list(out.glob("notes*")) and not list(out.glob("cut*"))
    assert f"error: {by_id['notes']['error']}" in " ".join(result.output.split())


def test_report_has_overall_and_per_worker_throughput_and_stage_times(files_run):
    out, _ = files_run
    document = json.loads((out / REPORT_FILE).read_text())
    assert document["images"] == {"total": 26, "already_done": 0, "segmented": 24, "skipped": 0, "failed": 2}
    assert document["images_per_s"] > 0 and 1 <= len(document["workers"]) <= 2  # a slow starter may get none
    assert sum(w["images"] for w in document["workers"].values()) == NUM_IMAGES
    assert all(w["images_per_s"] > 0 for w in document["workers"].values() if w["images"])
    assert document["stage_s"]["capture"] > 0 and document["stage_s"]["cluster"] > 0 and document["stage_s"]["write"] > 0
    settings = json.loads((out / "zeroseg-settings.json").read_text())
    assert settings["method"] == "diffseg" and settings["image_size"] == 64


def test_rerun_does_no_work(files_run, collection, pipeline_settings):
    out, _ = files_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    report = _photos_again(collection, out, pipeline_settings)  # the library entry point, this time
    assert (report.done, report.already_done, report.failures) == (0, NUM_IMAGES, [])
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before


def test_rerun_redoes_only_what_is_missing(files_run, collection, pipeline_settings, tmp_path):
    source, _ = files_run
    out = tmp_path / "out"
    shutil.copytree(source, out)
    (out / "img05.png").unlink()
    (out / "more" / "img08_overlay.jpg").unlink()
    record = RecordBatches(str(tmp_path / "batches"))
    report = _photos_again(collection, out, pipeline_settings, before_batch=record)
    done = sorted(image_id for batch in record.batches() for image_id in batch)
    assert done == ["img05", "more/img08"]
    assert (report.done, report.already_done) == (2, NUM_IMAGES - 2)
    assert (out / "img05.png").is_file() and (out / "more" / "img08_overlay.jpg").is_file()


def test_killed_worker_batch_is_redone_and_parquet_decodes_to_the_label_maps(
    ray_session, collection, pipeline_settings, local_labels, tmp_path
):
    out = tmp_path / "parquet"
    marker = tmp_path / "killed"
    report = segment_on_ray(
        [str(collection / "photos")],
        output=str(out),
        pipeline=pipeline_settings,
        options=OPTIONS,
        output_format="parquet",
        recursive=True,
        before_batch=KillOnce(str(marker), "img10"),
        echo=None,
    )
    assert marker.is_file()  # a worker really died in the middle of a batch
    assert report.failures == [] and report.done == NUM_IMAGES
    decoded = read_label_maps(str(out))
    assert sorted(decoded) == sorted(local_labels)
    for image_id, expected in local_labels.items():
        np.testing.assert_array_equal(decoded[image_id], expected, err_msg=image_id)

    import pyarrow.parquet as pq

    table = pq.read_table(out / "segments")
    assert set(table.column_names) >= {"image_id", "segment_id", "area", "bbox", "rle", "label", "score"}
    assert table.num_rows == sum(len(np.unique(labels)) for labels in local_labels.values())


def _photos_again(collection: Path, out: Path, pipeline_settings: dict, **options):
    """The photos again, into an output folder that already holds a run's files."""
    return segment_on_ray(
        [str(collection / "photos")],
        output=str(out),
        pipeline=pipeline_settings,
        options=OPTIONS,
        recursive=True,
        formats=("png", "overlay", "json"),
        echo=None,
        **options,
    )


def _model_flags(model: Path) -> list[str]:
    return ["--model", str(model), "--method", "diffseg", "--size", str(SIZE), "--device", "cpu"]


def test_a_batch_that_fails_without_retries_is_recorded_as_lost_and_the_job_goes_on(
    ray_session, collection, pipeline_settings, tmp_path
):
    photos = tmp_path / "few"
    photos.mkdir()
    for name in ("img01", "img02", "img03", "img05"):
        shutil.copy(collection / "photos" / f"{name}.png", photos)
    options = RayOptions(num_workers=1, batch_size=1, max_task_retries=0, progress=False)
    out = tmp_path / "out"
    report = segment_on_ray(
        [str(photos)],
        output=str(out),
        pipeline=pipeline_settings,
        options=options,
        before_batch=KillOnce(str(tmp_path / "killed"), "img02"),
        echo=None,
    )
    # The batch whose worker died is lost (with a batch queued on the same actor, maybe); its images are run
    # again alone, where img02 goes through: nothing is recorded as failed, nothing is counted twice.
    assert (tmp_path / "killed").is_file()
    assert report.failures == [] and report.done == 4
    assert {p.stem for p in out.glob("img*.png")} == {"img01", "img02", "img03", "img05"}
    assert (out / FAILURES_FILE).read_text() == "image_id,path,stage,error\n"
