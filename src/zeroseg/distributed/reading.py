"""Reading and decoding images in their own tasks, apart from the segmenting workers.

:func:`decode_batch` turns a batch of ``(image_id, location)`` rows into rows of decoded RGB pixels, so the
workers that hold a UNet never wait on a file system or a JPEG decoder. A file that cannot be read keeps its
row, with an empty ``pixels`` and its one-line ``error``; the worker passes it on as a failure.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

from zeroseg.errors import ImageError, ZeroSegError, one_line

IMAGE_ID = "image_id"
LOCATION = "location"
PIXELS = "pixels"
HEIGHT = "height"
WIDTH = "width"
READ_S = "read_s"
ERROR = "error"


def decode_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Read and decode every image of a batch into ``(H, W, 3)`` uint8 RGB pixels, stored as raw bytes.

    Args:
        batch: columns ``image_id`` and ``location`` (a local path or a URI).

    Returns:
        The same rows with ``pixels`` (bytes, empty on failure), ``height``, ``width``, ``read_s`` (seconds
        spent reading and decoding) and ``error`` (one line naming the file, empty on success).
    """
    import zeroseg.image  # noqa: F401 - imported before the clock starts: a new process pays for it once

    ids = [str(value) for value in batch[IMAGE_ID]]
    locations = [str(value) for value in batch[LOCATION]]
    pixels, heights, widths, seconds, errors = [], [], [], [], []
    for location in locations:
        start = time.perf_counter()
        try:
            array = np.asarray(read_image(location), dtype=np.uint8)
            pixels.append(array.tobytes())
            heights.append(array.shape[0])
            widths.append(array.shape[1])
            errors.append("")
        except ImageError as exc:
            pixels.append(b"")
            heights.append(0)
            widths.append(0)
            errors.append(one_line(exc))
        seconds.append(time.perf_counter() - start)
    return {
        IMAGE_ID: np.array(ids, dtype=object),
        LOCATION: np.array(locations, dtype=object),
        PIXELS: _object_array(pixels),
        HEIGHT: np.array(heights, dtype=np.int32),
        WIDTH: np.array(widths, dtype=np.int32),
        READ_S: np.array(seconds, dtype=np.float64),
        ERROR: np.array(errors, dtype=object),
    }


def read_image(location: str) -> Any:
    """Load one image as 8-bit RGB: local files exactly as the local mode does, URIs through pyarrow.

    Raises:
        ImageError: the file cannot be read or is not a usable image (one line naming it).
    """
    from zeroseg.image import load_image

    from .sources import is_uri, open_input_file

    if not is_uri(location):
        return load_image(location)
    try:
        with open_input_file(location) as stream:
            data = stream.read()
    except FileNotFoundError:
        raise ImageError(f"{location}: no such file") from None
    except ZeroSegError as exc:  # the file system itself is unsupported or unreachable
        raise ImageError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - file systems raise their own error types
        raise ImageError(f"{location}: cannot read the file ({one_line(exc, limit=200)})") from None
    return decode_image_bytes(data, location)


def decode_image_bytes(data: bytes, name: str) -> Any:
    """Decode an encoded image held in memory into 8-bit RGB (the conversions of :func:`load_image`).

    Raises:
        ImageError: empty, unidentifiable, too large or corrupt data (one line naming ``name``).
    """
    from PIL import Image, UnidentifiedImageError

    from zeroseg.image import load_image

    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (cannot identify format)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: image too large; refusing a possible decompression bomb") from None
    except (OSError, EOFError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: truncated or corrupt image data ({one_line(exc)})") from None
    image.filename = name  # load_image names the image after it in its errors
    return load_image(image)


def pixels_of(row_pixels: bytes, height: int, width: int) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 view of a decoded row's bytes (no copy)."""
    return np.frombuffer(row_pixels, dtype=np.uint8).reshape(int(height), int(width), 3)


def _object_array(values: list[bytes]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
