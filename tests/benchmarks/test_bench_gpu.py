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
    args += ["--stream", "1", "--archs", "sd14", "flux-schnell"]
    rows = bench.main(args)
    sizes = [(row[0], row[1], row[2]) for row in rows]
    assert sizes == [("diffseg", "sd14", 512), ("diffcut", "sd14", 1024)] + [
        ("diffseg", "flux-schnell", 1024),
        ("diffcut", "flux-schnell", 1024),
    ]  # each model's own defaults
    for _, _, _, _, batch, forward_s, backbone_s, total_s, stream_rate, busy, finite, _, _ in rows:
        assert batch == 1 and forward_s > 0 and 0 < backbone_s <= total_s and stream_rate > 0 and 0 < busy <= 1
        assert finite
    assert "total/fwd" in capsys.readouterr().out
