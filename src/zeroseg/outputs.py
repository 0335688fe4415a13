"""Writing label maps and overlays, atomically.

Every file is written to a temporary name in the destination folder and moved onto its final name only once
it is complete (:func:`atomic_write`), so an interrupted run never leaves a half-written output. Missing
folders are created; problems with the destination become one-line :class:`OutputError` messages.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from zeroseg.errors import ConfigError, ZeroSegError

logger = logging.getLogger(__name__)

_PALETTE_SIZE = 256
_OVERLAY_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


class OutputError(ZeroSegError, OSError):
    """An output cannot be written (names the file or folder and the problem)."""


class OutputExistsError(OutputError, FileExistsError):
    """The output file exists and overwriting was not asked for."""


# ---------------------------------------------------------------------------------------------- writing


def output_exists(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` already exists (callers that skip finished work check this first)."""
    return Path(path).exists()


def check_output(path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Raise unless ``path`` may be written: it must not be a folder, nor exist when ``overwrite`` is False.

    Raises:
        OutputExistsError: the file exists and ``overwrite`` is False.
        OutputError: ``path`` is a folder.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{target}: is a folder, cannot write an output file there")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target}: exists (use --overwrite to replace it)")


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and its parents) if needed and check that files can be created in it.

    Raises:
        OutputError: a path component is a file, or the folder cannot be created or written.
    """
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists() or p.is_symlink()), None)
    if existing is not None and not existing.is_dir():
        if existing == folder:
            raise OutputError(f"{folder}: cannot be used as the output folder (it is a file, not a folder)")
        raise OutputError(f"{folder}: cannot create the output folder ({existing} is a file, not a folder)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise OutputError(f"{folder}: cannot create the output folder (permission denied)") from None
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({_reason(exc)})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: output folder is not writable (permission denied)")
    return folder


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` when the block succeeds.

    The temporary file lives in the same folder (so the final ``os.replace`` is atomic) and is named
    ``.<name>.<random>.tmp<suffix>``; it is removed if the block raises, or if the final move fails. The
    block must create the file. With ``overwrite=False`` an existing ``path`` is refused before the block
    runs, and the final move will not replace a file that appeared meanwhile (a hard link is used where the
    file system supports it). Missing folders are created.

    Raises:
        OutputExistsError: ``overwrite`` is False and ``path`` exists.
        OutputError: the folder cannot be created or written, or the block wrote nothing.
    """
    target = Path(path)
    check_output(target, overwrite=overwrite)
    ensure_folder(target.parent)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp{target.suffix}")
    try:
        yield temp
        if not temp.exists():
            raise OutputError(f"{target}: nothing was written")
        _move_into_place(temp, target, overwrite=overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _move_into_place(temp: Path, target: Path, *, overwrite: bool) -> None:
    try:
        if overwrite:
            os.replace(temp, target)
            return
        try:
            os.link(temp, target)  # fails if `target` appeared meanwhile; never clobbers
        except FileExistsError:
            raise OutputExistsError(f"{target}: exists (use --overwrite to replace it)") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            check_output(target, overwrite=False)  # no hard links here: check, then replace
            os.replace(temp, target)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the file ({_reason(exc)})") from None


def _reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


# ---------------------------------------------------------------------------------------------- colours


def palette(n: int) -> np.ndarray:
    """A fixed, deterministic table of ``n`` well-separated colours, ``(n, 3)`` uint8; row i colours label i.

    The first 256 colours are chosen greedily (Glasbey-style) from a 24-level RGB grid so that each new colour
    is as far as possible, in CIELAB, from those before it; very dark and very light colours are left out so
    that the black/white boundary lines of :func:`make_overlay` stay visible. Label 0 gets a colour like any
    other. Colours beyond 256 come from a fixed integer hash of the index (distinct-looking, not optimised).

    Raises:
        ConfigError: ``n`` is negative.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"`n` must be a non-negative integer, got {n!r}")
    table = _glasbey_table()
    if n <= len(table):
        return table[:n].copy()
    extra = np.arange(len(table), n, dtype=np.uint64)
    return np.concatenate([table, _hash_colours(extra)])


@lru_cache(maxsize=1)
def _glasbey_table() -> np.ndarray:
    levels = np.linspace(0, 255, 24)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = _rgb_to_lab(grid)
    keep = (lab[:, 0] > 25) & (lab[:, 0] < 92)
    grid, lab = grid[keep], lab[keep]
    # Seed: a strong blue (the grid point nearest to it), then farthest-point sampling.
    first = int(np.argmin(np.abs(grid - np.array([31.0, 119.0, 180.0])).sum(axis=1)))
    chosen = [first]
    distance = ((lab - lab[first]) ** 2).sum(axis=1)  # squared CIELAB distance to the nearest chosen colour
    for _ in range(_PALETTE_SIZE - 1):
        index = int(np.argmax(distance))
        chosen.append(index)
        np.minimum(distance, ((lab - lab[index]) ** 2).sum(axis=1), out=distance)
    return np.rint(grid[chosen]).astype(np.uint8)


def _rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0..255, ``(N, 3)``) to CIELAB under D65."""
    c = rgb / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = (
        linear
        @ np.array(
            [
                [0.4124564, 0.3575761, 0.1804375],
                [0.2126729, 0.7151522, 0.0721750],
                [0.0193339, 0.1191920, 0.9503041],
            ]
        ).T
    )
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def _hash_colours(index: np.ndarray) -> np.ndarray:
    """Deterministic colours from a splitmix64 hash of each index; channels kept in 40..215."""
    with np.errstate(over="ignore"):
        z = index + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    channels = np.stack([(z >> np.uint64(shift)) & np.uint64(0xFF) for shift in (0, 8, 16)], axis=1)
    return (40 + channels.astype(np.float64) * (175 / 255)).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------- label maps


def save_label_map(labels: np.ndarray, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write an ``(H, W)`` integer label map as a lossless PNG whose pixel values are the label ids.

    Labels 0..255 give a palette ('P' mode) PNG coloured with :func:`palette`, so it both opens as a picture
    and reads back (``np.asarray(Image.open(path))``) as the exact ids. A map with a label above 255 is
    written as a 16-bit grayscale PNG instead (ids 0..65535, no colours). Written atomically.

    Raises:
        ConfigError: ``labels`` is not a 2-D array of non-negative integers below 65536, or ``path`` is not
            a ``.png``.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputError: the destination cannot be written.
    """
    labels = _check_labels(labels)
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise ConfigError(f"`path` of a label map must end in .png (lossless), got {str(target)!r}")
    highest = int(labels.max()) if labels.size else 0
    if highest < _PALETTE_SIZE:
        image = Image.fromarray(labels.astype(np.uint8), mode="P")
        image.putpalette(palette(_PALETTE_SIZE).reshape(-1).tolist())
    else:
        image = Image.fromarray(labels.astype(np.uint16))  # mode "I;16"
        logger.info("%s: labels up to %d; writing a 16-bit grayscale PNG", target, highest)
    with atomic_write(target, overwrite=overwrite) as temp:
        _save(image, temp, target, format="PNG")
    return target


def _check_labels(labels: np.ndarray) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 2:
        raise ConfigError(f"`labels` must be a 2-D (H, W) array, got shape {tuple(array.shape)}")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise ConfigError(f"`labels` must hold integers, got dtype {array.dtype}")
    if array.size and (int(array.min()) < 0 or int(array.max()) > 65535):
        raise ConfigError(f"`labels` must lie in 0..65535, got {int(array.min())}..{int(array.max())}")
    return array.astype(np.int64)


def _save(image: Image.Image, temp: Path, target: Path, **options: object) -> None:
    try:
        image.save(temp, **options)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the file ({_reason(exc)})") from None


# ---------------------------------------------------------------------------------------------- overlays


def find_boundaries(labels: np.ndarray) -> np.ndarray:
    """One-pixel-wide segment boundaries of an ``(H, W)`` label map, as an ``(H, W)`` bool mask.

    Of every pair of 4-neighbours with different labels, the pixel with the smaller label is marked. This is
    half of scikit-image's ``find_boundaries(mode="thick", connectivity=1)`` (which marks both sides), so
    the line is one pixel wide, and a thin segment with a larger label keeps its colour between two lines.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ConfigError(f"`labels` must be a 2-D (H, W) array, got shape {tuple(labels.shape)}")
    marked = np.zeros(labels.shape, dtype=bool)
    for axis in (0, 1):
        first = [slice(None), slice(None)]
        second = [slice(None), slice(None)]
        first[axis], second[axis] = slice(None, -1), slice(1, None)
        a, b = labels[tuple(first)], labels[tuple(second)]
        marked[tuple(first)] |= a < b
        marked[tuple(second)] |= b < a
    return marked


def make_overlay(image: Image.Image, labels: np.ndarray, *, alpha: float = 0.5, boundaries: bool = True) -> Image.Image:
    """Blend the :func:`palette` colours of ``labels`` over ``image`` and draw the segment boundaries.

    ``out = (1 - alpha) * image + alpha * colour``. Boundaries (:func:`find_boundaries`) are drawn in black
    or white, whichever contrasts more with the blended pixel beneath (luma threshold 128).

    Args:
        image: the image the labels belong to (any PIL mode; converted to RGB).
        labels: ``(H, W)`` integer label map with the image's height and width.
        alpha: opacity of the colours, in [0, 1].
        boundaries: draw the one-pixel boundary lines.

    Returns:
        An RGB image of the input's size.

    Raises:
        ConfigError: sizes differ, ``alpha`` is outside [0, 1], or ``labels`` is not valid.
    """
    if not isinstance(image, Image.Image):
        raise ConfigError(f"`image` must be a PIL.Image.Image, got {type(image).__name__}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"`alpha` must lie in [0, 1], got {alpha!r}")
    labels = _check_labels(labels)
    if labels.shape != (image.height, image.width):
        raise ConfigError(
            f"`labels` shape {labels.shape} does not match the image's (H, W) = {(image.height, image.width)}"
        )
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    colours = palette(int(labels.max()) + 1 if labels.size else 0)[labels].astype(np.float64)
    blended = np.rint((1.0 - alpha) * pixels + alpha * colours)
    if boundaries:
        edge = find_boundaries(labels)
        luma = blended @ np.array([0.299, 0.587, 0.114])
        line = np.where(luma >= 128, 0.0, 255.0)
        blended[edge] = line[edge][:, None]
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), mode="RGB")


def save_overlay(
    image: Image.Image,
    labels: np.ndarray,
    path: str | os.PathLike[str],
    *,
    alpha: float = 0.5,
    quality: int = 90,
    overwrite: bool = False,
) -> Path:
    """Write :func:`make_overlay` to ``path``: JPEG for .jpg/.jpeg (``quality`` 1..95), PNG for .png.

    Raises:
        ConfigError: unknown extension, ``quality`` out of range, or invalid overlay arguments.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        OutputError: the destination cannot be written.
    """
    target = Path(path)
    file_format = _OVERLAY_FORMATS.get(target.suffix.lower())
    if file_format is None:
        raise ConfigError(f"`path` of an overlay must end in .jpg, .jpeg or .png, got {str(target)!r}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
        raise ConfigError(f"`quality` must be an integer in 1..95, got {quality!r}")
    check_output(target, overwrite=overwrite)
    overlay = make_overlay(image, labels, alpha=alpha)
    options: dict[str, object] = {"format": file_format}
    if file_format == "JPEG":
        options["quality"] = quality
    with atomic_write(target, overwrite=overwrite) as temp:
        _save(overlay, temp, target, **options)
    return target
