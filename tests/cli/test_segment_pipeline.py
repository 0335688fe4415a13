"""``zeroseg segment`` over the library pipeline: pinned label maps, shared output folders, formats, new methods."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from test_pins import digest, pin_image, pinned
from toy_method import toy_method_registered
from zeroseg.cli.app import app
from zeroseg.rle import decode_rle

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_the_command_line_writes_the_pinned_label_maps(tiny_sd_path, tiny_sdxl_path, tmp_path):
    Image.fromarray(pin_image()).save(tmp_path / "a.png")
    Image.fromarray(pin_image(80, 80, seed=4)).save(tmp_path / "b.png")
    inputs = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    cases = {
        "diffseg-fine": [
            str(tiny_sd_path),
            "--method",
            "diffseg",
            "--size",
            "128",
            "--noise",
            "--kl-threshold",
            "1e-4",
            "--anchors",
            "8",
        ],
        "diffcut-pamr": [
            str(tiny_sdxl_path),
            "--size",
            "128",
            "--pamr-iters",
            "3",
            "--pamr-dilations",
            "1,2",
            "--tau",
            "0.9",
        ],
    }
    for case, (model, *options) in cases.items():
        out = tmp_path / case
        result = _run("segment", *inputs, "--model", model, "--out", str(out), "--batch-size", "2", *options)
        assert result.exit_code == 0, result.output
        written = [digest(np.asarray(Image.open(out / f"{n}.png")).astype(np.int32)) for n in ("a", "b")]
        assert written == pinned(case), case


def test_json_output_without_a_vocabulary_has_every_mask(tiny_sd_path, tmp_path):
    Image.fromarray(pin_image()).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "a.png"), "--model", str(tiny_sd_path), "--out", str(out)]
    result = _run(
        *args, "--method", "diffseg", "--size", "64", "--noise", "--kl-threshold", "1e-4", "--save", "png,json"
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.png", "zeroseg-settings.json"]
    labels = np.asarray(Image.open(out / "a.png"))
    document = json.loads((out / "a.json").read_text())
    assert len(document["segments"]) == labels.max() + 1 > 1
    for record in document["segments"]:
        np.testing.assert_array_equal(decode_rle(record["segmentation"]), labels == record["id"])
        assert record["area"] == int((labels == record["id"]).sum())
    bad = _run(*args, "--save", "png,pdf")
    assert bad.exit_code == 1 and "`--save`" in bad.output and "pdf" in bad.output


def test_files_that_are_not_images_are_counted_in_the_summary(tiny_sd_path, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(pin_image()).save(folder / "a.png")
    (folder / "x.svg").write_text("<svg/>")
    (folder / "notes.txt").write_text("notes")
    result = _run(
        "segment",
        str(folder),
        "--model",
        str(tiny_sd_path),
        "--out",
        str(tmp_path / "out"),
        "--method",
        "diffseg",
        "--size",
        "64",
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "skipped 2 files that are not images:" in text and "notes.txt" in text and "x.svg" in text


def test_settings_are_validated_before_the_model_loads(tmp_path):
    Image.fromarray(pin_image()).save(tmp_path / "a.png")
    missing = str(tmp_path / "no-model")  # loading it would fail: the setting error must come first
    result = _run(
        "segment",
        str(tmp_path / "a.png"),
        "--model",
        missing,
        "--method",
        "diffseg",
        "--exact-reference",
        "--iterations",
        "1",
    )
    assert result.exit_code == 1 and "`--iterations` must be at least 2" in result.output
    assert "no-model" not in result.output
    bad_device = _run("segment", str(tmp_path / "a.png"), "--model", missing, "--device", "gpu")
    assert bad_device.exit_code == 1 and "`--device`" in bad_device.output and "cuda:N" in bad_device.output


def test_two_runs_into_one_folder_share_the_work(tiny_sd_path, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(16):
        Image.fromarray(pin_image(64 + index, 72, seed=index)).save(folder / f"img{index:02d}.png")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "zeroseg",
        "segment",
        str(folder),
        "--model",
        str(tiny_sd_path),
        "--out",
        str(out),
        "--method",
        "diffseg",
        "--size",
        "64",
    ]
    env = {**os.environ, "COLUMNS": "300"}
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    done = [int(text.split(" segmented")[0].split()[-1]) for text in outputs]
    assert sum(done) == 16, outputs  # every image computed exactly once, by one run or the other
    assert all("failed" not in text for text in outputs), outputs
    for index in range(16):
        assert (out / f"img{index:02d}.png").exists() and (out / f"img{index:02d}_overlay.jpg").exists()
    assert not list(out.glob(".*claim")), "claims are released"


def test_a_method_registered_at_run_time_works_in_segment(tiny_sd_path, tmp_path):
    Image.fromarray(pin_image(40, 90)).save(tmp_path / "a.png")
    with toy_method_registered():
        help_text = " ".join(_run("segment", "--help").output.split())
        assert "--stripes" in help_text and "toy" in help_text
        result = _run(
            "segment",
            str(tmp_path / "a.png"),
            "--method",
            "toy",
            "--model",
            str(tiny_sd_path),
            "--stripes",
            "3",
            "--out",
            str(tmp_path / "out"),
        )
        assert result.exit_code == 0, result.output
        labels = np.asarray(Image.open(tmp_path / "out" / "a.png"))
        np.testing.assert_array_equal(labels[0], np.arange(90) * 3 // 90)
        refused = _run("segment", str(tmp_path / "a.png"), "--method", "toy", "--tau", "0.3")
        assert refused.exit_code == 1 and "`--tau` is a diffcut option" in refused.output
    assert "--stripes" not in _run("segment", "--help").output


def test_pipeline_stream_goes_on_past_bad_images_and_resegments_without_a_backbone_pass(sd_backbone, tmp_path):
    from zeroseg.pipeline import Failure, Pipeline
    from zeroseg.registry import create_segmenter

    segmenter = create_segmenter(
        "diffseg", model=sd_backbone.model, backbone=sd_backbone, image_size=64, noise=True, kl_threshold=1e-4
    )
    (tmp_path / "bad.png").write_text("not an image")
    pipe = Pipeline(segmenter, batch_size=2, keep_capture=True)
    items = list(pipe.stream([pin_image(), tmp_path / "bad.png", pin_image(50, 60)]))
    assert isinstance(items[1], Failure) and "bad.png" in items[1].error
    first, last = items[0], items[2]
    assert first.labels.shape == (96, 136) and last.labels.shape == (50, 60)
    assert [s.id for s in first.segments] == list(range(first.num_segments))
    assert sum(s.area for s in first.segments) == 96 * 136 and first.image.shape == (96, 136, 3)
    assert set(first.timings) >= {"load", "capture", "segment"}
    passes = segmenter.num_backbone_passes
    coarser = pipe.resegment(first, kl_threshold=1.0)
    assert segmenter.num_backbone_passes == passes and coarser.num_segments < first.num_segments
    direct = create_segmenter(
        "diffseg", model=sd_backbone.model, backbone=sd_backbone, image_size=64, noise=True, kl_threshold=1.0
    ).segment(pin_image())
    np.testing.assert_array_equal(coarser.labels, direct.labels)


def test_the_tree_output_holds_the_ncut_tree_of_each_image(tiny_sdxl_path, tiny_sd_path, tmp_path):
    from zeroseg.diffcut.tree import NCutTree

    Image.fromarray(pin_image()).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "a.png"), "--out", str(out), "--save", "png,tree"]
    result = _run(*args, "--model", str(tiny_sdxl_path), "--size", "128", "--no-pamr", "--tau", "0.5")
    assert result.exit_code == 0, result.output
    tree = NCutTree.from_dict(json.loads((out / "a_tree.json").read_text())["tree"])
    labels = np.asarray(Image.open(out / "a.png"))
    assert tree.max_tau >= 0.9 and tree.num_segments(0.5) == labels.max() + 1
    refused = _run(*args, "--model", str(tiny_sd_path), "--method", "diffseg")
    assert refused.exit_code == 1 and "needs a method with a segment tree (diffcut)" in refused.output
