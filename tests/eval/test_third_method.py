"""A method registered from the test suite works in ``evaluate`` and ``sweep`` (command line and Python)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from zeroseg.cli.app import app
from zeroseg.errors import ConfigError
from zeroseg.eval.api import evaluate_dataset, sweep_dataset
from zeroseg.registry import list_methods

from .toy_method import QuadrantSegmenter

runner = CliRunner()


def _folder_args(root, tmp_path, *extra):
    return ["--dataset", "folder", "--root", str(root), "--cache", str(tmp_path / "c"), "--device", "cpu", *extra]


def test_python_evaluate_and_sweep_run_the_registered_method(toy_method, quadrant_folder, tmp_path):
    names = {"class_names": ["red", "green", "blue", "black"]}
    report = evaluate_dataset("folder", quadrant_folder, method=toy_method, dataset_options=names,
                              cache_dir=str(tmp_path / "c"))  # fmt: skip
    assert report.method == toy_method and report.protocol["name"] == "diffseg"  # the protocol its spec names
    assert report.miou == pytest.approx(1.0) and report.settings["tau"] == 0.5
    assert QuadrantSegmenter.captured[0] == 5
    reports = sweep_dataset("folder", quadrant_folder, {"tau": [0.5, 2.0]}, method=toy_method,
                            cache_dir=str(tmp_path / "c"), resume=False)  # fmt: skip
    assert [r.settings["tau"] for r in reports] == [0.5, 2.0]
    assert reports[0].miou == pytest.approx(1.0) and reports[1].miou < 0.5
    assert QuadrantSegmenter.captured[0] == 5  # every sweep step read the captures from the cache


def test_python_api_validates_the_method_config_before_running(toy_method, quadrant_folder):
    with pytest.raises(ConfigError, match="`tau` must be positive"):
        evaluate_dataset("folder", quadrant_folder, method=toy_method, settings={"tau": -1.0})
    with pytest.raises(ConfigError, match="is a diffseg option"):
        evaluate_dataset("folder", quadrant_folder, method=toy_method, settings={"kl_threshold": 1.0})
    with pytest.raises(ConfigError, match="quadrants offers none"):
        evaluate_dataset("folder", quadrant_folder, method=toy_method, baseline="kmeans-c")
    assert QuadrantSegmenter.captured[0] == 0


def test_command_line_evaluate_takes_the_generated_options(toy_method, quadrant_folder, tmp_path):
    output = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "250"}).output
    help_text = " ".join(output.replace("│", " ").split())
    assert "Channel value above which a cell takes its dominant colour" in help_text  # --tau, from the field
    assert "(diffseg), 32 (quadrants)." in help_text  # --size: the toy's default beside the others'
    out = tmp_path / "r.json"
    args = ["evaluate", "--method", toy_method, "--tau", "2.0", "--size", "16", "--output", str(out)]
    result = runner.invoke(app, [*args, *_folder_args(quadrant_folder, tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["settings"] == {"model": "toy-pooling", "image_size": 16, "tau": 2.0}
    assert report["capture"]["image_size"] == 16 and report["miou"] < 0.5


def test_command_line_errors_name_the_flag(toy_method, quadrant_folder, tmp_path):
    result = runner.invoke(
        app, ["evaluate", "--method", toy_method, "--tau", "-1", *_folder_args(quadrant_folder, tmp_path)]
    )
    assert result.exit_code == 1
    assert "error: `--tau` must be positive (got -1.0)" in " ".join(result.output.split())
    assert "Traceback" not in result.output and QuadrantSegmenter.captured[0] == 0


def test_command_line_sweep_over_a_generated_option(toy_method, quadrant_folder, tmp_path):
    args = ["sweep", "--method", toy_method, "--tau", "0.5,2.0", *_folder_args(quadrant_folder, tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| 0.5 | 100.00 |" in result.output and "| 2.0 |" in result.output
    assert QuadrantSegmenter.captured[0] == 5


def test_the_method_is_gone_after_unregistering(toy_method):
    assert toy_method in list_methods()


def test_unregistered_method_is_refused_by_name(quadrant_folder):
    assert "quadrants" not in list_methods()
    with pytest.raises(ConfigError, match="unknown method 'quadrants'"):
        evaluate_dataset("folder", quadrant_folder, method="quadrants")


def test_command_line_says_it_resumed_and_still_writes_new_predictions(toy_method, quadrant_folder, tmp_path):
    args = ["evaluate", "--method", toy_method, *_folder_args(quadrant_folder, tmp_path)]
    assert runner.invoke(app, args).exit_code == 0
    first = runner.invoke(app, [*args, "--save-predictions", str(tmp_path / "p")])
    assert first.exit_code == 0 and "Resumed" not in first.output  # nothing reusable: no PNGs there yet
    assert len(list((tmp_path / "p").glob("img?.png"))) == 5 and QuadrantSegmenter.captured[0] == 5
    again = runner.invoke(app, [*args, "--save-predictions", str(tmp_path / "p")])
    assert again.exit_code == 0
    line = " ".join(again.output.split())
    assert "reused 5 of 5 images" in line and str(tmp_path / "c" / "runs") in line.replace(" ", "")
