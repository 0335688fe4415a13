"""The pipeline-overlap benchmark runs end to end on the tiny models and ends with its one-line summary."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_pipeline.py"
LAST_LINE = re.compile(
    r"overlap: pipelined (\d+\.\d\d) images/s, sequential (\d+\.\d\d) images/s, bound (\d+\.\d\d) images/s"
)


def test_bench_pipeline_ends_with_the_overlap_line(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_pipeline", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setitem(bench.METHODS, "diffseg", ("sd", {"image_size": 64}))
    monkeypatch.setitem(bench.METHODS, "diffcut", ("sdxl", {"image_size": 64, "pamr_iters": 2}))
    rows = bench.main(["--stand-in", "0.01", "--images", "3"])
    assert sorted(rows) == ["diffcut", "diffseg"]
    assert all(row["pipelined"] > 0 and row["sequential"] > 0 and row["bound"] > 0 for row in rows.values())
    last = capsys.readouterr().out.strip().splitlines()[-1]
    match = LAST_LINE.fullmatch(last)
    assert match and all(float(value) > 0 for value in match.groups()), last
