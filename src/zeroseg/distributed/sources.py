"""The images of a distributed run: ``INPUT...`` arguments expanded into ``(image id, location)`` items.

An argument is a local file, folder or glob (as in the local mode, :func:`zeroseg.inputs.expand_inputs`), a
URI of any file system pyarrow supports (``s3://bucket/photos/``, ``gs://...``, ``hdfs://...``, ``file:///...``:
a folder is listed, a pattern is matched below its fixed prefix), or a manifest:

- a text file (``.txt``, ``.lst``): one path or URI a line; blank lines and ``#`` comments skipped;
- a table (``.parquet``, ``.csv``, ``.tsv``) with a path column (``path``, ``uri``, ``url``, ``file``,
  ``filename``, ``image`` or ``image_path``; or the one named by ``path_column``), and optionally an
  ``image_id`` column that names each image's outputs.

Relative entries of a manifest are read relative to the manifest's own folder, so a manifest can travel with
its images. Image ids (the output names, without extension) follow the local mode's :func:`output_stems`
rules, so the same inputs give the same output names with either engine.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from zeroseg.errors import ConfigError
from zeroseg.inputs import expand_inputs, input_roots, is_image_name, output_stems

LIST_SUFFIXES = (".txt", ".lst")
TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")
PATH_COLUMNS = ("path", "uri", "url", "file", "filename", "image", "image_path")
ID_COLUMN = "image_id"
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class ImageLocation:
    """Where one image of the collection is: ``image_id`` names its outputs, ``location`` is a local path or a URI
    (decoded later by a read task; :class:`zeroseg.pipeline.ImageItem` holds an image already at hand)."""

    image_id: str
    location: str


def is_uri(text: str) -> bool:
    """True for ``scheme://...`` locations (``s3://``, ``gs://``, ``file://``, ...)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isidentifier() and len(scheme) > 1


def is_manifest(location: str) -> bool:
    """True when the location names a text list or a table of images rather than an image."""
    return PurePosixPath(location.split("?", 1)[0]).suffix.lower() in LIST_SUFFIXES + TABLE_SUFFIXES


def expand_sources(
    arguments: Sequence[str], *, recursive: bool = False, path_column: str | None = None
) -> tuple[list[ImageLocation], list[str]]:
    """Expand ``INPUT...`` into image items (de-duplicated, deterministic order) and one-line problems.

    Args:
        arguments: files, folders, globs, URIs and manifests.
        recursive: descend into subfolders of folders (local or remote) and let ``**`` span folders.
        path_column: the manifest column holding paths (default: the first of :data:`PATH_COLUMNS` present).

    Returns:
        ``(items, problems)``: the images, and one line per argument that gave none (``"x.csv: no column ..."``).
        Items whose ids come from a manifest's ``image_id`` column keep them; the others get
        :func:`output_stems` names, computed over all of them together so that names never collide.
    """
    named: list[ImageLocation] = []
    unnamed: list[str] = []
    roots: list[str] = []
    problems: list[str] = []
    local_patterns: list[str] = []
    for argument in arguments:
        argument = str(argument)
        if is_manifest(argument) and (is_uri(argument) or Path(argument).is_file()):
            try:
                entries = read_manifest(argument, path_column=path_column)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            if not entries:
                problems.append(f"{argument}: manifest lists no images")
            for location, image_id in entries:
                if image_id is None:
                    unnamed.append(location)
                elif (problem := _id_problem(image_id)) is not None:
                    problems.append(f"{argument}: image_id {image_id!r} {problem}")
                else:
                    named.append(ImageLocation(image_id.replace("\\", "/"), location))
        elif is_uri(argument):
            found, root, problem = _expand_uri(argument, recursive=recursive)
            unnamed.extend(found)
            roots.extend([root] if root else [])
            problems.extend([problem] if problem else [])
        else:
            local_patterns.append(argument)
    if local_patterns:
        files, local_problems = expand_inputs(local_patterns, recursive=recursive)
        problems.extend(local_problems)
        unnamed.extend(str(f) for f in files)
        matched = [p for p in local_patterns if Path(p).is_dir() or _GLOB_CHARS.intersection(p)]
        roots.extend(str(r) for r in input_roots(matched))
    return _name_items(named, unnamed, roots), problems


def read_manifest(location: str, *, path_column: str | None = None) -> list[tuple[str, str | None]]:
    """The ``(location, image_id or None)`` entries of a text list or a Parquet/CSV table.

    Raises:
        ConfigError: the manifest cannot be read, or has no path column (the message names the columns).
    """
    suffix = PurePosixPath(location).suffix.lower()
    base = _parent(location)
    if suffix in LIST_SUFFIXES:
        text = _read_bytes(location).decode("utf-8-sig", errors="replace")
        lines = (line.strip() for line in text.splitlines())
        return [(_resolve(line, base), None) for line in lines if line and not line.startswith("#")]
    table = _read_table(location, suffix)
    column = path_column or next((c for c in PATH_COLUMNS if c in table.column_names), None)
    if column is None or column not in table.column_names:
        wanted = f"column {path_column!r}" if path_column else "path column (" + ", ".join(PATH_COLUMNS) + ")"
        raise ConfigError(f"{location}: manifest has no {wanted}; its columns: {', '.join(table.column_names)}")
    paths = table.column(column).to_pylist()
    ids = table.column(ID_COLUMN).to_pylist() if ID_COLUMN in table.column_names else [None] * len(paths)
    entries = []
    for path, image_id in zip(paths, ids, strict=True):
        if path is None or not str(path).strip():
            continue
        entries.append((_resolve(str(path).strip(), base), None if image_id is None else str(image_id)))
    return entries


def open_input_file(location: str):  # noqa: ANN201 - a pyarrow input stream
    """Open a local path or URI for reading through pyarrow's file systems."""
    filesystem, path = resolve_filesystem(location)
    return filesystem.open_input_file(path)


def resolve_filesystem(location: str):  # noqa: ANN201 - (pyarrow FileSystem, path)
    """``(filesystem, path)`` for a local path or URI (local paths are made absolute)."""
    from pyarrow import fs

    if is_uri(location):
        try:
            return fs.FileSystem.from_uri(location)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{location}: unsupported or unreachable file system ({_short(exc)})") from None
    return fs.LocalFileSystem(), os.path.abspath(location)


def _read_bytes(location: str) -> bytes:
    try:
        with open_input_file(location) as stream:
            return stream.read()
    except OSError as exc:
        raise ConfigError(f"{location}: cannot read the manifest ({_short(exc)})") from None


def _read_table(location: str, suffix: str):  # noqa: ANN202 - a pyarrow Table
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    try:
        with open_input_file(location) as stream:
            if suffix == ".parquet":
                return pq.read_table(stream)
            options = pv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
            return pv.read_csv(stream, parse_options=options)
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise ConfigError(f"{location}: cannot read the manifest ({_short(exc)})") from None


def _expand_uri(uri: str, *, recursive: bool) -> tuple[list[str], str | None, str | None]:
    """``(image URIs, naming root, problem)`` for a remote file, folder or pattern."""
    from pyarrow import fs

    pattern = bool(_GLOB_CHARS.intersection(uri))
    prefix = uri.rstrip("/")
    if pattern:
        parts = uri.split("/")
        fixed = next(i for i, part in enumerate(parts) if _GLOB_CHARS.intersection(part))
        prefix = "/".join(parts[:fixed])
    try:
        filesystem, path = resolve_filesystem(prefix)
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.File and not pattern:
            return [uri], None, None
        if info.type != fs.FileType.Directory:
            return [], None, f"{uri}: no such file or folder"
        deep = recursive or (pattern and uri.count("/") > prefix.count("/") + 1) or "**" in uri
        listing = filesystem.get_file_info(fs.FileSelector(path, recursive=bool(deep)))
    except OSError as exc:
        return [], None, f"{uri}: cannot list ({_short(exc)})"
    found = []
    for entry in listing:
        relative = entry.path[len(path.rstrip("/")) + 1 :]
        if entry.type != fs.FileType.File or any(part.startswith(".") for part in relative.split("/")):
            continue
        location = f"{prefix}/{relative}"
        if is_image_name(entry.base_name) and (not pattern or fnmatch.fnmatchcase(location, uri)):
            found.append(location)
    if not found:
        return [], None, f"{uri}: no image files {'match' if pattern else 'in the folder'}"
    return sorted(found), prefix, None


def _name_items(named: list[ImageLocation], unnamed: list[str], roots: list[str]) -> list[ImageLocation]:
    """Give every unnamed location an :func:`output_stems` id; drop repeated locations (first one kept)."""
    seen: set[str] = set()
    unique_named = []
    for item in named:
        key = _identity(item.location)
        if key not in seen:
            seen.add(key)
            unique_named.append(item)
    locations = []
    for location in unnamed:
        key = _identity(location)
        if key not in seen:
            seen.add(key)
            locations.append(location)
    locations.sort(key=lambda loc: PurePosixPath(_naming_path(loc)).parts)
    stems = output_stems([Path(_naming_path(loc)) for loc in locations], roots=[_naming_path(r) for r in roots])
    taken = {item.image_id.casefold() for item in unique_named}
    items = list(unique_named)
    for location, stem in zip(locations, stems, strict=True):
        if stem.casefold() in taken:
            stem = _free_name(stem, taken)
        taken.add(stem.casefold())
        items.append(ImageLocation(stem, location))
    return items


def _naming_path(location: str) -> str:
    """A local absolute path standing for a location in output naming: ``s3://b/x.jpg`` -> ``/s3/b/x.jpg``."""
    if is_uri(location):
        scheme, _, rest = location.partition("://")
        return "/" + "/".join(part for part in (scheme, *rest.split("/")) if part)
    return os.path.abspath(location)


def _identity(location: str) -> str:
    """What makes two spellings the same image: the real path of local files (``file://`` too), else the URI."""
    if location.startswith("file://"):
        location = location[len("file://") :]
    return location if is_uri(location) else os.path.normcase(os.path.realpath(location))


def _free_name(stem: str, taken: set[str]) -> str:
    number = 2
    while f"{stem}-{number}".casefold() in taken:
        number += 1
    return f"{stem}-{number}"


def _id_problem(image_id: str) -> str | None:
    """Why a manifest's image id cannot name an output (it must be relative, without ``..``), or None."""
    parts = image_id.replace("\\", "/").split("/")
    if image_id.startswith(("/", "\\")) or any(part in ("", ".", "..") for part in parts):
        return "cannot name an output (it must be a relative name without '.' or '..' parts)"
    return None


def _parent(location: str) -> str:
    if is_uri(location):
        return location.rsplit("/", 1)[0]
    return str(Path(location).resolve().parent)


def _resolve(entry: str, base: str) -> str:
    if is_uri(entry) or os.path.isabs(entry):
        return entry
    if is_uri(base):
        return f"{base}/{entry}"
    return os.path.join(base, entry)


def _short(exc: BaseException) -> str:
    from zeroseg.errors import one_line

    return one_line(exc, limit=200)
