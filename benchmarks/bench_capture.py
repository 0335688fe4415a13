"""Cost of reading the UNet: DiffSeg's attention capture and DiffCut's encoder-only feature extraction.

Random weights with the released architectures (speed does not depend on weight values), so it runs anywhere:

    python benchmarks/bench_capture.py                     # SD 1.4 at 512; SDXL at 512 and 1024
    python benchmarks/bench_capture.py --only sd14 --repeats 3
    python benchmarks/bench_capture.py --device cuda --dtype float16

Rows, each the best of ``--repeats`` runs after one warm-up:

- ``sd14 512 plain forward``: the UNet with diffusers' default (SDPA) attention, the baseline.
- ``sd14 512 attention capture``: zeroseg's recorder on all 16 self-attention layers (probabilities
  materialised, head- and layer-averaged per side), stopping after the last one.
- ``sdxl S full forward`` vs ``sdxl S encoder-only features``: DiffCut's features with the early exit.
- ``sdxl S full forward + hook``: the official way (whole UNet, forward hook), for the equality check.
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import dataclass
from typing import Any

import torch

from zeroseg.backbones import get_family
from zeroseg.backbones.capture import _run_denoiser, capture_features, capture_self_attention
from zeroseg.backbones.families import Conditioning
from zeroseg.backbones.families.unet import unet_feature_layer
from zeroseg.testing import real_architecture_unet


@dataclass
class _FakeBackbone:
    """Just what the capture functions read from a Backbone."""

    denoiser: Any
    device: torch.device
    dtype: torch.dtype
    adapter: Any  # the family adapter: where the layers are, how the UNet is called


def _conditioning(name: str, batch: int, size: int, dtype: torch.dtype, device: torch.device):
    if name == "sd14":
        return Conditioning({"encoder_hidden_states": torch.randn(batch, 77, 768, dtype=dtype, device=device)})
    return Conditioning(
        {
            "encoder_hidden_states": torch.randn(batch, 77, 2048, dtype=dtype, device=device),
            "text_embeds": torch.randn(batch, 1280, dtype=dtype, device=device),
            "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * batch, dtype=dtype, device=device),
        }
    )


def _best(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["sd14", "sdxl"], default=None)
    parser.add_argument("--sizes", default="512,1024", help="SDXL image sizes")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    rows: list[tuple[str, float, str]] = []

    def report(name: str, seconds: float, note: str = "") -> None:
        rows.append((name, seconds, note))
        print(f"  {name}: {seconds:.3f} s {note}", flush=True)

    layer_name = ""

    with torch.inference_mode():
        if args.only in (None, "sd14"):
            unet = real_architecture_unet("sd14", dtype=dtype).to(device)
            backbone = _FakeBackbone(unet, device, dtype, get_family("sd"))
            latents = torch.randn(1, 4, 64, 64, dtype=dtype, device=device)
            cond = _conditioning("sd14", 1, 512, dtype, device)
            plain = _best(lambda: _run_denoiser(backbone, latents, 300, cond), args.repeats, device)
            captured = _best(lambda: capture_self_attention(backbone, latents, 300, cond), args.repeats, device)
            report("sd14 512 plain forward (SDPA)", plain)
            report("sd14 512 attention capture, 16 layers", captured, f"{captured / plain - 1:+.0%} vs plain")
            del unet, backbone
            gc.collect()

        if args.only in (None, "sdxl"):
            unet = real_architecture_unet("sdxl", dtype=dtype).to(device)
            backbone = _FakeBackbone(unet, device, dtype, get_family("sdxl"))
            layer_name = unet_feature_layer(unet)[0]
            for size in (int(s) for s in args.sizes.split(",")):
                latents = torch.randn(1, 4, size // 8, size // 8, dtype=dtype, device=device)
                cond = _conditioning("sdxl", 1, size, dtype, device)
                full = _best(lambda x=latents, c=cond: _run_denoiser(backbone, x, 50, c), args.repeats, device)
                early = _best(lambda x=latents, c=cond: capture_features(backbone, x, 50, c), args.repeats, device)
                hooked = capture_features(backbone, latents, 50, cond, early_exit=False)
                same = torch.equal(hooked, capture_features(backbone, latents, 50, cond))
                report(f"sdxl {size} full forward", full)
                report(f"sdxl {size} encoder-only features", early, f"{full / early:.2f}x faster; identical: {same}")
            del unet, backbone
            gc.collect()

    print(f"\ndevice {device}, dtype {args.dtype}, threads {torch.get_num_threads()}, best of {args.repeats}")
    print(f"{'measurement':<42} {'seconds':>9}  note")
    for name, seconds, note in rows:
        print(f"{name:<42} {seconds:>9.3f}  {note}")
    if layer_name:
        print(f"DiffCut feature layer (SDXL): {layer_name}")


if __name__ == "__main__":
    main()
