"""``zeroseg evaluate`` / ``zeroseg sweep`` through typer's CliRunner (segmenter patched with the fake)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from zeroseg.cli.evaluate import parse_assignments, parse_values, register
from zeroseg.errors import ConfigError

from .fakes import FakeSegmenter

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture
def fake(monkeypatch):
    made: list[FakeSegmenter] = []

    def build(plan, device="cpu"):
        seg = FakeSegmenter(method=plan.method).with_config(
            **{k: v for k, v in plan.settings.items() if k in ("tau", "pamr")}
        )
        made.append(seg)
        return seg

    monkeypatch.setattr("zeroseg.eval.plan.build_segmenter", build)
    return made


def test_evaluate_writes_report_predictions_and_prints_headline(quadrant_folder, tmp_path, fake):
    out = tmp_path / "r.json"
    args = ["evaluate", "--dataset", "folder", "--root", str(quadrant_folder), "--method", "diffseg",
            "--output", str(out), "--save-predictions", str(tmp_path / "p"), "--cache", str(tmp_path / "c"),
            "--device", "cpu", "--dataset-option", "class_names=red,green,blue,black"]  # fmt: skip
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "mIoU 100.00" in result.output
    data = json.loads(out.read_text())
    assert data["miou"] == 1.0 and data["num_images"] == 5
    assert data["per_class_iou"]["black"] == 1.0
    assert out.with_suffix(".csv").is_file() and out.with_suffix(".md").is_file()
    assert len(list((tmp_path / "p").glob("*_gt.png"))) == 5


def test_evaluate_missing_root_is_one_red_line(tmp_path, fake):
    result = runner.invoke(_app(), ["evaluate", "--preset", "diffcut-voc", "--root", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "error:" in result.output and "VOCdevkit/VOC2012" in result.output
    assert "Traceback" not in result.output


def test_evaluate_bad_layout_names_expected_files(tmp_path, fake):
    (tmp_path / "ADEChallengeData2016").mkdir()
    result = runner.invoke(_app(), ["evaluate", "--dataset", "ade20k", "--root", str(tmp_path), "--method", "diffcut"])
    assert result.exit_code == 1
    assert "annotations/validation" in result.output.replace("\n", "")


def test_sweep_reruns_only_clustering(quadrant_folder, tmp_path, fake, toy_method):
    out = tmp_path / "s.json"
    args = ["sweep", "--dataset", "folder", "--root", str(quadrant_folder), "--method", toy_method,
            "--grid", "tau=0.5,2.0", "--cache", str(tmp_path / "c"), "--device", "cpu",
            "--output", str(out)]  # fmt: skip
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert fake[0].calls[0] == 5
    rows = json.loads(out.read_text())
    assert [r["settings"]["tau"] for r in rows] == [0.5, 2.0]
    assert "| 0.5 | 100.00 |" in result.output


def test_parse_values_and_assignments():
    values = parse_values("0.3:0.8:0.05", "--tau")
    assert len(values) == 11 and values[0] == 0.3 and values[-1] == 0.8
    assert parse_values("1:3:1", "--alpha") == [1, 2, 3]
    assert parse_values("1,5,10", "--alpha") == [1, 5, 10]
    assert parse_values("0.9", "--kl-threshold") == [0.9]
    assert parse_assignments(["pamr=false", "pamr-dilations=1,2"], "--set") == {
        "pamr": False,
        "pamr_dilations": (1, 2),
    }
    with pytest.raises(ConfigError, match="start:stop:step"):
        parse_values("1:2", "--tau")
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["pamr"], "--set")


def _stop_before_running(monkeypatch) -> list:
    """Record the plans the command would run, and stop there with a one-line error."""
    from zeroseg.errors import ZeroSegError

    planned = []

    def stop(plan, **kwargs):
        planned.append(plan)
        raise ZeroSegError("stopped before running")

    monkeypatch.setattr("zeroseg.eval.api.evaluate_plan", stop)
    return planned


@pytest.mark.parametrize(("flag", "expected"), [(None, True), ("--no-exact-reference", False)])
def test_presets_run_exact_reference_unless_the_flag_says_otherwise(tmp_path, monkeypatch, flag, expected):
    planned = _stop_before_running(monkeypatch)
    for preset in ("diffcut-voc", "diffseg-coco"):
        args = ["evaluate", "--preset", preset, "--root", str(tmp_path), *([flag] if flag else [])]
        result = runner.invoke(_app(), args)
        assert result.exit_code == 1 and "error: stopped before running" in result.output
    assert [plan.settings["exact_reference"] for plan in planned] == [expected, expected]
    assert planned[1].settings["kl_threshold"] == 1.1


def test_method_options_share_the_segment_syntax(tmp_path, monkeypatch):
    planned = _stop_before_running(monkeypatch)
    args = ["evaluate", "--dataset", "folder", "--root", str(tmp_path), "--method", "diffseg",
            "--kl-threshold", "1.1,0.9,0.9", "--device", "cuda:1"]  # fmt: skip
    runner.invoke(_app(), args)
    assert planned[0].settings["kl_threshold"] == (1.1, 0.9, 0.9)
    result = runner.invoke(_app(), [*args[:-1], "cuda:x"])
    assert result.exit_code == 1 and "error: `--device` must be" in result.output
    result = runner.invoke(_app(), ["evaluate", "--dataset", "folder", "--root", str(tmp_path), "--kl-threshold", "x"])
    assert result.exit_code == 1 and "`--kl-threshold` is a diffseg option" in result.output
