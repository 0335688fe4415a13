"""End to end on the tiny random-weight model: ``zeroseg evaluate`` checked against a recomputation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from zeroseg.eval.matching import match_image
from zeroseg.eval.metrics import IoUAccumulator

testing = pytest.importorskip("zeroseg.testing")
if not hasattr(testing, "make_tiny_model"):  # pragma: no cover
    pytest.skip("zeroseg.testing.make_tiny_model is not available", allow_module_level=True)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return testing.make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd", family="sd")


def _app():
    from zeroseg.cli.app import app

    return app


@pytest.mark.parametrize("method", ["diffseg", "diffcut"])
def test_evaluate_on_tiny_model_matches_recomputation(method, tiny_sd, quadrant_folder, tmp_path):
    out, preds, cache = tmp_path / "r.json", tmp_path / "p", tmp_path / "c"
    size = "64" if method == "diffseg" else "128"
    # DiffCut: PAMR (2 iterations) runs after the clustering, at the evaluation size
    extra = ["--set", "pamr_iters=2"] if method == "diffcut" else ["--set", "anchors=4"]
    args = ["evaluate", "--dataset", "folder", "--root", str(quadrant_folder), "--method", method,
            "--model", str(tiny_sd), "--set", f"image_size={size}", *extra, "--device", "cpu",
            "--output", str(out), "--save-predictions", str(preds), "--cache", str(cache), "--limit", "2"]  # fmt: skip
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["num_images"] == 2 and report["method"] == method
    assert report["timing"]["images_captured"] == 2
    acc = IoUAccumulator(4)
    for i in range(2):
        pred = np.asarray(Image.open(preds / f"img{i}.png")).astype(int)
        gt = np.asarray(Image.open(preds / f"img{i}_gt.png")).astype(int)
        expected = int(size) // (1 if method == "diffseg" else 8)
        assert pred.shape == gt.shape == (expected, expected)
        acc.add(match_image(np.where(gt == 255, -1, gt), pred, 4))
    assert report["miou"] == pytest.approx(acc.miou)
    assert report["pixel_accuracy"] == pytest.approx(acc.pixel_accuracy)
    # the second run reads every capture from the cache
    again = CliRunner().invoke(_app(), [*args, "--restart", "--output", str(tmp_path / "r2.json")])
    assert again.exit_code == 0, again.output
    second = json.loads((tmp_path / "r2.json").read_text())
    assert second["timing"]["images_from_cache"] == 2 and second["timing"]["images_captured"] == 0
    assert second["miou"] == pytest.approx(report["miou"])
