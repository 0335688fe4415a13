"""Throughput of the distributed batch mode (Ray Data) with 1 and 2 CPU workers, against the local mode.

For each model, the same generated images are segmented three ways, in one run:

- ``local``: the library pipeline in this process, one torch thread (read, segment, write the files);
- ``ray x1``: ``segment_on_ray`` with 1 worker (1 CPU, one torch thread) on a local Ray of 2 CPUs;
- ``ray x2``: the same with 2 workers.

Reported per row: end-to-end images/s (Ray start-up, worker start and model load included), steady images/s
(from the first finished batch to the last), and the seconds per stage summed over all images. From them:

- Ray's own overhead: the CPU seconds its processes (raylet, GCS, agents, read tasks) and the driver used
  during the job, as a share of all the job's CPU seconds (read from /proc), and the fixed start-up (first
  result after N s, worker start and model load included);
- the scaling ratio: steady(ray x2) / (2 * steady(ray x1)), the goal being >= 0.8 (per worker busy rates
  show how much of a shortfall is the workers slowing each other down on shared cores).

Models: ``tiny`` (``zeroseg.testing.make_tiny_model``, 64 px) and ``sd14``, the SD 1.4 UNet architecture with
random weights at a reduced size (default 256 px; speed does not depend on the weight values). The CPU is
shared with other work on a busy machine, so each figure is noisy: run it twice and compare.

    python benchmarks/bench_ray.py                      # both models
    python benchmarks/bench_ray.py --models tiny --tiny-images 64
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def make_model(kind: str, folder: Path) -> Path:
    """A model folder: the tiny model, or the tiny one with SD 1.4's UNet and a text encoder of its width."""
    import torch

    from zeroseg.testing import make_tiny_model, real_architecture_unet

    root = make_tiny_model(folder / kind, "sd")
    if kind == "sd14":
        from transformers import CLIPTextConfig, CLIPTextModel

        unet = real_architecture_unet("sd14")
        shutil.rmtree(root / "unet")
        unet.to(torch.float16).save_pretrained(root / "unet")  # half the disk; loads as float32 on CPU
        config = CLIPTextModel.from_pretrained(root / "text_encoder").config.to_dict()
        config |= {"hidden_size": 768, "intermediate_size": 256, "num_attention_heads": 12, "num_hidden_layers": 1}
        shutil.rmtree(root / "text_encoder")
        CLIPTextModel(CLIPTextConfig(**config)).save_pretrained(root / "text_encoder")
    return root


def make_images(folder: Path, count: int, side: int) -> Path:
    """``count`` images of flat rectangles with noise, ``side`` px square."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = np.zeros((side, side, 3), dtype=np.int16)
        for _ in range(4):
            top, left = rng.integers(0, side // 2, 2)
            pixels[top : top + side // 2, left : left + side // 2] = rng.integers(0, 255, 3)
        pixels += rng.integers(-10, 10, pixels.shape, dtype=np.int16)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"img{index:03d}.png")
    return folder


def run_local(settings: dict[str, Any], images: Path, out: Path) -> dict[str, Any]:
    """The local mode's work in this process with one torch thread: load, segment and write every image."""
    import torch

    from zeroseg import writers
    from zeroseg.pipeline import Failure, build_pipeline

    torch.set_num_threads(1)
    start = time.perf_counter()
    pipeline = build_pipeline(**settings)
    load_s = time.perf_counter() - start
    writer = writers.OutputWriter(out, ("png", "overlay"))
    paths = sorted(str(p) for p in images.glob("*.png"))
    stage = {"unet": 0.0, "cluster": 0.0, "write": 0.0}
    times = []
    begin = time.perf_counter()
    for item in pipeline.stream(paths):
        if isinstance(item, Failure):
            raise SystemExit(item.error)
        stage["unet"] += item.timings["capture"]
        stage["cluster"] += item.timings["segment"]
        tick = time.perf_counter()
        writer.write(item, Path(item.source).stem)
        stage["write"] += time.perf_counter() - tick
        times.append(time.perf_counter() - begin)
    steady = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
    total = time.perf_counter() - start
    row = {"images": len(paths), "wall_s": total, "first_s": load_s + times[0], "e2e": len(paths) / total}
    return row | {"steady": steady, "stage": stage}


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of every process of this machine, with its command line."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry)] = (command, (int(fields[11]) + int(fields[12])) / ticks)
    return found


def ray_cpu_split(before: dict, after: dict, actor_pids: set[int]) -> dict[str, float]:
    """CPU seconds spent during a job by the segmenting actors, by this driver, and by Ray's own processes
    (raylet, GCS, agents, read tasks' workers)."""
    split = {"actors": 0.0, "driver": 0.0, "ray": 0.0}
    for pid, (command, seconds) in after.items():
        used = seconds - before.get(pid, (command, 0.0))[1]
        if pid in actor_pids:
            split["actors"] += used
        elif pid == os.getpid():
            split["driver"] += used
        elif command.startswith("ray::") or "site-packages/ray/" in command:
            split["ray"] += used
    return split


def run_ray(settings: dict[str, Any], images: Path, out: Path, workers: int) -> dict[str, Any]:
    from zeroseg.distributed import RayOptions, segment_on_ray

    options = RayOptions(num_workers=workers, batch_size=1, progress=False)
    before = cpu_seconds()
    report = segment_on_ray([str(images)], output=str(out), pipeline=settings, options=options, echo=None)
    if report.failures:
        raise SystemExit(report.failures[0].error)
    actor_pids = {int(name.rsplit(":", 1)[1]) for name in report.workers}
    cpu = ray_cpu_split(before, cpu_seconds(), actor_pids)
    stage = {name: report.stage_s[name] for name in ("read", "unet", "cluster", "write")}
    busy = {name: round(stats.images_per_s, 3) for name, stats in report.workers.items()}
    row = {"images": report.done, "wall_s": report.wall_s, "first_s": report.startup_s, "e2e": report.images_per_s}
    return row | {"steady": report.steady_images_per_s, "stage": stage, "per_worker": busy, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,sd14", help="comma separated: tiny, sd14")
    parser.add_argument("--tiny-images", type=int, default=48)
    parser.add_argument("--sd14-images", type=int, default=12)
    parser.add_argument("--sd14-size", type=int, default=256, help="image side for the SD 1.4 architecture")
    args = parser.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    plans = {"tiny": (args.tiny_images, 64), "sd14": (args.sd14_images, args.sd14_size)}
    rows: list[tuple[str, str, dict[str, Any]]] = []
    try:
        cases = []
        for kind in args.models.split(","):
            count, side = plans[kind]
            model = make_model(kind, work / "models")
            settings = {"method": "diffseg", "model": str(model), "image_size": side, "device": "cpu"}
            images = make_images(work / f"images-{kind}", count, side)
            cases.append((kind, settings, images))
            rows.append((kind, "local", run_local(settings, images, work / f"out-{kind}-local")))
            print_row(*rows[-1])
        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        print(f"ray.init: {time.perf_counter() - start:.1f} s")
        for kind, settings, images in cases:
            for workers in (1, 2):
                rows.append(
                    (kind, f"ray x{workers}", run_ray(settings, images, work / f"out-{kind}-{workers}", workers))
                )
                print_row(*rows[-1])
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_summary(rows)


def print_row(kind: str, mode: str, row: dict[str, Any]) -> None:
    stages = " ".join(f"{name} {seconds:.1f}" for name, seconds in row["stage"].items())
    workers = f"  per worker (busy) {row['per_worker']}" if "per_worker" in row else ""
    if "cpu" in row:
        workers += "  CPU s: " + " ".join(f"{name} {seconds:.1f}" for name, seconds in row["cpu"].items())
    print(
        f"{kind:5} {mode:7} {row['images']:3d} images wall {row['wall_s']:6.1f} s first result {row['first_s']:5.1f} s"
        f"  e2e {row['e2e']:6.3f}/s  steady {row['steady']:6.3f}/s  stages [s]: {stages}{workers}",
        flush=True,
    )


def print_summary(rows: list[tuple[str, str, dict[str, Any]]]) -> None:
    table = {(kind, mode): row for kind, mode, row in rows}
    print(
        "\n| model | local steady /s | ray x1 steady /s | ray x2 steady /s | per worker busy /s (x1; x2) "
        "| Ray's own CPU (x1; x2) | scaling x2 |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind in dict.fromkeys(kind for kind, _, _ in rows):
        local, one, two = (table.get((kind, mode)) for mode in ("local", "ray x1", "ray x2"))
        if not (local and one and two):
            continue
        scaling = two["steady"] / (2 * one["steady"]) if one["steady"] else float("nan")
        busy = "; ".join(", ".join(f"{v:.3f}" for v in r["per_worker"].values()) for r in (one, two))
        own = "; ".join(f"{_ray_share(r['cpu']):.0%}" for r in (one, two))
        print(
            f"| {kind} | {local['steady']:.3f} | {one['steady']:.3f} | {two['steady']:.3f} | {busy} | {own} |"
            f" {scaling:.2f} |"
        )


def _ray_share(cpu: dict[str, float]) -> float:
    """The share of the job's CPU time that went to the driver and Ray's own processes, not to the actors."""
    total = sum(cpu.values())
    return (cpu["driver"] + cpu["ray"]) / total if total else float("nan")


if __name__ == "__main__":
    main()
