"""Benchmark of DiffSeg post-processing on captured attention: aggregation, merging, NMS to 512 x 512.

Compares three formulations on the same realistic input (row-stochastic self-attention for grid sides
64/32/16/8, peaked like real attention and with a planted region structure):

* ``vectorised``: :func:`zeroseg.diffseg.segment_attention` steps (the default mode);
* ``exact_reference``: the same with ``exact_reference=True`` (float16 elementwise anchor pass);
* ``straightforward``: a direct transcription written below (full per-resolution tensors, a Python loop
  over anchors with elementwise KL, a per-pair KL loop for the greedy passes, full-size upsampling).

Each variant runs in a fresh subprocess; its peak extra memory is the peak resident set (``VmHWM``, reset
after loading the input; ``ru_maxrss`` where that is unavailable) minus the resident set with the input
loaded. Times are the best of ``--repeats`` runs.

Usage::

    python benchmarks/bench_diffseg_post.py [--repeats 3] [--variants vectorised exact_reference ...]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from peak_memory import PeakWindow

SIDES = (64, 32, 16, 8)
THRESHOLDS = (1.1, 1.1, 1.1)
ANCHORS = 16
OUT_SIZE = (512, 512)
VARIANTS = ("vectorised", "exact_reference", "straightforward")


def make_attention(seed: int = 0, num_regions: int = 8, temperature: float = 4.0) -> dict[int, torch.Tensor]:
    """Row-stochastic attention per side: softmax of feature similarity (regions + noise) and locality."""
    gen = torch.Generator().manual_seed(seed)
    side = SIDES[0]
    seeds = torch.rand(num_regions, 2, generator=gen) * side
    yy, xx = torch.meshgrid(
        torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32), indexing="ij"
    )
    coords = torch.stack([yy, xx], -1).reshape(-1, 2)
    region = torch.cdist(coords, seeds).argmin(1)
    embed = torch.randn(num_regions, 32, generator=gen)
    feats = embed[region] + 0.6 * torch.randn(side * side, 32, generator=gen)
    feats = feats.T.reshape(1, 32, side, side)
    maps = {}
    for r in SIDES:
        pooled = F.avg_pool2d(feats, side // r).reshape(32, r * r).T
        pooled = pooled / pooled.norm(dim=1, keepdim=True)
        grid = coords.reshape(side, side, 2)[:: side // r, :: side // r].reshape(-1, 2) * (r / side)
        locality = torch.cdist(grid, grid) ** 2 / (2 * (1.0 * r) ** 2)
        logits = temperature * (pooled @ pooled.T) * math.sqrt(32) / 4 - locality
        maps[r] = torch.softmax(logits, dim=1)
    return maps


# ----------------------------------------------------------------------------------------------------------
# Straightforward formulation (a direct transcription of the official steps, float32 with floored logs)


def straight_aggregate(maps: dict[int, torch.Tensor]) -> torch.Tensor:
    side = max(maps)
    total = sum(maps)
    out = torch.zeros(side, side, side, side)
    for r, attn in maps.items():
        up = F.interpolate(attn.reshape(r * r, 1, r, r), size=(side, side), mode="bilinear", align_corners=False)
        up = up.reshape(r * r, side, side)
        up = up / up.sum((1, 2), keepdim=True)
        up = up.reshape(r, r, side, side).repeat_interleave(side // r, 0).repeat_interleave(side // r, 1)
        out += (r / total) * up
    return out


def straight_kl(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    quotient = torch.log(x.clamp_min(1e-12)) - torch.log(y.clamp_min(1e-12))
    return (x * quotient).sum((-2, -1)) / 2 - (y * quotient).sum((-2, -1)) / 2


def straight_merge(aggregated: torch.Tensor) -> torch.Tensor:
    side = aggregated.shape[0]
    step = (side - 1) // (ANCHORS - 1)
    start = (side - 1 - step * (ANCHORS - 1)) // 2
    coords = [start + step * i for i in range(ANCHORS)]
    maps = aggregated.reshape(side * side, side, side)
    proposals = []
    for row in coords:
        for col in coords:
            matches = straight_kl(aggregated[row, col][None], maps) < THRESHOLDS[0]
            proposals.append(maps[matches].mean(0))
    for threshold in THRESHOLDS[1:]:
        matched: set[int] = set()
        merged = []
        for i, anchor in enumerate(proposals):
            if i in matched:
                continue
            matched.add(i)
            group = [j for j, other in enumerate(proposals) if straight_kl(anchor, other) < threshold]
            if group:
                matched.update(group)
                merged.append(torch.stack([proposals[j] for j in group]).mean(0))
        proposals = merged
    return torch.stack(proposals)


def straight_labels(proposals: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(proposals[None], size=OUT_SIZE, mode="bilinear", align_corners=False)[0]
    return torch.unique(up.argmax(0), return_inverse=True)[1]


# ----------------------------------------------------------------------------------------------------------


def run_steps(variant: str, maps: dict[int, torch.Tensor]) -> tuple[dict[str, float], int]:
    from zeroseg.diffseg.aggregate import aggregate_attention
    from zeroseg.diffseg.merge import merge_by_kl
    from zeroseg.diffseg.proposals import proposals_to_labels

    times = {}
    start = time.perf_counter()
    if variant == "straightforward":
        aggregated = straight_aggregate(maps)
        times["aggregate"] = time.perf_counter() - start
        proposals = straight_merge(aggregated)
        times["merge"] = time.perf_counter() - start - times["aggregate"]
        labels = straight_labels(proposals)
    else:
        aggregated = aggregate_attention(maps)
        times["aggregate"] = time.perf_counter() - start
        proposals = merge_by_kl(
            aggregated, anchors=ANCHORS, kl_thresholds=THRESHOLDS, exact_reference=variant == "exact_reference"
        )
        times["merge"] = time.perf_counter() - start - times["aggregate"]
        labels = proposals_to_labels(proposals, OUT_SIZE)
    times["total"] = time.perf_counter() - start
    times["nms"] = times["total"] - times["aggregate"] - times["merge"]
    return times, int(labels.max()) + 1


def worker(variant: str, input_path: str, repeats: int, threads: int) -> None:
    torch.set_num_threads(threads)
    maps = torch.load(input_path)
    window = PeakWindow()
    best: dict[str, float] = {}
    segments = 0
    for _ in range(repeats):
        times, segments = run_steps(variant, maps)
        best = {k: min(v, best.get(k, math.inf)) for k, v in times.items()}
    print(json.dumps({"times": best, "segments": segments, "peak_extra_mib": window.extra_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (best time is reported)")
    parser.add_argument("--slow-repeats", type=int, default=1, help="runs of exact_reference/straightforward")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.input, args.repeats, args.threads)
        return

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "maps.pt"
        torch.save(make_attention(), path)
        rows = []
        for variant in args.variants:
            repeats = args.repeats if variant == "vectorised" else args.slow_repeats
            cmd = [sys.executable, __file__, "--worker", variant, "--input", str(path)]
            cmd += ["--repeats", str(repeats), "--threads", str(args.threads)]
            result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            rows.append((variant, result))

    print(f"DiffSeg post-processing, sides {SIDES}, {ANCHORS}x{ANCHORS} anchors, tau {THRESHOLDS}, NMS to {OUT_SIZE}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = (
        f"{'variant':<16} {'aggregate s':>11} {'merge s':>9} {'nms s':>7} {'total s':>8} "
        f"{'peak extra MiB':>15} {'K':>4}"
    )
    print(header)
    print("-" * len(header))
    for variant, result in rows:
        t = result["times"]
        print(
            f"{variant:<16} {t['aggregate']:>11.3f} {t['merge']:>9.3f} {t['nms']:>7.3f} {t['total']:>8.3f} "
            f"{result['peak_extra_mib']:>15.0f} {result['segments']:>4d}"
        )


if __name__ == "__main__":
    main()
