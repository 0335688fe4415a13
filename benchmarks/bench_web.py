"""Web UI: time of one settings change (re-segmentation from the kept capture, downloads written, pictures
rendered) at the methods' default sizes, on captures of the real shapes, before and after the fast paths.

The capture's values do not change the cost much, and no pretrained weights are needed: DiffCut gets smoothed
random SSD-1B-shaped features (1280 x 32 x 32, image_size 1024), DiffSeg row-stochastic SD 1.4-shaped
attention maps (sides 64/32/16/8, image_size 512). The output is a 1024 x 768 photo. The backbone is the tiny
test model (never run here). Also prints the one-off NCut tree build (per upload), a click on the overlay (pick a
segment: highlight, description, cut-out; under 0.3 s), a split along the tree and the memory a session holds.

Columns (seconds): ``old`` is the code before the fast paths (DiffCut's concept assignment as matrix products and argmax
over the (K, H, W) scores, no result kept per tree cut), ``new`` the current code, both best of ``--repeats``
warm runs with nothing kept from the run before; ``old 1st`` / ``new 1st`` the first change in a new process
(session set up, the compiled kernels loaded as a page's model load leaves them, nothing else run yet). The
overlay is rendered once per change in both columns. Targets: a tau or KL-threshold change within 1 s with up
to 300 segments (PAMR and refine off).

    python benchmarks/bench_web.py [--method diffseg] [--repeats 2] [--no-pamr] [--no-fresh]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from zeroseg.diffcut import assign
from zeroseg.pipeline import build_pipeline
from zeroseg.refine.compiled import compiled_kernels
from zeroseg.testing import make_tiny_model
from zeroseg.types import SegmentationResult
from zeroseg.web.service import SegmentService
from zeroseg.web.sessions import SessionStore

OUTPUT = (768, 1024)
REPEATS = 2
TAUS = (0.3, 0.5, 0.7)
KL_THRESHOLDS = (0.9, 1.1)
FRESH_ROWS = (("diffcut", 0.5), ("diffcut", 0.7), ("diffseg", 1.1))
"""Rows also timed as the first change of a new process (PAMR and refine off)."""


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


def old_code(enabled: bool) -> None:
    """Switch DiffCut's concept assignment to the code before the compiled kernel (matrix products, argmax over
    the (K, H, W) scores) or back to the current code (the kernel, after its check on this machine)."""
    assign._agrees[:] = [False] if enabled else []


def change_seconds(service, session, settings, repeats: int, *, old: bool) -> float:  # noqa: ANN001
    """Best time of one settings change, nothing kept from the run before (no cached cut)."""

    def change() -> None:
        session.cut_results.clear()
        service.resegment(session, settings=settings)

    old_code(old)
    try:
        return timed(change, repeats)
    finally:
        old_code(False)


def row(method: str, change: str, *columns: float | None) -> None:
    cells = "".join(f"{'-' if value is None else f'{value:.2f}':>9}" for value in columns)
    print(f"{method:8} {change:44}{cells}", flush=True)


class Bench:
    """One tiny model, one service and session store, the photo; the sessions of both methods."""

    def __init__(self) -> None:
        folder = tempfile.mkdtemp(prefix="bench-web-")
        self.model = str(make_tiny_model(f"{folder}/tiny-sdxl", "sdxl"))
        self.store = SessionStore(f"{folder}/sessions")
        self.service = SegmentService(models=[self.model])
        self.image = photo()

    def diffcut_session(self, key: str = "a"):  # noqa: ANN201
        diffcut = build_pipeline("diffcut", model=self.model, keep_capture=True, keep_tree=True)
        capture = {"features": smooth_features(1280, 32, seed=0)}
        start = time.perf_counter()
        tree = diffcut.segmenter.build_tree(capture)
        seconds = time.perf_counter() - start
        self.service.pipeline("diffcut", self.model)  # built at upload on the page
        return _session(self.store, key, "diffcut", self.model, self.image, capture, tree), capture, seconds

    def diffseg_session(self, key: str = "b"):  # noqa: ANN201
        self.service.pipeline("diffseg", self.model)
        return _session(self.store, key, "diffseg", self.model, self.image, diffseg_capture(), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["diffcut", "diffseg"], action="append", help="default: both")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="best of this many runs per row")
    parser.add_argument("--no-pamr", action="store_true", help="skip the DiffCut rows with PAMR (slow on a CPU)")
    parser.add_argument("--no-fresh", action="store_true", help="skip the first-change-in-a-new-process column")
    parser.add_argument("--fresh-row", nargs=3, metavar=("METHOD", "VALUE", "CODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fresh_row:
        method, value, code = args.fresh_row
        print(f"{fresh_change(method, float(value), old=code == 'old'):.4f}")
        return
    methods = args.method or ["diffcut", "diffseg"]
    fresh = {} if args.no_fresh else {(m, v): run_fresh(m, v, args.repeats) for m, v in FRESH_ROWS if m in methods}
    bench = Bench()
    print(f"{'method':8} {'change (seconds)':44}{'old':>9}{'new':>9}{'old 1st':>9}{'new 1st':>9}")
    if "diffcut" in methods:
        bench_diffcut(bench, args.repeats, fresh, pamr_rows=not args.no_pamr)
    if "diffseg" in methods:
        bench_diffseg(bench, args.repeats, fresh)
    bench.store.close_all()


def run_fresh(method: str, value: float, repeats: int) -> tuple[float, float]:
    """The first change of ``method`` to ``value`` in a new process (best of ``repeats`` processes), with the old
    code and with the new."""
    seconds = {"old": float("inf"), "new": float("inf")}
    for _ in range(repeats):
        for code in seconds:
            command = [sys.executable, __file__, "--fresh-row", method, str(value), code]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            seconds[code] = min(seconds[code], float(output.strip().splitlines()[-1]))
    return seconds["old"], seconds["new"]


def fresh_change(method: str, value: float, *, old: bool) -> float:
    """Set a session up as a page's upload leaves it, then time its first settings change."""
    bench = Bench()
    if method == "diffcut":
        session, _, _ = bench.diffcut_session()
        settings = {"tau": value, "pamr": False}
    else:
        session = bench.diffseg_session()
        settings = {"kl_threshold": value, "refine": False}
    compiled_kernels()  # loaded in the background while a page's model loads
    old_code(old)
    start = time.perf_counter()
    bench.service.resegment(session, settings=settings)
    return time.perf_counter() - start


def bench_diffcut(bench: Bench, repeats: int, fresh: dict, *, pamr_rows: bool) -> None:
    service = bench.service
    session, capture, tree_seconds = bench.diffcut_session()
    row("diffcut", "NCut tree up to tau 0.9 (per upload)", None, tree_seconds)
    direct = build_pipeline("diffcut", model=bench.model, keep_capture=True)  # no tree: the NCut runs again
    for old in (True, False):
        old_code(old)
        start = time.perf_counter()
        direct.resegment(_result("diffcut", bench.image, capture), tau=0.5, pamr=False)
        seconds = time.perf_counter() - start
        if old:
            old_seconds = seconds
    old_code(False)
    row("diffcut", "change without the tree, tau 0.5", old_seconds, seconds)
    for tau in TAUS:
        settings = {"tau": tau, "pamr": False}
        old = change_seconds(service, session, settings, repeats, old=True)
        new = change_seconds(service, session, settings, repeats, old=False)
        first = fresh.get(("diffcut", tau), (None, None))
        row("diffcut", f"tau -> {tau}, PAMR off ({session.result.num_segments} seg)", old, new, *first)
    if pamr_rows:
        for tau in TAUS:
            settings = {"tau": tau, "pamr": True}
            new = change_seconds(service, session, settings, 1, old=False)
            row("diffcut", f"tau -> {tau}, PAMR on ({session.result.num_segments} seg)", None, new)
    for pamr in (False, True) if pamr_rows else (False,):
        service.resegment(session, settings={"tau": 0.5, "pamr": pamr})
        service.resegment(session, settings={"tau": 0.7, "pamr": pamr})
        start = time.perf_counter()
        service.resegment(session, settings={"tau": 0.5, "pamr": pamr})  # a cut seen before
        row("diffcut", f"tau back to 0.5, PAMR {'on' if pamr else 'off'} (kept cut)", None, time.perf_counter() - start)
    bench_pick(session, "diffcut", repeats)
    service.resegment(session, settings={"tau": 0.5, "pamr": False})
    picks = (service.pick_segment(session, s) for s in range(session.result.num_segments))
    splittable = next((p.segment_id for p in picks if p.can_split), None)
    if splittable is not None:
        start = time.perf_counter()
        service.pick_segment(session, splittable)
        view = service.split(session)
        row("diffcut", f"split a segment, tau 0.5 ({view.num_segments} seg)", None, time.perf_counter() - start)
    print(f"{'diffcut':8} {'memory held by the session (MB)':44}{'':9}{session.memory_bytes() / 2**20:9.1f}")


def bench_diffseg(bench: Bench, repeats: int, fresh: dict) -> None:
    service = bench.service
    session = bench.diffseg_session()
    for kl in KL_THRESHOLDS:
        for refine in (False, True):
            settings = {"kl_threshold": kl, "refine": refine}
            old = change_seconds(service, session, settings, repeats, old=True)
            new = change_seconds(service, session, settings, repeats, old=False)
            first = fresh.get(("diffseg", kl), (None, None)) if not refine else (None, None)
            change = f"kl_threshold -> {kl}, refine {'on' if refine else 'off'}"
            row("diffseg", change + f" ({session.result.num_segments} seg)", old, new, *first)
    bench_pick(session, "diffseg", repeats)
    print(f"{'diffseg':8} {'memory held by the session (MB)':44}{'':9}{session.memory_bytes() / 2**20:9.1f}")


def bench_pick(session, method: str, repeats: int) -> None:  # noqa: ANN001
    """A click on the overlay: highlight, description, cut-out PNG written (target: under 0.3 s)."""
    service = SegmentService.__new__(SegmentService)  # pick needs no pipeline
    seconds = timed(lambda: service.pick(session, 512, 384), repeats)
    row(method, "click: pick a segment", None, seconds)


def _result(method: str, image: np.ndarray, capture: dict[str, torch.Tensor], tree=None) -> SegmentationResult:  # noqa: ANN001
    labels = np.zeros(image.shape[:2], np.int32)
    return SegmentationResult(labels=labels, method=method, image=image, capture=capture, tree=tree, source="photo")


def _session(store: SessionStore, key: str, method: str, model: str, image, capture, tree):  # noqa: ANN001, ANN202
    session = store.get(key)
    session.keep(_result(method, image, capture, tree), method=method, model=model, name="photo.jpg")
    return session


if __name__ == "__main__":
    main()
