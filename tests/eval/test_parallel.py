"""Sharded runs (one process per device) merge into the same totals as a single run."""

from __future__ import annotations

import pytest

from zeroseg.errors import ConfigError
from zeroseg.eval.api import make_plan
from zeroseg.eval.datasets import create_dataset
from zeroseg.eval.matching_scorer import evaluate
from zeroseg.eval.parallel import merge_shards, run_on_devices

from .fakes import FakeConfig, FakeSegmenter


def test_shards_merge_to_the_single_run_totals(quadrant_folder, tmp_path):
    dataset = create_dataset("folder", str(quadrant_folder))
    seg = FakeSegmenter(config=FakeConfig(tau=0.7))
    runs = tmp_path / "cache" / "runs"
    shards = {rank: evaluate(seg, dataset, results_dir=runs, shard=(rank, 2)) for rank in (0, 1)}
    assert [r.num_images for r in shards.values()] == [3, 2]
    assert sorted(p.name.split(".")[1] for p in runs.glob("*.jsonl")) == ["rank0", "rank1"]
    plan = make_plan(dataset="folder", root=quadrant_folder, method="diffseg", cache_dir=str(tmp_path / "cache"))
    merged = merge_shards(plan, {rank: r.to_dict() for rank, r in shards.items()}, elapsed=1.0)
    single = evaluate(FakeSegmenter(config=FakeConfig(tau=0.7)), dataset)
    assert merged.num_images == 5
    assert merged.miou == pytest.approx(single.miou)
    assert merged.pixel_accuracy == pytest.approx(single.pixel_accuracy)
    # a later single-device run of the same settings resumes from the shards' logs
    resumed = evaluate(seg, dataset, results_dir=runs)
    assert resumed.timing["images_resumed"] == 5


def test_run_on_devices_checks_its_arguments(quadrant_folder):
    plan = make_plan(dataset="folder", root=quadrant_folder, method="diffseg")
    with pytest.raises(ConfigError, match="at least two devices"):
        run_on_devices(plan, ["cpu"])
