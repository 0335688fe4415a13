"""Writing whole files atomically into an output location that is a local folder or a URI.

Local folders go through :func:`zeroseg.outputs.atomic_write` (temporary name, then ``os.replace``). On other
file systems the file is written under a hidden temporary name in the same folder and then moved onto its
name; object stores (S3, GCS) publish an object only once it is complete, so readers never see half a file.
Names starting with ``.`` or ``_`` are skipped by Parquet readers, so temporaries never count as data.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zeroseg.errors import ZeroSegError, one_line

from .sources import is_uri, resolve_filesystem


class StorageError(ZeroSegError, OSError):
    """An output cannot be written to the output location (names it and the problem)."""


def join(location: str, name: str) -> str:
    """``location/name`` for a folder path or a URI."""
    return f"{location.rstrip('/')}/{name}" if is_uri(location) else str(Path(location) / name)


def write_file(location: str, name: str, write: Callable[[Any], None]) -> str:
    """Write ``location/name`` atomically; ``write(stream)`` fills a binary output stream.

    Returns:
        The written file's location.

    Raises:
        StorageError: the folder cannot be created or the file cannot be written.
    """
    target = join(location, name)
    if not is_uri(location):
        from zeroseg.outputs import atomic_write

        with atomic_write(target) as temp, open(temp, "wb") as stream:
            write(stream)
        return target
    filesystem, folder = resolve_filesystem(location)
    folder = folder.rstrip("/")
    final = f"{folder}/{name}"
    parent = final.rsplit("/", 1)[0]
    temp = f"{parent}/.{final.rsplit('/', 1)[1]}.{secrets.token_hex(4)}.tmp"
    try:
        filesystem.create_dir(parent, recursive=True)
        with filesystem.open_output_stream(temp) as stream:
            write(stream)
        filesystem.move(temp, final)
    except OSError as exc:
        _remove_quietly(filesystem, temp)
        raise StorageError(f"{target}: cannot write the file ({one_line(exc, limit=200)})") from None
    return target


def write_bytes(location: str, name: str, data: bytes) -> str:
    """Write ``data`` to ``location/name`` atomically (see :func:`write_file`)."""
    return write_file(location, name, lambda stream: stream.write(data))


def list_files(location: str, *, suffix: str) -> list[str]:
    """Paths (in the location's file system) of the visible files below ``location`` ending in ``suffix``."""
    from pyarrow import fs

    filesystem, folder = resolve_filesystem(location)
    info = filesystem.get_file_info(folder)
    if info.type != fs.FileType.Directory:
        return []
    found = []
    for entry in filesystem.get_file_info(fs.FileSelector(folder, recursive=True)):
        relative = entry.path[len(folder.rstrip("/")) + 1 :]
        hidden = any(part.startswith((".", "_")) for part in relative.split("/"))
        if entry.type == fs.FileType.File and not hidden and entry.base_name.endswith(suffix):
            found.append(entry.path)
    return sorted(found)


def _remove_quietly(filesystem: Any, path: str) -> None:
    try:
        filesystem.delete_file(path)
    except OSError:
        pass
