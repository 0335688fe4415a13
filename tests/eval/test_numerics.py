"""Evaluation results are a function of image, model and settings: fresh or cached captures, first run or rerun,
sweep step or single run give the same numbers, and results of another numerics version or cache storage are
recomputed (and named) instead of reused."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from typer.testing import CliRunner

from zeroseg import _version
from zeroseg.cli.app import app
from zeroseg.eval.api import evaluate_dataset, sweep_dataset
from zeroseg.eval.cache import FeatureCache
from zeroseg.eval.datasets import create_dataset
from zeroseg.eval.loop import ResultsLog
from zeroseg.eval.matching_scorer import evaluate
from zeroseg.registry import create_segmenter

from .fakes import FakeConfig, FakeSegmenter

testing = pytest.importorskip("zeroseg.testing")

SETTINGS = {"diffseg": {"image_size": 64, "anchors": 4}, "diffcut": {"image_size": 128, "pamr_iters": 2}}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
EDGE = FakeConfig(tau=0.9019)
"""A threshold between the quadrant colour 230/255 in float32 (0.90196) and rounded to float16 (0.90186): any
rounding of a float32 capture changes the fake's labels."""


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return testing.make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd", family="sd")


def _tiny_segmenter(method, model, dtype):
    """A tiny random-weight segmenter whose captures have ``dtype`` (as from a half or bfloat16 backbone)."""
    segmenter = create_segmenter(method, model=str(model), device="cpu", **SETTINGS[method])
    capture = segmenter.capture
    segmenter.capture = lambda images: [{k: v.to(dtype) for k, v in c.items()} for c in capture(images)]
    return segmenter


def _records(cache_dir, run_id):
    return ResultsLog(cache_dir / "runs", run_id).read()


def _numbers(report):
    """Everything a report says about the scores (not when or how fast they were computed)."""
    return {k: v for k, v in report.to_dict().items() if k not in ("timing", "created", "resumed")}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method", ["diffseg", "diffcut"])
def test_a_rerun_from_the_cache_equals_the_fresh_run(method, dtype, tiny_sd, quadrant_folder, tmp_path):
    segmenter = _tiny_segmenter(method, tiny_sd, dtype)
    common = {"method": method, "settings": SETTINGS[method], "cache_dir": str(tmp_path / "c"), "limit": 3}
    fresh = evaluate_dataset("folder", quadrant_folder, segmenter=segmenter, **common)
    first = _records(tmp_path / "c", fresh.run_id)
    cached = evaluate_dataset("folder", quadrant_folder, segmenter=segmenter, resume=False, **common)
    assert fresh.timing["images_captured"] == 3 and cached.timing["images_from_cache"] == 3
    assert cached.timing["images_captured"] == 0 and cached.run_id == fresh.run_id
    assert len(first) == 3 and _records(tmp_path / "c", cached.run_id) == first  # per-image records
    assert _numbers(cached) == _numbers(fresh)
    assert fresh.numerics_version == _version.NUMERICS_VERSION and fresh.cache_storage == "lossless"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_capture_of_any_dtype_scores_the_same_from_the_cache(dtype, quadrant_folder, tmp_path):
    dataset = create_dataset("folder", str(quadrant_folder))
    cache = FeatureCache(tmp_path / "cache")
    seg = FakeSegmenter(config=EDGE, capture_dtype=dtype)
    fresh = evaluate(seg, dataset, cache=cache, results_dir=tmp_path / "a")
    cached = evaluate(seg, dataset, cache=cache, results_dir=tmp_path / "b")
    assert seg.calls[0] == 5 and cached.timing["images_from_cache"] == 5
    assert ResultsLog(tmp_path / "b", cached.run_id).read() == ResultsLog(tmp_path / "a", fresh.run_id).read()
    assert _numbers(cached) == _numbers(fresh)


def test_a_sweep_step_from_the_cache_equals_a_fresh_evaluate(tiny_sd, quadrant_folder, tmp_path):
    segmenter = _tiny_segmenter("diffcut", tiny_sd, torch.float32)
    common = {"method": "diffcut", "settings": SETTINGS["diffcut"], "limit": 3}
    steps = sweep_dataset("folder", quadrant_folder, {"tau": [0.5, 0.9]}, segmenter=segmenter,
                          cache_dir=str(tmp_path / "c"), **common)  # fmt: skip
    assert steps[1].timing["images_from_cache"] == 3 and steps[1].settings["tau"] == 0.9
    fresh = evaluate_dataset("folder", quadrant_folder, segmenter=segmenter.with_config(tau=0.9), use_cache=False,
                             cache_dir=str(tmp_path / "fresh"), **{**common, "settings": {**SETTINGS["diffcut"],
                             "tau": 0.9}})  # fmt: skip
    assert fresh.timing["images_captured"] == 3 and fresh.run_id == steps[1].run_id
    assert _records(tmp_path / "fresh", fresh.run_id) == _records(tmp_path / "c", steps[1].run_id)
    assert _numbers(fresh) == _numbers(steps[1])


def test_results_of_another_numerics_version_are_recomputed_and_named(quadrant_folder, tmp_path, monkeypatch,
                                                                      caplog):  # fmt: skip
    dataset = create_dataset("folder", str(quadrant_folder))
    results, cache = tmp_path / "runs", FeatureCache(tmp_path / "cache")
    seg = FakeSegmenter()
    version = _version.NUMERICS_VERSION
    old = evaluate(seg, dataset, cache=cache, results_dir=results)
    assert old.numerics_version == version and old.not_reused is None
    assert json.loads((results / f"{old.run_id}.settings.json").read_text())["numerics"] == version
    monkeypatch.setattr(_version, "NUMERICS_VERSION", version + 1)
    with caplog.at_level(logging.WARNING):
        new = evaluate(seg, dataset, cache=cache, results_dir=results)
    assert new.run_id != old.run_id and new.numerics_version == version + 1
    assert new.timing["images_resumed"] == 0 and seg.calls[0] == 10  # neither results nor captures reused
    log = results / f"{old.run_id}.jsonl"
    assert new.not_reused == [{"log": str(log), "numerics_version": version, "cache_storage": "lossless", "images": 5}]
    line = f"results of an earlier zeroseg numerics version ({version}) in {log} were not reused (5 images)"
    assert new.notices() == [f"{line}; recomputing"] and f"{line}; recomputing" in caplog.text
    again = evaluate(seg, dataset, cache=cache, results_dir=results)  # its own results are complete now
    assert again.timing["images_resumed"] == 5 and again.not_reused is None and again.notices() == []


def test_lossy_storage_is_opt_in_keyed_and_reported(quadrant_folder, tmp_path):
    dataset = create_dataset("folder", str(quadrant_folder))
    results = tmp_path / "runs"
    seg = FakeSegmenter(config=EDGE)
    lossy = evaluate(seg, dataset, cache=FeatureCache(tmp_path / "c", storage="float16"), results_dir=results)
    assert lossy.cache_storage == "float16" and "float16 feature cache" in lossy.to_markdown()
    assert lossy.notices() == [
        "Captures were read from a float16 feature cache (lossy): the numbers may differ from a lossless run"
    ]
    lossless = evaluate(seg, dataset, cache=FeatureCache(tmp_path / "c"), results_dir=results)
    assert lossless.run_id != lossy.run_id and lossless.cache_storage == "lossless"
    assert lossless.miou == 1.0 and lossy.miou < 1.0  # float16 rounding moved the colours below tau
    assert seg.calls[0] == 10  # the float16 entries are another cache key
    assert lossless.notices() == [
        f"results computed from a float16 feature cache in {results / f'{lossy.run_id}.jsonl'} were not reused "
        "(5 images); recomputing"
    ]
    again = evaluate(seg, dataset, cache=FeatureCache(tmp_path / "c", storage="float16"), results_dir=tmp_path / "x")
    assert again.timing["images_from_cache"] == 5 and _numbers(again) == _numbers(lossy)  # lossy, but repeatable


def _flat(text):
    return "".join(text.split())


def test_command_line_names_what_it_did_not_reuse(toy_method, quadrant_folder, tmp_path, monkeypatch):
    runner = CliRunner()
    args = ["evaluate", "--method", toy_method, "--dataset", "folder", "--root", str(quadrant_folder),
            "--cache", str(tmp_path / "c"), "--device", "cpu", "--output", str(tmp_path / "r.json")]  # fmt: skip
    lossy = runner.invoke(app, [*args, "--cache-storage", "float16"])
    assert lossy.exit_code == 0, lossy.output
    assert "Captureswerereadfromafloat16featurecache(lossy)" in _flat(lossy.output)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["cache_storage"] == "float16" and report["numerics_version"] == _version.NUMERICS_VERSION
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "resultscomputedfromafloat16featurecache" in _flat(first.output)
    version = _version.NUMERICS_VERSION
    monkeypatch.setattr(_version, "NUMERICS_VERSION", version + 1)
    upgraded = runner.invoke(app, args)
    assert upgraded.exit_code == 0, upgraded.output
    assert "Resumed" not in upgraded.output
    said = _flat(upgraded.output)
    assert _flat(f"results of an earlier zeroseg numerics version ({version}) in {tmp_path / 'c' / 'runs'}") in said
    assert "werenotreused(5images);recomputing" in said


def test_command_line_refuses_a_bad_cache_storage(toy_method, quadrant_folder, tmp_path):
    args = ["evaluate", "--method", toy_method, "--dataset", "folder", "--root", str(quadrant_folder),
            "--device", "cpu", "--cache", str(tmp_path / "c")]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--no-cache", "--cache-storage", "float16"])
    assert result.exit_code == 1
    assert "error: `--cache-storage` needs the feature cache, which is turned off" in " ".join(result.output.split())
    result = CliRunner().invoke(app, [*args, "--cache-storage", "int8"])
    assert result.exit_code == 1
    assert "error: `--cache-storage` must be one of lossless, float16 (got 'int8')" in " ".join(result.output.split())
