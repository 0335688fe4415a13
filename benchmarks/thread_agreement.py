"""Do label maps depend on the CPU thread count? Crops of real photos segmented with 1, 2 and 4 torch threads.

Each thread count runs in a fresh interpreter (``torch.set_num_threads`` before anything is computed). For every
crop it keeps the label map every result carries (canonical ids) and the method's own order
(``segment_capture`` before renumbering), then compares each thread count with one thread: images whose maps
are identical, and the least share of equal pixels. ``shared-capture`` runs the method of each thread count on
the first run's captures: it tells the method's own float noise from the backbone's. The method's own order
shows what ids looked like before canonical ids (float noise permutes the NCut recursion and the proposal
order); canonical maps differ only where a segment itself differs (a floating-point tie decided the other way).

Usage::

    python benchmarks/thread_agreement.py PHOTO_FOLDER [--crops 12] [--model tiny-sdxl] [--threads 1 2 4]

``--model tiny-sdxl`` (the default) writes the built-in tiny random-weight SDXL model to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SETTINGS = {"image_size": 128, "tau": 0.9, "pamr": False}


def make_crops(folder: Path, count: int, out: Path, seed: int = 0) -> list[Path]:
    """``count`` crops of 80-200 px from the photos of ``folder`` (seeded), saved as PNG in ``out``."""
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not photos:
        raise SystemExit(f"{folder}: no photos")
    rng = np.random.default_rng(seed)
    crops = []
    for index in range(count):
        image = Image.open(photos[index % len(photos)]).convert("RGB")
        width, height = rng.integers(80, 201, 2)
        width, height = min(width, image.width), min(height, image.height)
        left, top = rng.integers(0, image.width - width + 1), rng.integers(0, image.height - height + 1)
        path = out / f"crop{index:02d}.png"
        image.crop((left, top, left + width, top + height)).save(path)
        crops.append(path)
    return crops


def _segment_all(model: str, method: str, crops: list[str], threads: int, out: str, shared: str) -> None:
    """Worker: segment every crop with ``threads`` torch threads; save canonical and method-order maps, and the
    canonical maps of the method run on the captures in ``shared`` (written there by the first run)."""
    import torch

    torch.set_num_threads(threads)
    from zeroseg.image import load_image, to_tensor
    from zeroseg.pipeline import build_pipeline
    from zeroseg.refine.relabel import canonical_labels

    pipe = build_pipeline(method, model=model, **SETTINGS)
    captures = torch.load(shared) if Path(shared).is_file() else {}
    maps, mine = {}, {}
    for path in crops:
        stem = Path(path).stem
        result = pipe([path])[0]
        tensor = to_tensor(load_image(path))
        capture = mine[stem] = pipe.segmenter.capture_images([tensor])[0]
        size = tuple(tensor.shape[1:])
        raw = pipe.segmenter.segment_capture(capture, output_size=size, image=tensor)
        same = pipe.segmenter.segment_capture(captures.get(stem, capture), output_size=size, image=tensor)
        maps[f"{stem}/canonical"] = result.labels
        maps[f"{stem}/method"] = np.asarray(raw, dtype=np.int32)
        maps[f"{stem}/shared-capture"] = canonical_labels(same)
    if not captures:
        torch.save(mine, shared)
    np.savez(out, **maps)


def compare(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], kind: str) -> tuple[int, int, float]:
    """(identical maps, maps, least share of equal pixels) between two runs for one kind of ids."""
    names = sorted(name for name in reference if name.endswith(f"/{kind}"))
    shares = [float(np.mean(reference[name] == other[name])) for name in names]
    return sum(share == 1.0 for share in shares), len(names), min(shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--crops", type=int, default=12)
    parser.add_argument("--model", default="tiny-sdxl")
    parser.add_argument("--method", default="diffcut")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = args.model
        if model == "tiny-sdxl":
            from zeroseg.testing import make_tiny_model

            model = str(make_tiny_model(root / "tiny-sdxl", "sdxl"))
        crops = [str(p) for p in make_crops(args.photos, args.crops, root)]
        runs, shared = {}, str(root / "captures.pt")
        for threads in args.threads:
            out = root / f"threads{threads}.npz"
            code = (
                "import json, sys; sys.path.insert(0, sys.argv[1]); from thread_agreement import _segment_all; "
                "_segment_all(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5]), *sys.argv[6:])"
            )
            here = str(Path(__file__).parent)
            subprocess.run(
                [sys.executable, "-c", code, here, model, args.method, json.dumps(crops), str(threads), str(out)]
                + [shared],
                check=True,
            )
            with np.load(out) as data:
                runs[threads] = {name: data[name] for name in data.files}
        base = args.threads[0]
        print(f"{args.method} on {args.model}, {len(crops)} crops of 80-200 px, settings {SETTINGS}")
        print(f"{'threads':>8} | {'ids':>14} | {'identical maps':>14} | {'least equal pixels':>18}")
        for threads in args.threads[1:]:
            for kind in ("method", "canonical", "shared-capture"):
                same, total, least = compare(runs[base], runs[threads], kind)
                print(f"{base} vs {threads:<3} | {kind:>14} | {same:>7} of {total:<4} | {100 * least:>17.3f}%")


if __name__ == "__main__":
    main()
