"""The accelerator benchmark runs end to end (here on the tiny models and the CPU), so it is ready on a GPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_prints_a_row_per_method(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--tiny", "--device", "cpu", "--dtypes", "float32", "--batches", "1", "--repeats", "1", "--threads", "2"]
    args += ["--stream", "2"]
    rows = bench.main(args)
    assert [(row[0], row[1], row[2]) for row in rows] == [("diffseg", "sd14", 512), ("diffcut", "ssd1b", 1024)]
    for _, _, _, _, batch, backbone_s, total_s, _, stream_rate, busy, finite in rows:
        assert batch == 1 and 0 < backbone_s <= total_s and stream_rate > 0 and 0 < busy <= 1 and finite
    assert "total/backbone" in capsys.readouterr().out
