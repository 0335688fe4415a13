"""Web UI: time of one settings change (re-segmentation from the kept capture, downloads written, pictures
rendered) at the methods' default sizes, on captures of the real shapes.

The capture's values do not change the cost much, and no pretrained weights are needed: DiffCut gets smoothed
random SSD-1B-shaped features (1280 x 32 x 32, image_size 1024), DiffSeg row-stochastic SD 1.4-shaped
attention maps (sides 64/32/16/8, image_size 512). The output is a 1024 x 768 photo. The backbone is the tiny
test model (never run here). Also prints the one-off NCut tree build (per upload), a click on the overlay (pick a
segment: highlight, description, cut-out; under 0.3 s), a split along the tree and the memory a session holds.

    python benchmarks/bench_web.py [--method diffseg] [--repeats 1] [--no-pamr]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from zeroseg.pipeline import build_pipeline
from zeroseg.testing import make_tiny_model
from zeroseg.types import SegmentationResult
from zeroseg.web.service import SegmentService
from zeroseg.web.sessions import SessionStore

OUTPUT = (768, 1024)
REPEATS = 2


def smooth_features(channels: int, side: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, channels, side, side, generator=gen)
    width = max(3, side // 4) | 1
    kernel = torch.ones(channels, 1, width, width) / width**2
    return torch.nn.functional.conv2d(feats, kernel, padding=width // 2, groups=channels)[0]


def diffseg_capture() -> dict[str, torch.Tensor]:
    capture = {}
    for side in (64, 32, 16, 8):
        x = torch.nn.functional.normalize(smooth_features(32, side, seed=side).reshape(32, -1), dim=0)
        capture[f"attn_{side}"] = torch.softmax(20 * (x.T @ x), dim=1)
    return capture


def photo() -> np.ndarray:
    rows = np.linspace(0, 1, OUTPUT[0])[:, None, None]
    cols = np.linspace(0, 1, OUTPUT[1])[None, :, None]
    rows, cols = np.broadcast_arrays(rows, cols)
    return (255 * np.concatenate([rows, cols, rows * cols], axis=2)).astype(np.uint8)


def timed(action, repeats: int = REPEATS) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["diffcut", "diffseg"], action="append", help="default: both")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="best of this many runs per row")
    parser.add_argument("--no-pamr", action="store_true", help="skip the DiffCut rows with PAMR (slow on a CPU)")
    args = parser.parse_args()
    methods = args.method or ["diffcut", "diffseg"]
    folder = tempfile.mkdtemp(prefix="bench-web-")
    model = str(make_tiny_model(f"{folder}/tiny-sdxl", "sdxl"))
    store = SessionStore(f"{folder}/sessions")
    service = SegmentService(models=[model])
    image = photo()
    print(f"{'method':8} {'change':34} {'seconds':>8}")

    if "diffcut" in methods:
        bench_diffcut(model, store, service, image, args.repeats, pamr_rows=not args.no_pamr)
    if "diffseg" in methods:
        bench_diffseg(model, store, service, image, args.repeats)
    store.close_all()


def bench_diffcut(model, store, service, image, repeats: int, *, pamr_rows: bool) -> None:  # noqa: ANN001
    diffcut = build_pipeline("diffcut", model=model, keep_capture=True, keep_tree=True)
    capture = {"features": smooth_features(1280, 32, seed=0)}
    start = time.perf_counter()
    tree = diffcut.segmenter.build_tree(capture)
    print(f"{'diffcut':8} {'NCut tree up to tau 0.9 (per upload)':34} {time.perf_counter() - start:8.2f}")
    start = time.perf_counter()
    direct = build_pipeline("diffcut", model=model, keep_capture=True)  # no tree: the NCut runs again
    direct.resegment(_result("diffcut", image, capture), tau=0.5, pamr=False)
    print(f"{'diffcut':8} {'change without the tree, tau 0.5':34} {time.perf_counter() - start:8.2f}")
    session = _session(store, "a", "diffcut", model, image, capture, tree)
    for tau in (0.3, 0.5, 0.7):
        for pamr in (False, True) if pamr_rows else (False,):
            seconds = timed(lambda: service.resegment(session, settings={"tau": tau, "pamr": pamr}), repeats)  # noqa: B023
            change = f"tau -> {tau}, PAMR {'on' if pamr else 'off'}"
            print(f"{'diffcut':8} {change + f' ({session.result.num_segments} seg)':34} {seconds:8.2f}")
    bench_pick(session, "diffcut", repeats)
    service.resegment(session, settings={"tau": 0.5, "pamr": False})
    picks = (service.pick_segment(session, s) for s in range(session.result.num_segments))
    splittable = next((p.segment_id for p in picks if p.can_split), None)
    if splittable is not None:
        start = time.perf_counter()
        service.pick_segment(session, splittable)
        view = service.split(session)
        change = f"split a segment, tau 0.5 ({view.num_segments} seg)"
        print(f"{'diffcut':8} {change:34} {time.perf_counter() - start:8.2f}")
    print(f"{'diffcut':8} {'memory held by the session (MB)':34} {session.memory_bytes() / 2**20:8.1f}")


def bench_diffseg(model, store, service, image, repeats: int) -> None:  # noqa: ANN001
    session = _session(store, "b", "diffseg", model, image, diffseg_capture(), None)
    for kl in (0.9, 1.1):
        for refine in (False, True):
            settings = {"kl_threshold": kl, "refine": refine}
            seconds = timed(lambda: service.resegment(session, settings=settings), repeats)  # noqa: B023
            change = f"kl_threshold -> {kl}, refine {'on' if refine else 'off'}"
            print(f"{'diffseg':8} {change + f' ({session.result.num_segments} seg)':34} {seconds:8.2f}")
    bench_pick(session, "diffseg", repeats)
    print(f"{'diffseg':8} {'memory held by the session (MB)':34} {session.memory_bytes() / 2**20:8.1f}")


def bench_pick(session, method: str, repeats: int) -> None:  # noqa: ANN001
    """A click on the overlay: highlight, description, cut-out PNG written (target: under 0.3 s)."""
    service = SegmentService.__new__(SegmentService)  # pick needs no pipeline
    seconds = timed(lambda: service.pick(session, 512, 384), repeats)
    print(f"{method:8} {'click: pick a segment':34} {seconds:8.2f}")


def _result(method: str, image: np.ndarray, capture: dict[str, torch.Tensor], tree=None) -> SegmentationResult:  # noqa: ANN001
    labels = np.zeros(image.shape[:2], np.int32)
    return SegmentationResult(labels=labels, method=method, image=image, capture=capture, tree=tree, source="photo")


def _session(store: SessionStore, key: str, method: str, model: str, image, capture, tree):  # noqa: ANN001, ANN202
    session = store.get(key)
    session.keep(_result(method, image, capture, tree), method=method, model=model, name="photo.jpg")
    return session


if __name__ == "__main__":
    main()
