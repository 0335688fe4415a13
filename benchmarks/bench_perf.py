"""Cold and warm times of the post-processing stages, this checkout next to an earlier revision, in one run.

Every (revision, stage) runs in a fresh interpreter: "cold" is the first call there (page faults of fresh
buffers, lazy initialisation), "warm" the best of the following calls. "kernels" is the load of PAMR's
compiled kernels (numba import and machine-code cache), which the pipeline runs in the background while the
model loads; the cold call starts after it. "current, tensor form" is this checkout without those kernels. The
earlier revision is exported with ``git archive`` (default: the commit before the allocation-free rewrite)
and imported from a temporary directory. Stages:

* ``pamr``: PAMR at 1024x1024, 30 iterations, dilations 1..64, 8 masks.
* ``ncut``: DiffCut NCut + concept assignment on (1280, 32, 32) planted features (8 segments), output 128.
* ``diffseg``: DiffSeg aggregate + merge + NMS at 512 (sides 64/32/16/8), with its peak extra memory.
* ``diffcut-<size>`` / ``diffseg-<size>``: each method at its defaults on one image (random features or
  attention, since the UNet cost does not depend on the image size), to show the cost in the image size.

Usage::

    python benchmarks/bench_perf.py [--baseline e670e91] [--stages pamr ncut diffseg] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peak_memory import PeakWindow

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STAGES = ("pamr", "ncut", "diffseg", "diffcut-1000x750", "diffcut-4000x3000", "diffseg-1000x750",
                  "diffseg-4000x3000")  # fmt: skip
DILATIONS = (1, 2, 4, 8, 12, 24, 32, 64)
TENSOR_FORMS = {"ZEROSEG_TENSOR_FORM": "1", "ZEROSEG_PAMR_TENSOR_FORM": "1"}
"""Run without the compiled kernels (the tensor forms, same bits); the second name is earlier revisions'."""


def _stage_callable(stage: str):
    """Build the inputs of ``stage`` and return the call to time."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    if stage == "pamr":
        from zeroseg.refine.pamr import pamr

        image = F.interpolate(torch.rand(1, 3, 64, 64, generator=gen), size=(1024, 1024), mode="bilinear")[0]
        labels = torch.randint(0, 8, (8, 8), generator=gen).repeat_interleave(128, 0).repeat_interleave(128, 1)
        masks = (labels[None] == torch.arange(8)[:, None, None]).float()
        return lambda: pamr(image, masks, num_iter=30, dilations=DILATIONS)
    if stage == "ncut":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_diffcut_post import planted_feature_map

        from zeroseg.diffcut import assign_concepts, compute_affinity, normalize_features, recursive_ncut

        feats = normalize_features(planted_feature_map())

        def ncut_and_assign():
            labels = recursive_ncut(compute_affinity(feats, alpha=10), tau=0.5).reshape(32, 32)
            return assign_concepts(feats, labels, (128, 128))

        return ncut_and_assign
    if stage.startswith("diffseg"):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_diffseg_post import make_attention

        from zeroseg.diffseg import segment_attention

        maps = make_attention()
        size = (512, 512) if stage == "diffseg" else tuple(int(v) for v in stage.split("-")[1].split("x"))[::-1]
        return lambda: segment_attention(maps, kl_threshold=1.1, out_size=size)
    if stage.startswith("diffcut-"):
        from zeroseg.diffcut.algorithm import segment_features

        width, height = (int(v) for v in stage.split("-")[1].split("x"))
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_diffcut_post import planted_feature_map

        feats = planted_feature_map().float()
        image = F.interpolate(torch.rand(1, 3, 48, 64, generator=gen), size=(height, width), mode="bilinear")[0]
        return lambda: segment_features(
            feats, out_size=(height, width), image=image, pamr_iters=30, pamr_dilations=DILATIONS
        )
    raise SystemExit(f"unknown stage {stage!r}")


def _load_compiled_kernels() -> None:
    """Load the revision's compiled kernels, wherever its loader lives (none before the compiled PAMR)."""
    import importlib

    for module, loader in (
        ("zeroseg.refine.compiled", "compiled_kernels"),
        ("zeroseg.refine.pamr", "_compiled_kernels"),
    ):
        try:
            function = getattr(importlib.import_module(module), loader)
        except (ImportError, AttributeError):
            continue
        function()
        return


def worker(stage: str, repeats: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    _load_compiled_kernels()  # what the pipeline starts in the background while the model loads
    kernels = time.perf_counter() - start
    call = _stage_callable(stage)
    window = PeakWindow()
    start = time.perf_counter()
    call()
    cold = time.perf_counter() - start
    warm = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        warm = min(warm, time.perf_counter() - start)
    print(json.dumps({"cold": cold, "warm": warm, "peak_extra_mib": window.extra_mib(), "kernels": kernels}))


def run_stage(
    src: Path, stage: str, repeats: int, threads: int, timeout: float, env: dict[str, str]
) -> dict[str, float] | None:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", **env}
    cmd = [sys.executable, __file__, "--worker", stage, "--repeats", str(repeats), "--threads", str(threads)]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="e670e91", help="git revision to compare with ('' to skip)")
    parser.add_argument("--stages", nargs="+", default=list(DEFAULT_STAGES))
    parser.add_argument("--repeats", type=int, default=2, help="warm calls after the cold one (best is shown)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per (revision, stage) process")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.repeats, args.threads)
        return
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"current": (ROOT / "src", {}), "current, tensor form": (ROOT / "src", TENSOR_FORMS)}
        if args.baseline:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "src"], capture_output=True)
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            trees[f"baseline {args.baseline}"] = (Path(tmp) / "src", {})
        columns = ("kernels s", "cold s", "warm s", "cold/warm", "peak MiB")
        print(f"{'stage':<20} {'revision':<22} " + " ".join(f"{c:>9}" for c in columns))
        for stage in args.stages:
            for name, (src, env) in trees.items():
                if env and not stage.startswith(("pamr", "diffcut")):
                    continue  # the tensor form changes only PAMR
                result = run_stage(src, stage, args.repeats, args.threads, args.timeout, env)
                if result is None:
                    print(f"{stage:<20} {name:<22} {'':>9} {'>' + str(int(args.timeout)):>9}", flush=True)
                    continue
                ratio = result["cold"] / result["warm"]
                print(
                    f"{stage:<20} {name:<22} {result['kernels']:>9.2f} {result['cold']:>9.2f} {result['warm']:>9.2f} "
                    f"{ratio:>9.2f} {result['peak_extra_mib']:>9.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
