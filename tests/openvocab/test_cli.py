"""``zeroseg segment --labels/--vocabulary`` end to end on a tiny diffusion model and a tiny CLIP."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from zeroseg.cli.app import app
from zeroseg.rle import decode_rle

from .conftest import TINY_MODEL_NAME

runner = CliRunner()


def _image(path):
    array = np.zeros((48, 64, 3), np.uint8)
    array[:, :32] = (220, 30, 30)
    array[:, 32:] = (30, 30, 220)
    Image.fromarray(array).save(path)


def _segment_args(folder, out, model, clip_weights, *naming: str) -> list[str]:
    """``zeroseg segment`` on a fresh two-colour image with the tiny models, plus the naming options."""
    _image(folder / "x.png")
    return [
        "segment", str(folder / "x.png"), "--method", "diffseg", "--model", str(model), "--size", "64",
        "--out", str(out), *naming, "--clip-model", TINY_MODEL_NAME, "--clip-weights", str(clip_weights),
        "--clip-size", "64",
    ]  # fmt: skip


def test_segments_are_named_and_exported(tiny_sd_path, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    args = _segment_args(tmp_path, out, tiny_sd_path, tiny_checkpoint, "--labels", "red|crimson,blue")
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "x.json",
        "x.png",
        "x_labelled.jpg",
        "x_overlay.jpg",
        "zeroseg-settings.json",
    ]
    document = json.loads((out / "x.json").read_text())
    labels = np.asarray(Image.open(out / "x.png"))
    assert (document["height"], document["width"]) == labels.shape
    covered = np.zeros(labels.shape, bool)
    for segment in document["segments"]:
        mask = decode_rle(segment["segmentation"])
        np.testing.assert_array_equal(mask, labels == segment["id"])
        assert segment["label"] in ("red", "blue") and 0 <= segment["score"] <= 1
        assert segment["area"] == int(mask.sum())
        covered |= mask
    assert covered.all()
    assert Image.open(out / "x_labelled.jpg").size == (64, 48)
    settings = json.loads((out / "zeroseg-settings.json").read_text())
    assert settings["naming"]["labels"] == "red|crimson,blue"


def test_merging_gives_one_segment_per_name(tiny_sd_path, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    args = _segment_args(tmp_path, out, tiny_sd_path, tiny_checkpoint, "--labels", "red,blue", "--merge-same-label")
    assert runner.invoke(app, args, catch_exceptions=False).exit_code == 0
    document = json.loads((out / "x.json").read_text())
    names = [segment["label"] for segment in document["segments"]]
    assert len(names) == len(set(names))
    labels = np.asarray(Image.open(out / "x.png"))
    assert np.unique(labels).tolist() == list(range(len(names)))


def test_naming_options_are_checked_before_loading(tmp_path):
    result = runner.invoke(app, ["segment", str(tmp_path), "--labels", "a", "--vocabulary", "voc"])
    assert result.exit_code == 1 and "not both" in result.output
    result = runner.invoke(app, ["segment", str(tmp_path), "--merge-same-label"])
    assert result.exit_code == 1 and "--labels" in result.output
