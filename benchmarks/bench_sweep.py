"""Time per image of a sweep step (capture read from the feature cache + clustering) versus a full pass.

A full pass is what the first evaluation of an image costs: the UNet capture plus the clustering. A sweep step
is what every further setting costs: reading the cached capture plus the clustering. Rows:

- ``tiny``: the tiny random-weight test models (``zeroseg.testing.make_tiny_model``), at 64 px (DiffSeg) and
  128 px (DiffCut).
- ``sd14`` (``--sd14``): a random UNet with the Stable Diffusion 1.4 architecture
  (``zeroseg.testing.real_architecture_unet("sd14")``) at the papers' sizes: DiffSeg 512 px, DiffCut 1024 px.
  The VAE and text encoder stay tiny (the empty-prompt conditioning is a random 77 x 768 tensor), so the full
  pass is slightly under-estimated and the ratio is conservative.

Clustering uses the evaluation settings and the evaluation's own steps (the method's protocol from the registry,
its refinement stage): DiffSeg at the input size, DiffCut at 1/8 of it with PAMR (10 iterations, dilations 1, 2,
4, 8). Usage::

    python benchmarks/bench_sweep.py --images 3 [--sd14] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from zeroseg import create_segmenter
from zeroseg.backbones.families import Conditioning
from zeroseg.eval.cache import FeatureCache
from zeroseg.eval.matching_scorer import refinement_of
from zeroseg.eval.protocols import method_protocol, resize_image


def synthetic_images(count: int, side: int, seed: int = 0) -> list[torch.Tensor]:
    """Quadrant images with noise, ``(3, side, side)`` in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    images = []
    for _ in range(count):
        colours = torch.rand(4, 3, generator=gen)
        img = torch.empty(3, side, side)
        h = side // 2
        img[:, :h, :h], img[:, :h, h:] = colours[0, :, None, None], colours[1, :, None, None]
        img[:, h:, :h], img[:, h:, h:] = colours[2, :, None, None], colours[3, :, None, None]
        images.append((img + 0.05 * torch.randn(3, side, side, generator=gen)).clamp(0, 1))
    return images


def bench(name: str, segmenter: Any, images: list[torch.Tensor], cache_root: Path) -> dict[str, Any]:
    """Full pass versus sweep step, in seconds per image (after one warm-up image)."""
    protocol = method_protocol(segmenter.method)
    input_side, eval_side = protocol.sizes(segmenter.image_size)
    size = (eval_side, eval_side)
    cache = FeatureCache(cache_root)
    key = {"bench": name, **segmenter.capture_key()}

    def cluster(seg: Any, capture: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        labels = seg.segment_capture(capture, output_size=size)
        refinement = refinement_of(seg)
        return labels if refinement is None else refinement(labels, resize_image(image, eval_side))

    with torch.inference_mode():
        warm = segmenter.capture(images[0][None])[0]
        cluster(segmenter, warm, images[0])
        capture_s = cluster_s = write_s = 0.0
        for i, image in enumerate(images):
            t0 = time.perf_counter()
            capture = segmenter.capture(image[None])[0]
            t1 = time.perf_counter()
            cluster(segmenter, capture, image)
            t2 = time.perf_counter()
            cache.put(key, f"img{i}", capture)
            write_s += time.perf_counter() - t2
            capture_s += t1 - t0
            cluster_s += t2 - t1
        # a sweep step: another clustering setting on the cached capture
        other = segmenter.with_config(**({"tau": 0.6} if segmenter.method == "diffcut" else {"kl_threshold": 1.0}))
        read_s = sweep_cluster_s = 0.0
        for i, image in enumerate(images):
            t0 = time.perf_counter()
            capture = cache.get(key, f"img{i}")
            t1 = time.perf_counter()
            cluster(other, capture, image)
            read_s += t1 - t0
            sweep_cluster_s += time.perf_counter() - t1
    n = len(images)
    full = (capture_s + cluster_s) / n
    sweep = (read_s + sweep_cluster_s) / n
    entry = next(cache.folder(key).glob("*.npz"))
    return {
        "row": name,
        "method": segmenter.method,
        "image_size": input_side,
        "eval_size": eval_side,
        "images": n,
        "capture_s": capture_s / n,
        "cluster_s": cluster_s / n,
        "cache_write_s": write_s / n,
        "cache_read_s": read_s / n,
        "full_pass_s": full,
        "sweep_step_s": sweep,
        "sweep_over_full": sweep / full,
        "cache_entry_mb": entry.stat().st_size / 2**20,
    }


def tiny_rows(folder: Path, count: int) -> list[dict[str, Any]]:
    from zeroseg.testing import make_tiny_model

    sd = make_tiny_model(folder / "tiny-sd", family="sd")
    sdxl = make_tiny_model(folder / "tiny-sdxl", family="sdxl")
    diffseg = create_segmenter("diffseg", model=str(sd), image_size=64, anchors=4)
    diffcut = create_segmenter("diffcut", model=str(sdxl), image_size=128, pamr_iters=10, pamr_dilations=(1, 2, 4, 8))
    return [
        bench("tiny", diffseg, synthetic_images(count, 64), folder / "cache"),
        bench("tiny", diffcut, synthetic_images(count, 128), folder / "cache"),
    ]


def sd14_rows(folder: Path, count: int) -> list[dict[str, Any]]:
    from zeroseg.testing import make_tiny_model, real_architecture_unet

    sd = make_tiny_model(folder / "tiny-sd", family="sd")
    unet = real_architecture_unet("sd14")
    rows = []
    for method, side, extra in (
        ("diffseg", 512, {}),
        ("diffcut", 1024, {"pamr_iters": 10, "pamr_dilations": (1, 2, 4, 8)}),
    ):
        seg = create_segmenter(method, model=str(sd), image_size=side, **extra)
        seg.backbone.denoiser = unet
        hidden = torch.randn(1, 77, unet.config.cross_attention_dim)
        seg.backbone.override_conditioning(side, Conditioning({"encoder_hidden_states": hidden}))
        rows.append(bench("sd14", seg, synthetic_images(count, side), folder / "cache"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3, help="images per row (after one warm-up)")
    parser.add_argument("--sd14", action="store_true", help="also time the SD 1.4 architecture (slow on CPU)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        rows = tiny_rows(Path(tmp), args.images)
        if args.sd14:
            rows += sd14_rows(Path(tmp), args.images)
    header = "| row | method | input | eval | full pass (s/img) | sweep step (s/img) | cache read | sweep/full |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['method']} | {r['image_size']} | {r['eval_size']} | {r['full_pass_s']:.3f} "
            f"| {r['sweep_step_s']:.3f} | {r['cache_read_s']:.3f} | {100 * r['sweep_over_full']:.1f}% |"
        )
    print("\n".join(lines))  # noqa: T201 - a benchmark script reports on stdout
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
