"""Images per second of the library pipeline with its stages overlapped, against running them one after another.

The pipeline is the real one (:class:`zeroseg.pipeline.Pipeline` over a real segmenter on the tiny random-weight
models of :mod:`zeroseg.testing`), reading and decoding JPEG files, except that the backbone is a stand-in for an
accelerator: the segmenter's capture is computed once, then each batch sleeps ``--stand-in`` seconds (a sleep
releases the GIL, as a CUDA call does) and returns the cached capture. The method runs for real on the CPU, at
its defaults but for: DiffSeg at ``image_size`` 384, DiffCut at ``image_size`` 128 with ``tau`` 0.9 (PAMR at its
30 iterations), both on 160x160 photos, so that the method stage takes 0.1-0.15 s per image on two cores, under
the 0.3 s stand-in (the ``method s`` column).

Columns: ``capture s`` the stand-in seconds per batch, ``load s``/``method s`` the measured decoding and method
(``segment_capture`` plus the canonical relabelling) seconds per image in the sequential run, ``sequential``
and ``pipelined`` the images per second of ``Pipeline(overlap=False)`` and ``Pipeline(overlap=True)`` over the
same images, ``bound`` the rate of the slowest stage, batch size / max(capture, batch size x method, batch size
x load). One line per method follows, and the last line repeats the method whose pipelined rate is the lowest
share of its bound::

    python benchmarks/bench_pipeline.py                              # both methods, 0.3 s stand-in, 12 images
    python benchmarks/bench_pipeline.py --method diffcut --images 24 --stand-in 0.1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from zeroseg import build_pipeline
from zeroseg.backbones import load_backbone
from zeroseg.testing import make_tiny_model

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut.jpg"
PHOTO_SIDE = 160
METHODS = {
    "diffseg": ("sd", {"image_size": 384}),
    "diffcut": ("sdxl", {"image_size": 128, "tau": 0.9}),
}


class StandInCapture:
    """A backbone that takes ``seconds`` per batch without holding the GIL: the real capture, computed once."""

    def __init__(self, capture: Any, seconds: float) -> None:
        self.capture, self.seconds, self.cached = capture, seconds, None

    def __call__(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        if self.cached is None:
            self.cached = self.capture(images[:1])[0]
        time.sleep(self.seconds)
        return [dict(self.cached) for _ in range(images.shape[0])]


def _photos(folder: Path, count: int) -> list[Path]:
    """``count`` JPEG files of the example photo at ``PHOTO_SIDE`` px, so each one is decoded for real."""
    photo = Image.open(PHOTO).convert("RGB").resize((PHOTO_SIDE, PHOTO_SIDE))
    paths = []
    for index in range(count):
        path = folder / f"photo-{index}.jpg"
        photo.save(path, quality=90)
        paths.append(path)
    return paths


def _rate(pipeline: Any, photos: list[Path]) -> tuple[float, list[Any]]:
    """Images per second of one stream over ``photos``, and its results."""
    start = time.perf_counter()
    results = list(pipeline.results(photos))
    return len(results) / (time.perf_counter() - start), results


def measure(method: str, backbone: Any, photos: list[Path], args: argparse.Namespace) -> dict[str, float]:
    """Sequential and pipelined rates of ``method`` over ``photos``, its stage times and the bound they set."""
    settings = METHODS[method][1]
    pipeline = build_pipeline(method, backbone=backbone, model=backbone.model, batch_size=args.batch_size, **settings)
    segmenter = pipeline.segmenter
    segmenter.capture = StandInCapture(segmenter.capture, args.stand_in)
    pipeline(photos[:1])  # warm-up: the real capture is cached, the kernels and allocator are warm
    pipeline.overlap = False
    sequential, results = _rate(pipeline, photos)
    pipeline.overlap = True
    pipelined, _ = _rate(pipeline, photos)
    load = sum(r.timings["load"] for r in results) / len(results)
    segment = sum(r.timings["segment"] for r in results) / len(results)
    batch = args.batch_size
    bound = batch / max(args.stand_in, batch * segment, batch * load)
    return {"capture": args.stand_in, "load": load, "method": segment} | {
        "sequential": sequential,
        "pipelined": pipelined,
        "bound": bound,
    }


def summary(name: str, row: dict[str, float]) -> str:
    return (
        f"{name}: pipelined {row['pipelined']:.2f} images/s, sequential {row['sequential']:.2f} images/s, "
        f"bound {row['bound']:.2f} images/s"
    )


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        photos = _photos(Path(tmp), args.images)
        for method in args.methods:
            family = METHODS[method][0]
            backbone = load_backbone(str(make_tiny_model(Path(tmp) / family, family)))
            rows[method] = measure(method, backbone, photos, args)
    return rows


def print_report(rows: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    print(
        f"\n{args.images} images, batch {args.batch_size}, stand-in {args.stand_in} s per batch, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"{'method':<8} {'capture s':>9} {'load s':>7} {'method s':>8} {'sequential':>10} {'pipelined':>9} "
        f"{'bound':>6} {'pipelined/bound':>15}"
    )
    for method, row in rows.items():
        print(
            f"{method:<8} {row['capture']:>9.3f} {row['load']:>7.3f} {row['method']:>8.3f} "
            f"{row['sequential']:>10.2f} {row['pipelined']:>9.2f} {row['bound']:>6.2f} "
            f"{row['pipelined'] / row['bound']:>15.2f}"
        )
    for method, row in rows.items():
        print(summary(method, row))
    worst = min(rows.values(), key=lambda row: row["pipelined"] / row["bound"])
    print(summary("overlap", worst))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stand-in", type=float, default=0.3, help="seconds the stand-in backbone takes per batch")
    parser.add_argument("--images", type=int, default=12, help="images per stream")
    parser.add_argument("--method", choices=[*METHODS, "both"], default="both")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)
    args.methods = list(METHODS) if args.method == "both" else [args.method]
    return args


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args)
    print_report(rows, args)
    return rows


if __name__ == "__main__":
    main()
