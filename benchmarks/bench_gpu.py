"""Images per second of DiffSeg and DiffCut at their defaults on every backbone family, through the library pipeline.

Each row runs :func:`zeroseg.build_pipeline` for a method at its model-aware defaults (image size, timestep,
layers) on a backbone with a released architecture and random weights
(:func:`zeroseg.testing.real_architecture_backbone`; speed does not depend on the weight values): the UNets
``sd14`` and ``ssd1b`` and the transformers ``sd3-medium``, ``sd35-medium``, ``sd35-large``, ``flux-schnell``,
``flux-dev`` and ``pixart-sigma``. A call segments ``batch`` copies of one photo: reading and resizing, VAE
encoding, the denoiser pass, then the method with its refinement and the label map at the photo's own size, as
``zeroseg segment`` does.

Columns: ``forward s`` one plain backbone pass on the batch (VAE encoding and the whole denoiser, stock
processors, nothing recorded), ``capture s`` the pipeline's own capture timing (the same inputs, the layers read,
stopped after the last one), ``total s`` the wall time of the whole call, ``total/fwd`` total over the plain pass
(target at most 1.25), ``img/s`` the batch over the total, ``busy`` the share of a longer stream's wall time
(``--stream`` batches through ``Pipeline.stream``) during which the backbone ran, ``stream img/s`` that stream's
throughput, ``finite`` whether every captured tensor is free of NaN and inf (float16 overflows show here),
``fwd GiB`` and ``peak GiB`` the peak device memory (CUDA) or the peak growth of the resident set (CPU) of the
plain pass and of the pipeline call, ``mem ratio`` their ratio (target at most 1.2)::

    python benchmarks/bench_gpu.py                                   # cuda, float16 + bfloat16, batch 1 and 4
    python benchmarks/bench_gpu.py --archs sd3-medium flux-schnell --dtypes bfloat16
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

ARCHS = ("sd14", "ssd1b", "sd3-medium", "sd35-medium", "sd35-large", "flux-schnell", "flux-dev", "pixart-sigma")

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
    folder = tiny_root / ARCHITECTURE_FAMILY[arch]
    if not folder.exists():
        make_tiny_model(folder, ARCHITECTURE_FAMILY[arch])
    return load_backbone(str(folder), device=device, dtype=dtype)


@torch.inference_mode()
def _plain_forward(pipeline, image: Path, batch: int, device: torch.device) -> tuple[float, float]:
    """(seconds, peak GiB) of one plain backbone pass on the batch: VAE encoding and the whole denoiser."""
    from zeroseg.image import load_image, to_tensor

    segmenter = pipeline.segmenter
    images = torch.stack([segmenter.prepare(to_tensor(load_image(image))[None])[0]] * batch)
    timestep = segmenter.config.timestep

    def run() -> None:
        latents, conditioning = segmenter.denoiser_inputs(images, noise_seed=0)
        segmenter.backbone.adapter.run_denoiser(segmenter.backbone, latents, timestep, conditioning)

    run()  # warm-up
    window = _peak_window(device)
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start, _peak_gib(device, window)


def run(args: argparse.Namespace) -> list[tuple]:
    device = torch.device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tiny_root = Path(tmp) if args.tiny else None
        for arch in args.archs:
            for dtype_name in args.dtypes:
                dtype = getattr(torch, dtype_name)
                backbone = _backbone(arch, device, dtype, tiny_root)
                for method in args.methods:
                    for batch in args.batches:
                        pipeline = build_pipeline(method, backbone=backbone, model=backbone.model, batch_size=batch)
                        images = [args.image] * batch
                        forward_s, forward_gib = _plain_forward(pipeline, args.image, batch, device)
                        _time_call(pipeline, images, device)  # warm-up: kernels, allocator, compiled-code caches
                        window = _peak_window(device)
                        backbone_s, total_s = min(_time_call(pipeline, images, device) for _ in range(args.repeats))
                        peak = _peak_gib(device, window)
                        stream_rate, busy = _time_stream(pipeline, images, args.stream, device)
                        finite = _captures_finite(pipeline, args.image)
                        size = pipeline.segmenter.image_size
                        rows.append(
                            (method, arch, size, dtype_name, batch, forward_s, backbone_s, total_s)
                            + (stream_rate, busy, finite, forward_gib, peak)
                        )
                        print(f"  {arch} {method} {dtype_name} batch {batch}: {batch / total_s:.2f} img/s", flush=True)
                del backbone
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def print_table(rows: list[tuple], device: str, repeats: int) -> None:
    print(f"\ndevice {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, best of {repeats}")
    header = (
        f"{'method':<8} {'arch':<12} {'size':>5} {'dtype':<9} {'batch':>5} {'forward s':>9} {'capture s':>9} "
        f"{'total s':>8} {'total/fwd':>9} {'img/s':>7} {'stream img/s':>12} {'busy':>5} {'finite':>6} "
        f"{'fwd GiB':>7} {'peak GiB':>8} {'mem ratio':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        method, arch, size, dtype_name, batch, forward_s, backbone_s, total_s = row[:8]
        stream_rate, busy, finite, forward_gib, peak = row[8:]
        ratio = peak / forward_gib if forward_gib > 0 else float("nan")
        print(
            f"{method:<8} {arch:<12} {size:>5} {dtype_name:<9} {batch:>5} {forward_s:>9.3f} {backbone_s:>9.3f} "
            f"{total_s:>8.3f} {total_s / forward_s:>9.2f} {batch / total_s:>7.2f} {stream_rate:>12.2f} "
            f"{busy:>5.2f} {'yes' if finite else 'NO':>6} {forward_gib:>7.2f} {peak:>8.2f} {ratio:>9.2f}"
        )


def main(argv: list[str] | None = None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--methods", nargs="+", default=["diffseg", "diffcut"], choices=["diffseg", "diffcut"])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=sorted(ARCHITECTURE_FAMILY))
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
