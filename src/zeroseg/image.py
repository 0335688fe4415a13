"""Reading and validating input images; converting them to tensors; crop and resize helpers.

This is where users' files first meet the library, so every failure becomes one :class:`ImageError` line that
names the file (or ``<array>`` / ``<image>``) and the problem. Whatever the source, :func:`load_image` returns
an 8-bit RGB :class:`PIL.Image.Image` with the EXIF orientation applied.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from zeroseg.errors import ConfigError, ImageError, one_line

logger = logging.getLogger(__name__)

MIN_SIDE = 8
"""Smallest accepted image side in pixels; smaller inputs are refused (they cannot be segmented usefully)."""

MAX_PIXELS = 2 * 89_478_485
"""Default pixel limit (about 179 Mpx): a stock PIL's own hard limit, ``2 * Image.MAX_IMAGE_PIXELS``."""

_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
# Errors that PIL (and the codecs below it) raise on truncated or corrupt pixel data.
_DECODE_ERRORS = (OSError, EOFError, SyntaxError, ValueError, IndexError, zlib.error)
# PIL's decompression-bomb check reads the global Image.MAX_IMAGE_PIXELS; it is only lifted under this lock.
_PIL_LIMIT_LOCK = threading.Lock()


def load_image(
    source: str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor,
    *,
    max_pixels: int | None = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> Image.Image:
    """Read an image from a path, a PIL image, a numpy array or a tensor and return it as 8-bit RGB.

    Conversions: grayscale and 1-bit are replicated to RGB; alpha (LA, RGBA, palette or RGB with a
    transparent colour) is composited over white; 16-bit images map 0..65535 linearly onto 0..255 (no
    clipping at 255); 32-bit float images are taken as [0, 1] when their values lie there, else min-max
    scaled; CMYK, YCbCr and other colour modes are converted by PIL; multi-frame files give their first frame.
    EXIF orientation is applied (``PIL.ImageOps.exif_transpose``).

    Arrays: ``(H, W)`` or ``(H, W, 1|3|4)`` numpy arrays of uint8, uint16 (scaled as above), bool or float
    in [0, 1]. Tensors: ``(3, H, W)``, ``(H, W, 3)`` (also 1 or 4 channels, and a leading batch of one),
    uint8 or float in [0, 1]; a ``(3, H, 3)`` tensor is read channel-first.

    The header size is checked against ``max_pixels`` before any pixel is decoded, so a decompression bomb is
    refused at once. Truncated files raise; ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left alone.

    Args:
        source: path (str or ``os.PathLike``), ``PIL.Image.Image``, ``np.ndarray`` or ``torch.Tensor``.
        max_pixels: largest accepted ``width * height``; None disables the check (trusted inputs only).
        min_side: smallest accepted side in pixels (default :data:`MIN_SIDE`).

    Returns:
        A loaded ``PIL.Image.Image`` in mode ``"RGB"``, detached from any file.

    Raises:
        ImageError: the source cannot be read or used; the one-line message names it and the problem.
        ConfigError: ``max_pixels`` or ``min_side`` is out of range.
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or int(max_pixels) < 1):
        raise ConfigError(f"`max_pixels` must be a positive integer or None, got {max_pixels!r}")
    if isinstance(min_side, bool) or int(min_side) < 1:
        raise ConfigError(f"`min_side` must be a positive integer, got {min_side!r}")
    if isinstance(source, (str, os.PathLike)):
        return _load_path(os.fspath(source), max_pixels=max_pixels, min_side=min_side)
    if isinstance(source, Image.Image):
        name = str(getattr(source, "filename", "") or "<image>")
        _check_size(name, source.size, max_pixels=max_pixels, min_side=min_side)
        return _decode(source, name)
    if isinstance(source, torch.Tensor):
        array = _tensor_to_hwc(source)
        return _array_to_image(array, "<tensor>", max_pixels=max_pixels, min_side=min_side)
    if isinstance(source, np.ndarray):
        if source.ndim == 3 and source.shape[-1] not in (1, 3, 4) and source.shape[0] in (1, 3, 4):
            raise ImageError(
                f"<array>: shape {tuple(source.shape)} looks channel-first; numpy images must be (H, W, 3)"
            )
        return _array_to_image(source, "<array>", max_pixels=max_pixels, min_side=min_side)
    raise ImageError(
        f"<{type(source).__name__}>: cannot read an image from this type "
        "(expected a path, PIL.Image.Image, numpy.ndarray or torch.Tensor)"
    )


def to_tensor(image: Image.Image) -> torch.Tensor:
    """Convert an image to a ``(3, H, W)`` float32 tensor in [0, 1].

    Images that are not already RGB go through :func:`load_image` first (same conversions and checks).
    """
    if not isinstance(image, Image.Image):
        raise ConfigError(f"`image` must be a PIL.Image.Image, got {type(image).__name__}")
    if image.mode != "RGB":
        image = load_image(image)
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32).div_(255.0)


def resize(x: torch.Tensor, size: tuple[int, int], *, antialias: bool = False) -> torch.Tensor:
    """Resize ``(C, H, W)`` or ``(B, C, H, W)`` float images to ``size = (height, width)``, bilinearly.

    Uses ``align_corners=False`` (half-pixel centres) and, by default, no antialiasing: both official codes
    resize this way (DiffSeg through ``tf.image.resize``, DiffCut through ``F.interpolate``), so downscaling
    is aliased exactly as in the papers. Pass ``antialias=True`` for a smoother result that no longer
    matches the reference numbers.

    Raises:
        ConfigError: ``x`` is not a 3-D/4-D floating tensor, or ``size`` is not two positive integers.
    """
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(f"`x` must be a (C, H, W) or (B, C, H, W) tensor, got {shape}")
    if not x.is_floating_point():
        raise ConfigError(f"`x` must be a floating-point tensor, got dtype {x.dtype}")
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ConfigError(f"`size` must be (height, width) with two positive integers, got {size!r}")
    batched = x if x.ndim == 4 else x.unsqueeze(0)
    out = F.interpolate(batched, size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias)
    return out if x.ndim == 4 else out.squeeze(0)


def center_crop(x: torch.Tensor, side: int | None = None) -> torch.Tensor:
    """Crop the central ``side x side`` square of a ``(..., H, W)`` tensor.

    The default side is ``min(H, W)``, with offsets ``((H - side) // 2, (W - side) // 2)``: DiffSeg's
    ``process_image`` (spec section 2.1). DiffCut's evaluation loader crops ``side = min(H, W) - 1``.

    Raises:
        ConfigError: ``x`` has fewer than 2 dims, or ``side`` is not in ``1..min(H, W)``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ConfigError(f"`x` must be a tensor of shape (..., H, W), got {type(x).__name__}")
    height, width = int(x.shape[-2]), int(x.shape[-1])
    shortest = min(height, width)
    if side is None:
        side = shortest
    if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= shortest:
        raise ConfigError(f"`side` must be an integer in 1..{shortest} for a {height}x{width} input, got {side!r}")
    top, left = (height - side) // 2, (width - side) // 2
    return x[..., top : top + side, left : left + side]


# --------------------------------------------------------------------------------------------- internals


def _load_path(name: str, *, max_pixels: int | None, min_side: int) -> Image.Image:
    """Open, check and decode one file; every failure becomes a one-line ImageError naming ``name``."""
    path = Path(name)
    if path.is_dir():
        raise ImageError(f"{name}: is a folder, not an image file")
    if not path.exists():
        problem = "broken symbolic link" if path.is_symlink() else "no such file"
        raise ImageError(f"{name}: {problem}")
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: empty file (0 bytes)")
        fp = open(path, "rb")  # noqa: SIM115 - handed to PIL, closed below
    except PermissionError:
        raise ImageError(f"{name}: permission denied (cannot read the file)") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read the file ({exc.strerror or exc})") from None
    with fp:
        image = _open_header(fp, name, max_pixels=max_pixels)
        try:
            _check_size(name, image.size, max_pixels=max_pixels, min_side=min_side)
            return _decode(image, name)
        finally:
            image.close()


def _open_header(fp: Any, name: str, *, max_pixels: int | None) -> Image.Image:
    """Parse the header only (no pixel decoding); PIL's own bomb refusal is turned into our message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp)
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (cannot identify format)") from None
    except Image.DecompressionBombError:
        # Above PIL's hard limit. Read the header again with PIL's check lifted, to report the size, or to
        # honour a caller's larger `max_pixels`; still no pixel is decoded here.
        fp.seek(0)
        with _PIL_LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(fp)
            except Exception:  # noqa: BLE001 - fall back to PIL's own numbers
                raise ImageError(f"{name}: image too large; refusing a possible decompression bomb") from None
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{name}: truncated or corrupt image data ({one_line(exc)})") from None


def _check_size(name: str, size: tuple[int, int], *, max_pixels: int | None, min_side: int) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{name}: image too large ({width}x{height} = {width * height / 1e6:.0f} Mpx, "
            f"limit {max_pixels / 1e6:.0f} Mpx); refusing a possible decompression bomb"
        )
    if width < min_side or height < min_side:
        raise ImageError(f"{name}: image too small ({width}x{height} px; at least {min_side} px a side)")


def _decode(image: Image.Image, name: str) -> Image.Image:
    """Decode the first frame, apply EXIF orientation and convert to RGB; PIL warnings go to the log."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
                logger.info("%s: %d frames; using the first", name, image.n_frames)
            image.load()
            try:
                image = ImageOps.exif_transpose(image)
            except Exception as exc:  # noqa: BLE001 - a broken EXIF block must not lose the pixels
                logger.warning("%s: EXIF orientation ignored (%s)", name, one_line(exc))
            rgb = _to_rgb(image, name)
        except ImageError:
            raise
        except Image.DecompressionBombError:
            raise ImageError(f"{name}: image too large; refusing a possible decompression bomb") from None
        except MemoryError:
            raise ImageError(f"{name}: not enough memory to decode the image") from None
        except _DECODE_ERRORS as exc:
            raise ImageError(f"{name}: truncated or corrupt image data ({one_line(exc)})") from None
    for warning in caught:
        logger.debug("%s: %s", name, warning.message)
    return rgb


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Convert a loaded image of any PIL mode to 8-bit RGB."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(image).astype(np.float64)
        if mode == "I" and (values.min() < 0 or values.max() > 65535):
            gray = _min_max(values)
        else:
            gray = values * (255.0 / 65535.0)
        return _gray_to_rgb(gray)
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            gray = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0) * 255.0
        else:
            gray = _min_max(values)
        return _gray_to_rgb(gray)
    if mode in _ALPHA_MODES or "transparency" in image.info:
        return _composite_on_white(image.convert("RGBA"))
    if mode == "RGB":
        return image  # exif_transpose already returned a new image
    try:
        return image.convert("RGB")
    except ValueError:
        raise ImageError(f"{name}: unsupported colour mode {mode!r}") from None


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, _WHITE)
    return Image.alpha_composite(background, rgba).convert("RGB")


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    gray8 = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(gray8[:, :, None], 3, axis=2), mode="RGB")


def _min_max(values: np.ndarray) -> np.ndarray:
    """Scale the finite values onto [0, 255]; non-finite values and constant images become 0."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape)
    low, high = values[finite].min(), values[finite].max()
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros(values.shape)
    return np.where(finite, scaled, 0.0)


def _tensor_to_hwc(tensor: torch.Tensor) -> np.ndarray:
    """A ``(C, H, W)`` / ``(H, W, C)`` / ``(H, W)`` tensor (optionally batch of one) as an HWC numpy array."""
    x = tensor.detach().to("cpu")
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 3 and x.shape[0] in (1, 3, 4):
        x = x.permute(1, 2, 0)
    elif not (x.ndim == 2 or (x.ndim == 3 and x.shape[-1] in (1, 3, 4))):
        raise ImageError(f"<tensor>: shape {tuple(tensor.shape)} is not an image; expected (3, H, W) or (H, W, 3)")
    if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
        x = x.float()
    return x.contiguous().numpy()


def _array_to_image(array: np.ndarray, name: str, *, max_pixels: int | None, min_side: int) -> Image.Image:
    """Validate an ``(H, W[, C])`` array, scale it to uint8 and build an RGB image."""
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        height, width, channels = array.shape
    elif array.ndim == 2:
        (height, width), channels = array.shape, 1
    else:
        raise ImageError(f"{name}: shape {tuple(array.shape)} is not an image; expected (H, W) or (H, W, 3)")
    _check_size(name, (width, height), max_pixels=max_pixels, min_side=min_side)
    pixels = _scale_to_uint8(array, name).reshape(height, width, channels)
    if channels == 1:
        return Image.fromarray(np.repeat(pixels, 3, axis=2), mode="RGB")
    if channels == 4:
        return _composite_on_white(Image.fromarray(pixels, mode="RGBA"))
    return Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")


def _scale_to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    dtype = array.dtype
    if dtype == np.uint8:
        return array
    if dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if dtype == np.uint16:
        return np.rint(array.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(dtype, np.floating):
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageError(f"{name}: float image contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ImageError(f"{name}: float values must lie in [0, 1], got {low:.4g}..{high:.4g}")
        return np.rint(values * 255.0).astype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ImageError(
                f"{name}: {dtype} values {low}..{high} are outside 0..255 (use uint8, uint16 or float in [0, 1])"
            )
        return array.astype(np.uint8)
    raise ImageError(f"{name}: unsupported dtype {dtype} (use uint8, uint16 or float in [0, 1])")
