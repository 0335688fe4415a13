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


def test_paper_preset_runs_the_exact_reference_numerics(tiny_sd, tmp_path):
    from zeroseg.eval.api import evaluate_dataset

    from .fakes import quadrant_image, write_png

    base = tmp_path / "VOCdevkit" / "VOC2012"
    for name, order in (("a", (0, 1, 2, 3)), ("b", (3, 2, 1, 0))):
        image, labels = quadrant_image(order, size=40)
        write_png(base / "JPEGImages" / f"{name}.png", image)
        (base / "JPEGImages" / f"{name}.png").rename(base / "JPEGImages" / f"{name}.jpg")
        write_png(base / "SegmentationClass" / f"{name}.png", np.where(labels < 2, labels + 1, 0).astype(np.uint8), "P")
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\n")
    common = {"model": str(tiny_sd), "cache_dir": str(tmp_path / "c")}
    preset = evaluate_dataset(None, tmp_path, preset="diffcut-voc", settings={"image_size": 128}, **common)
    assert preset.settings["exact_reference"] is True and preset.preset == "diffcut-voc"
    explicit = {"image_size": 128, "tau": 0.5, "alpha": 10, "pamr_iters": 10, "pamr_dilations": (1, 2, 4, 8)}
    exact = evaluate_dataset("voc", tmp_path, method="diffcut", dataset_options={"exact_reference": True},
                             settings={**explicit, "exact_reference": True}, **common)  # fmt: skip
    assert exact.run_id == preset.run_id and exact.timing["images_resumed"] == 2  # the very same run
    default_numerics = {"image_size": 128, "exact_reference": False}
    fixed = evaluate_dataset(None, tmp_path, preset="diffcut-voc", settings=default_numerics, **common)
    assert fixed.run_id != preset.run_id and fixed.settings["exact_reference"] is False
    assert fixed.timing["images_from_cache"] == 2  # the numerics are a clustering setting: captures reused
