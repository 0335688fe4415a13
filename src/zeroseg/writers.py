"""Writing a :class:`~zeroseg.types.SegmentationResult` in each output format, atomically, without recomputing.

Formats (``--save``):

- ``png``: ``<stem>.png``, the label map (palette PNG whose pixel values are the segment ids).
- ``overlay``: ``<stem>_overlay.jpg``, segment colours and boundaries over the image.
- ``labelled``: ``<stem>_labelled.jpg``, the overlay with each segment's name (needs named segments).
- ``json``: ``<stem>.json``, every segment's id, area, bbox and COCO RLE mask, plus label, score and
  runner-ups when named (as SAM's automatic mask generator writes: masks, not only a palette PNG).
- ``tree``: ``<stem>_tree.json``, DiffCut's NCut tree (granularity after the fact), when kept.

Several runs may write into one folder at once (two shells, a rerun, several workers): each image is claimed
before its work starts (:meth:`OutputWriter.claim`, an exclusive claim file released on failure; a claim left
by a crashed process on this machine is taken over), so the runs share the work instead of both computing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from zeroseg._version import __version__
from zeroseg.errors import ConfigError
from zeroseg.outputs import OutputError, atomic_write, ensure_folder, make_overlay, save_label_map
from zeroseg.rle import encode_label_rles
from zeroseg.types import SegmentationResult

OVERLAY_ALPHA = 0.5
"""Weight of the segment colours in the overlays."""

CLAIM_SUFFIX = ".zeroseg-claim"
STALE_CLAIM_SECONDS = 6 * 3600
"""A claim from another machine older than this is taken as left by a crashed run."""


# ---------------------------------------------------------------------------------------------- rendering


def label_anchor(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the most interior pixel of a mask (maximum of the distance transform)."""
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def draw_overlay(image: Any, labels: np.ndarray, *, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """Segment colours and boundaries (:func:`zeroseg.outputs.make_overlay`) over the image resized to the label
    map; pixels with a negative label stay clear."""
    array = np.asarray(labels)
    rgb = _rgb_like(image, array.shape)
    valid = array >= 0
    overlay = np.asarray(make_overlay(Image.fromarray(rgb), np.where(valid, array, 0), alpha=alpha)).copy()
    overlay[~valid] = rgb[~valid]
    return Image.fromarray(overlay)


def draw_labelled_overlay(
    image: Any, labels: np.ndarray, names: dict[int, str] | Sequence[str | None], *, alpha: float = OVERLAY_ALPHA
) -> Image.Image:
    """The overlay with each segment's name written at its most interior point on a dark box.

    Args:
        image: PIL image, ``(H, W, 3)`` uint8 or ``(3, H, W)`` float in [0, 1].
        labels: ``(H, W)`` integer label map.
        names: name per segment id (dict, or a list indexed by id; empty or ``None`` names are not drawn).
        alpha: colour weight of the overlay.
    """
    array = np.asarray(labels)
    overlay = draw_overlay(image, array, alpha=alpha)
    draw = ImageDraw.Draw(overlay)
    font = ImageFont.load_default()
    lookup = dict(names) if isinstance(names, dict) else dict(enumerate(names))
    height, width = array.shape
    for segment_id, name in lookup.items():
        mask = array == segment_id
        if not mask.any() or not name:
            continue
        x, y = label_anchor(mask)
        left, top, right, bottom = draw.textbbox((0, 0), name, font=font)
        text_w, text_h = right - left, bottom - top
        x0 = int(np.clip(x - text_w // 2, 0, max(width - text_w - 2, 0)))
        y0 = int(np.clip(y - text_h // 2, 0, max(height - text_h - 2, 0)))
        draw.rectangle((x0 - 1, y0 - 1, x0 + text_w + 2, y0 + text_h + 2), fill=(0, 0, 0))
        draw.text((x0 - left + 1, y0 - top + 1), name, fill=(255, 255, 255), font=font)
    return overlay


def _rgb_like(image: Any, shape: tuple[int, int]) -> np.ndarray:
    """``image`` as ``(H, W, 3)`` uint8 of the label map's size (bilinear when the sizes differ)."""
    if isinstance(image, Image.Image):
        rgb = image.convert("RGB")
    else:
        array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
        if array.ndim == 4:
            array = array[0]
        if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
            array = array.transpose(1, 2, 0)
        if array.dtype != np.uint8:
            array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
        rgb = Image.fromarray(np.ascontiguousarray(array))
    if rgb.size != (shape[1], shape[0]):
        rgb = rgb.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(rgb)


def render_overlay(result: SegmentationResult) -> Image.Image:
    """The overlay of a result (what ``overlay`` writes)."""
    return make_overlay(Image.fromarray(_image_of(result)), result.labels, alpha=OVERLAY_ALPHA)


def render_labelled(result: SegmentationResult) -> Image.Image:
    """The labelled overlay of a named result (what ``labelled`` writes)."""
    return draw_labelled_overlay(_image_of(result), result.labels, {s.id: s.label for s in result.segments})


def _image_of(result: SegmentationResult) -> np.ndarray:
    if result.image is None:
        raise ConfigError("this result carries no image; overlays need `SegmentationResult.image`")
    return _rgb_like(result.image, result.labels.shape)


def result_to_json(result: SegmentationResult) -> dict[str, Any]:
    """The ``json`` document: image size, source, settings and every segment with its COCO RLE mask.

    ``bbox`` is ``[x, y, width, height]``; ``segmentation`` is ``{"size": [H, W], "counts": str}``
    (decode with :func:`zeroseg.rle.decode_rle` or pycocotools).
    """
    rles = encode_label_rles(result.labels, [s.id for s in result.segments])
    segments = [segment.to_dict() | {"segmentation": rles[segment.id]} for segment in result.segments]
    height, width = result.size
    return {
        "height": height,
        "width": width,
        "source": result.source,
        "method": result.method,
        "zeroseg": __version__,
        "settings": result.settings,
        "segments": segments,
    }


# ---------------------------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class Format:
    """One output format: the file it writes, how, and what a result needs for it.

    ``needs`` names what the run must offer: ``"names"`` (segments named from a vocabulary) or ``"tree"`` (a
    method that keeps a segment tree, :attr:`zeroseg.segmenter.Segmenter.tree_spec`);
    :func:`zeroseg.folder_run.resolve_formats` checks them before a model loads.
    """

    name: str
    suffix: str  # appended to the stem
    write: Callable[[SegmentationResult, Path, bool], None]
    help: str
    needs: frozenset[str] = frozenset()


def _write_png(result: SegmentationResult, path: Path, overwrite: bool) -> None:
    save_label_map(result.labels, path, overwrite=overwrite)


def _write_image(render: Callable[[SegmentationResult], Image.Image], quality: int):  # noqa: ANN202
    def write(result: SegmentationResult, path: Path, overwrite: bool) -> None:
        picture = render(result)
        with atomic_write(path, overwrite=overwrite) as temp:
            picture.save(temp, format="JPEG", quality=quality)

    return write


def _write_json(document: Callable[[SegmentationResult], dict[str, Any]]):  # noqa: ANN202
    def write(result: SegmentationResult, path: Path, overwrite: bool) -> None:
        text = json.dumps(document(result), indent=1) + "\n"
        with atomic_write(path, overwrite=overwrite) as temp:
            temp.write_text(text, encoding="utf-8")

    return write


def _tree_json(result: SegmentationResult) -> dict[str, Any]:
    return {"source": result.source, "method": result.method, "tree": result.tree.to_dict()}


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("png", ".png", _write_png, "label map, a palette PNG of segment ids"),
        Format("overlay", "_overlay.jpg", _write_image(render_overlay, 90), "colour overlay with boundaries"),
        Format(
            "labelled",
            "_labelled.jpg",
            _write_image(render_labelled, 92),
            "overlay with names",
            needs=frozenset({"names"}),
        ),
        Format("json", ".json", _write_json(result_to_json), "every segment with bbox and COCO RLE mask"),
        Format(
            "tree",
            "_tree.json",
            _write_json(_tree_json),
            "the segment tree (DiffCut's NCut tree)",
            needs=frozenset({"tree"}),
        ),
    )
}
DEFAULT_FORMATS = ("png", "overlay")
NAMED_DEFAULT_FORMATS = ("png", "overlay", "json", "labelled")


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"png,overlay,json"`` -> ``("png", "overlay", "json")``; unknown names are refused."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ConfigError(
            f"unknown output format(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(FORMATS)}",
            setting="save",
        )
    return tuple(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------- writer


class OutputWriter:
    """Writes results under ``folder`` in the chosen formats; skips what exists unless ``overwrite``.

    Args:
        folder: output folder (created; a one-line :class:`~zeroseg.outputs.OutputError` when it cannot be).
        formats: format names (:data:`FORMATS`).
        overwrite: replace existing outputs.
    """

    def __init__(
        self, folder: str | os.PathLike[str], formats: Sequence[str] = DEFAULT_FORMATS, *, overwrite: bool = False
    ) -> None:
        self.folder = ensure_folder(folder)
        self.formats = parse_formats(formats)
        self.overwrite = overwrite

    def targets(self, stem: str) -> dict[str, Path]:
        """Format -> output path of the image named ``stem`` (may contain ``/`` for subfolders)."""
        return {name: self.folder / f"{stem}{FORMATS[name].suffix}" for name in self.formats}

    def complete(self, stem: str) -> bool:
        """Every output of ``stem`` exists."""
        return all(path.exists() for path in self.targets(stem).values())

    def write(self, result: SegmentationResult, stem: str) -> list[Path]:
        """Write every format of ``result``; an existing output is kept unless ``overwrite``.

        Raises:
            ConfigError: a format needs what the result lacks (names, a tree).
            OutputError: a file cannot be written (names it).
        """
        written = []
        for name, path in self.targets(stem).items():
            spec = FORMATS[name]
            if "names" in spec.needs and not result.named:
                raise ConfigError(f"the `{name}` output needs named segments (give a vocabulary or labels)")
            if "tree" in spec.needs and result.tree is None:
                raise ConfigError(f"the `{name}` output needs the segment tree (build the pipeline with keep_tree)")
            if path.exists() and not self.overwrite:
                continue
            ensure_folder(path.parent)
            spec.write(result, path, self.overwrite)
            written.append(path)
        return written

    def claim_path(self, stem: str) -> Path:
        """The claim file of ``stem`` (hidden, beside its outputs)."""
        first = next(iter(self.targets(stem).values()))
        return first.with_name(f".{Path(stem).name}{CLAIM_SUFFIX}")

    @contextlib.contextmanager
    def claim(self, stem: str) -> Iterator[bool]:
        """Claim the outputs of ``stem`` for this process while the block runs.

        Yields ``True`` when this process holds the claim (do the work), ``False`` when another live run
        holds it (leave the image to that run). The claim file is removed when the block ends, also on
        failure; one left by a process that died on this machine, or older than :data:`STALE_CLAIM_SECONDS`,
        is taken over.
        """
        path = self.claim_path(stem)
        held = try_claim(path)
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def try_claim(path: Path) -> bool:
    """Create the claim file ``path`` exclusively; take it over when its owner is gone. True when held."""
    ensure_folder(path.parent)
    record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
    for _ in range(3):
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not _stale(path):
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        except OSError as exc:
            raise OutputError(f"{path.parent}: cannot claim an output there ({exc.strerror or exc})") from None
        with os.fdopen(descriptor, "w") as handle:
            handle.write(record)
        return True
    return False


def claim_owner(path: Path) -> dict[str, Any] | None:
    """The host, pid and time recorded in a claim file (``None`` when absent or unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stale(path: Path) -> bool:
    owner = claim_owner(path)
    if owner is None:
        try:  # being written right now, or garbage: stale only once it has aged
            return time.time() - path.stat().st_mtime > 60
        except FileNotFoundError:
            return True
    if owner.get("host") == socket.gethostname():
        return not _alive(int(owner.get("pid", -1)))
    return time.time() - float(owner.get("time", 0)) > STALE_CLAIM_SECONDS


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
