"""Images per second of DiffSeg and DiffCut at their defaults, end to end through the library pipeline.

Each row runs :func:`zeroseg.build_pipeline` for the method at its defaults on a backbone with the released
architectures and random weights (:func:`zeroseg.testing.real_architecture_backbone`; speed does not depend on
the weight values): DiffSeg on SD 1.4 at 512, DiffCut on SSD-1B at 1024 (``--diffcut-arch sdxl`` for SDXL). A
call segments ``batch`` copies of one photo: reading and resizing, VAE encoding, the UNet pass, then the method
with its refinement and the label map at the photo's own size, as ``zeroseg segment`` does.

Columns: ``backbone s`` is the pipeline's own capture timing (VAE encoding and UNet pass, the part on the
device), ``total s`` the wall time of the whole call, ``total/backbone`` their ratio, ``img/s`` the batch over
the total, ``busy`` the share of a longer stream's wall time (``--stream`` batches through ``Pipeline.stream``,
as a folder run goes) during which the backbone ran, ``stream img/s`` that stream's throughput, ``finite``
whether every captured tensor is free of NaN and inf (float16 overflows show here), ``peak GiB`` the peak
device memory (CUDA) or the peak growth of the resident set (CPU)::

    python benchmarks/bench_gpu.py                                   # cuda, float16 + bfloat16, batch 1/4/8
    python benchmarks/bench_gpu.py --device cpu --dtypes float32 --batches 1 --threads 2
    python benchmarks/bench_gpu.py --tiny --device cpu --dtypes float32 --batches 1   # smoke run, tiny models
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

import torch
from peak_memory import PeakWindow

from zeroseg import build_pipeline
from zeroseg.backbones import load_backbone
from zeroseg.testing import ARCHITECTURE_FAMILY, make_tiny_model, real_architecture_backbone

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut.jpg"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_window(device: torch.device) -> PeakWindow | None:
    """Start a peak-memory window: CUDA's allocator statistics, or the resident set on the CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return None
    return PeakWindow()


def _peak_gib(device: torch.device, window: PeakWindow | None) -> float:
    if window is None:
        return torch.cuda.max_memory_allocated(device) / 2**30
    return window.extra_mib() / 1024


def _time_call(pipeline, images: list[Path], device: torch.device) -> tuple[float, float]:
    """(backbone seconds, total seconds) of one pipeline call on ``images``."""
    _sync(device)
    start = time.perf_counter()
    results = pipeline(images)
    _sync(device)
    total = time.perf_counter() - start
    return sum(r.timings["capture"] for r in results), total


def _time_stream(pipeline, images: list[Path], batches: int, device: torch.device) -> tuple[float, float]:
    """(images/s, busy share of the backbone) over ``batches`` batches streamed back to back."""
    _sync(device)
    start = time.perf_counter()
    results = list(pipeline.stream(images * batches))
    _sync(device)
    wall = time.perf_counter() - start
    return len(results) / wall, sum(r.timings["capture"] for r in results) / wall


def _captures_finite(pipeline, image: Path) -> bool:
    """Whether a capture of ``image`` holds only finite values."""
    from zeroseg.image import load_image, to_tensor

    capture = pipeline.segmenter.capture_images([to_tensor(load_image(image))])[0]
    return all(bool(torch.isfinite(value.float()).all()) for value in capture.values())


def _backbone(arch: str, device: torch.device, dtype: torch.dtype, tiny_root: Path | None):
    if tiny_root is None:
        return real_architecture_backbone(arch, device=device, dtype=dtype)
    folder = make_tiny_model(tiny_root / arch, ARCHITECTURE_FAMILY[arch])
    return load_backbone(str(folder), device=device, dtype=dtype)


def run(args: argparse.Namespace) -> list[tuple]:
    device = torch.device(args.device)
    archs = {"diffseg": "sd14", "diffcut": args.diffcut_arch}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tiny_root = Path(tmp) if args.tiny else None
        for method in args.methods:
            for dtype_name in args.dtypes:
                dtype = getattr(torch, dtype_name)
                backbone = _backbone(archs[method], device, dtype, tiny_root)
                for batch in args.batches:
                    pipeline = build_pipeline(method, backbone=backbone, model=backbone.model, batch_size=batch)
                    images = [args.image] * batch
                    _time_call(pipeline, images, device)  # warm-up: kernels, allocator, compiled-code caches
                    window = _peak_window(device)
                    backbone_s, total_s = min(_time_call(pipeline, images, device) for _ in range(args.repeats))
                    peak = _peak_gib(device, window)
                    stream_rate, busy = _time_stream(pipeline, images, args.stream, device)
                    finite = _captures_finite(pipeline, args.image)
                    size = pipeline.segmenter.image_size
                    rows.append(
                        (method, archs[method], size, dtype_name, batch, backbone_s, total_s, peak)
                        + (stream_rate, busy, finite)
                    )
                    print(f"  {method} {dtype_name} batch {batch}: {batch / total_s:.2f} img/s", flush=True)
                del backbone
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def print_table(rows: list[tuple], device: str, repeats: int) -> None:
    print(f"\ndevice {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, best of {repeats}")
    header = (
        f"{'method':<8} {'arch':<6} {'size':>5} {'dtype':<9} {'batch':>5} {'backbone s':>10} {'total s':>8} "
        f"{'total/backbone':>14} {'img/s':>7} {'stream img/s':>12} {'busy':>5} {'finite':>6} {'peak GiB':>8}"
    )
    print(header)
    print("-" * len(header))
    for method, arch, size, dtype_name, batch, backbone_s, total_s, peak, stream_rate, busy, finite in rows:
        print(
            f"{method:<8} {arch:<6} {size:>5} {dtype_name:<9} {batch:>5} {backbone_s:>10.3f} {total_s:>8.3f} "
            f"{total_s / backbone_s:>14.2f} {batch / total_s:>7.2f} {stream_rate:>12.2f} {busy:>5.2f} "
            f"{'yes' if finite else 'NO':>6} {peak:>8.2f}"
        )


def main(argv: list[str] | None = None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--methods", nargs="+", default=["diffseg", "diffcut"], choices=["diffseg", "diffcut"])
    parser.add_argument("--diffcut-arch", default="ssd1b", choices=["ssd1b", "sdxl"])
    parser.add_argument("--image", type=Path, default=PHOTO, help="the photo segmented (copies make the batch)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the warm-up (best is shown)")
    parser.add_argument("--stream", type=int, default=4, help="batches streamed back to back for busy and stream img/s")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--tiny", action="store_true", help="the tiny test models instead (a smoke run)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args)
    print_table(rows, args.device, args.repeats)
    return rows


if __name__ == "__main__":
    main()
