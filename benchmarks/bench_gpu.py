"""Images per second of DiffSeg and DiffCut at their defaults on the released UNet architectures (random weights).

DiffSeg: SD 1.4 at 512 (attention capture with early exit, then aggregate + merge + NMS on the device).
DiffCut: SDXL at 1024 (encoder-only features, then NCut + concept assignment + PAMR at 1024 on the CPU, as
the segmenter does). Speed does not depend on the weight values. For each dtype and batch size it prints
the backbone-only time, the end-to-end time, images per second and the peak device memory::

    python benchmarks/bench_gpu.py                          # cuda, float16 + bfloat16, batch 1/4/8
    python benchmarks/bench_gpu.py --device cpu --quick     # smoke run: small sizes, batch 1, float32
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import dataclass
from typing import Any

import torch

from zeroseg.backbones.capture import capture_features, capture_self_attention
from zeroseg.diffcut.algorithm import segment_features
from zeroseg.diffcut.config import DiffCutConfig
from zeroseg.diffseg import segment_attention
from zeroseg.testing import real_architecture_unet


@dataclass
class _Backbone:
    """What the capture functions read from a loaded backbone."""

    unet: Any
    device: torch.device
    dtype: torch.dtype


def _conditioning(family: str, batch: int, size: int, dtype: torch.dtype, device: torch.device):
    if family == "sd14":
        return torch.randn(batch, 77, 768, dtype=dtype, device=device), None
    added = {
        "text_embeds": torch.randn(batch, 1280, dtype=dtype, device=device),
        "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * batch, dtype=dtype, device=device),
    }
    return torch.randn(batch, 77, 2048, dtype=dtype, device=device), added


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up (kernels, allocator, compiled-code caches)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def diffseg_pipeline(backbone: _Backbone, batch: int, size: int):
    """(backbone-only call, end-to-end call) for DiffSeg on ``batch`` images of ``size``."""
    latents = torch.randn(batch, 4, size // 8, size // 8, dtype=backbone.dtype, device=backbone.device)
    cond = _conditioning("sd14", batch, size, backbone.dtype, backbone.device)

    def capture():
        return capture_self_attention(backbone, latents, 300, cond)

    def end_to_end():
        maps = capture()
        return [segment_attention({s: m[i] for s, m in maps.items()}, out_size=size) for i in range(batch)]

    return capture, end_to_end


def diffcut_pipeline(backbone: _Backbone, batch: int, size: int):
    """(backbone-only call, end-to-end call) for DiffCut at its defaults on ``batch`` images of ``size``."""
    cfg = DiffCutConfig()
    latents = torch.randn(batch, 4, size // 8, size // 8, dtype=backbone.dtype, device=backbone.device)
    cond = _conditioning("sdxl", batch, size, backbone.dtype, backbone.device)
    images = torch.rand(batch, 3, size, size)

    def capture():
        return capture_features(backbone, latents, cfg.timestep, cond)

    def end_to_end():
        features = capture()
        return [
            segment_features(
                f.float().cpu(),
                tau=cfg.tau,
                alpha=cfg.alpha,
                out_size=(size, size),
                image=images[i],
                pamr_iters=cfg.pamr_iters,
                pamr_dilations=cfg.pamr_dilations,
                pamr_max_pixels=cfg.pamr_max_pixels,
            )
            for i, f in enumerate(features)
        ]

    return capture, end_to_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--methods", nargs="+", default=["diffseg", "diffcut"], choices=["diffseg", "diffcut"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--quick", action="store_true", help="smoke run: half sizes, batch 1, float32, 1 repeat")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtypes, batches, repeats = args.dtypes, args.batches, args.repeats
    sizes = {"diffseg": 512, "diffcut": 1024}
    if args.quick:
        dtypes, batches, repeats, sizes = ["float32"], [1], 1, {"diffseg": 256, "diffcut": 512}
    families = {"diffseg": ("sd14", diffseg_pipeline), "diffcut": ("sdxl", diffcut_pipeline)}

    rows = []
    with torch.inference_mode():
        for method in args.methods:
            family, pipeline = families[method]
            for dtype_name in dtypes:
                dtype = getattr(torch, dtype_name)
                backbone = _Backbone(real_architecture_unet(family, dtype=dtype).to(device), device, dtype)
                for batch in batches:
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    capture, end_to_end = pipeline(backbone, batch, sizes[method])
                    backbone_s = _timed(capture, repeats, device)
                    total_s = _timed(end_to_end, repeats, device)
                    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
                    rows.append((method, family, sizes[method], dtype_name, batch, backbone_s, total_s, peak))
                    print(f"  {method} {dtype_name} batch {batch}: {batch / total_s:.2f} img/s", flush=True)
                del backbone
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()

    print(f"\ndevice {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, best of {repeats}")
    header = (
        f"{'method':<8} {'arch':<5} {'size':>5} {'dtype':<9} {'batch':>5} {'backbone s':>10} {'total s':>8} "
        f"{'total/backbone':>14} {'img/s':>7} {'peak GiB':>8}"
    )
    print(header)
    print("-" * len(header))
    for method, family, size, dtype_name, batch, backbone_s, total_s, peak in rows:
        print(
            f"{method:<8} {family:<5} {size:>5} {dtype_name:<9} {batch:>5} {backbone_s:>10.3f} {total_s:>8.3f} "
            f"{total_s / backbone_s:>14.2f} {batch / total_s:>7.2f} {peak:>8.2f}"
        )


if __name__ == "__main__":
    main()
