"""Expanding the command line's ``INPUT...`` arguments into image files, and naming their outputs.

An argument is a file (always taken, whatever its extension: :func:`zeroseg.image.load_image` will say
clearly if it is not an image), a folder (the image files inside it, by extension) or a glob pattern. The
result is de-duplicated (by real path) and sorted, so a run over the same arguments always processes the same
files in the same order; arguments that match nothing become one-line problems instead of errors, so that
one typo does not stop a batch.

Output names come from :func:`output_stems`, which keeps outputs of same-named inputs apart; see there.
"""

from __future__ import annotations

import glob
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
"""Extensions (matched case-insensitively) picked up from folders and glob patterns."""

_GLOB_CHARS = frozenset("*?[")


def is_image_name(path: str | os.PathLike[str]) -> bool:
    """True when the file name has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


@dataclass
class Inputs:
    """What the INPUT arguments expanded to.

    Attributes:
        files: the image files, sorted and de-duplicated.
        problems: one line per argument that matched nothing (``"missing.jpg: no such file"``).
        not_images: files inside given folders (or matched by globs) skipped because their extension is not an
            image's, for the run's summary.
    """

    files: list[Path]
    problems: list[str]
    not_images: list[str] = field(default_factory=list)


def expand_inputs(patterns: Sequence[str], *, recursive: bool = False) -> tuple[list[Path], list[str]]:
    """``(files, problems)`` of :func:`find_inputs`."""
    found = find_inputs(patterns, recursive=recursive)
    return found.files, found.problems


def find_inputs(patterns: Sequence[str], *, recursive: bool = False) -> Inputs:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of image files.

    - A file is taken as given, whatever its extension.
    - A folder gives the image files directly inside it (by :data:`IMAGE_EXTENSIONS`), or below it at any
      depth with ``recursive=True``. Hidden files and folders (name starting with ``.``, e.g. the macOS
      ``._x.jpg`` resource forks) are skipped.
    - A pattern with ``*``, ``?`` or ``[`` is globbed (``**`` spans folders when ``recursive``); the matching
      files with an image extension are taken, matching folders are not descended into.

    Files reached twice (the same real path) are kept once, under the first spelling met. The list is sorted
    by path components (stable, independent of argument order and file-system listing order).

    Args:
        patterns: the command line's INPUT arguments.
        recursive: descend into subfolders of folder arguments and let ``**`` match across folders.

    Returns:
        The image paths, one line per argument that matched nothing, and the skipped non-image files.
    """
    files: list[Path] = []
    problems: list[str] = []
    not_images: list[str] = []
    for pattern in patterns:
        found, problem, others = _expand_one(str(pattern), recursive=recursive)
        files.extend(found)
        not_images.extend(str(p) for p in others)
        if problem is not None:
            problems.append(problem)
    unique: dict[str, Path] = {}
    for path in files:
        unique.setdefault(os.path.normcase(os.path.realpath(path)), path)
    return Inputs(sorted(unique.values(), key=lambda p: p.parts), problems, sorted(dict.fromkeys(not_images)))


def _expand_one(pattern: str, *, recursive: bool) -> tuple[list[Path], str | None, list[Path]]:
    path = Path(pattern)
    if path.is_file():
        return [path], None, []
    if path.is_dir():
        return _list_folder(path, recursive=recursive)
    if _GLOB_CHARS.intersection(pattern):
        matches = [Path(m) for m in glob.glob(pattern, recursive=recursive)]
        candidates = [m for m in matches if m.is_file()]
        images = [m for m in candidates if is_image_name(m)]
        others = sorted((m for m in candidates if not is_image_name(m)), key=lambda p: p.parts)
        if images:
            return sorted(images, key=lambda p: p.parts), None, others
        if candidates:
            return [], f"{pattern}: matches {len(candidates)} file(s), none with an image extension", []
        return [], f"{pattern}: no files match", []
    if path.is_symlink():
        return [], f"{pattern}: broken symbolic link", []
    if path.exists():
        return [], f"{pattern}: not a regular file or folder", []
    return [], f"{pattern}: no such file", []


def _list_folder(folder: Path, *, recursive: bool) -> tuple[list[Path], str | None, list[Path]]:
    problems: list[str] = []

    def on_error(exc: OSError) -> None:
        problems.append(f"{exc.filename or folder}: cannot list the folder ({(exc.strerror or str(exc)).lower()})")

    images: list[Path] = []
    others: list[Path] = []
    for root, dirs, names in os.walk(folder, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        base = Path(root)
        visible = [base / n for n in names if not n.startswith(".")]
        images.extend(p for p in visible if is_image_name(p))
        others.extend(p for p in visible if not is_image_name(p))
    images = [p for p in images if p.is_file()]
    others = sorted((p for p in others if p.is_file()), key=lambda p: p.parts)
    if problems:
        logger.warning("%s", "; ".join(problems))
    if images:
        return sorted(images, key=lambda p: p.parts), None, others
    if problems:
        return [], problems[0], []
    where = "in or below it" if recursive else "directly inside (use recursive to look in subfolders)"
    return [], f"{folder}: folder has no image files {where}", []


def input_roots(patterns: Iterable[str]) -> list[Path]:
    """The folders that input arguments name: folder arguments, and the fixed leading part of glob patterns.

    ``photos`` gives ``photos``; ``photos/2024/**/*.jpg`` gives ``photos/2024``. Pass the result to
    :func:`output_stems` so that files found below a folder keep their relative subfolders.
    """
    roots: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            roots.append(path)
        elif _GLOB_CHARS.intersection(pattern):
            fixed = _leading_fixed_parts(path)
            if fixed:
                roots.append(Path(*fixed))
    return roots


def _leading_fixed_parts(path: Path) -> list[str]:
    parts: list[str] = []
    for part in path.parts[:-1]:
        if _GLOB_CHARS.intersection(part):
            break
        parts.append(part)
    return parts


def output_stem(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """The output name of one input, without extension: its path below ``root``, else its file stem.

    ``output_stem("photos/2024/a.jpg", "photos") == "2024/a"`` (POSIX separators); with no root, or a path
    not below ``root``, it is just ``"a"``.
    """
    path = Path(path)
    if root is not None:
        try:
            relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
        except ValueError:
            relative = None
        if relative is not None and relative.parts:
            return str(PurePosixPath(*relative.parts).with_suffix(""))
    return path.stem


def output_stems(paths: Sequence[Path], *, roots: Sequence[str | os.PathLike[str]] = ()) -> list[str]:
    """Unique, deterministic output names (without extension) for ``paths``, in the same order.

    Rules, applied in turn; names are compared case-insensitively (as macOS and Windows file systems do):

    1. A file below one of ``roots`` (see :func:`input_roots`) is named by its path relative to the
       outermost such root, keeping subfolders: ``photos/2024/a.jpg`` under ``photos`` -> ``2024/a``. Any
       other file is named by its stem: ``a``.
    2. Files whose names still collide get their parent folder names prepended, one level at a time, until
       the names differ: ``x/a.jpg`` and ``y/a.jpg`` -> ``x/a`` and ``y/a``.
    3. Files that still collide (same folder, same stem: ``a.jpg`` and ``a.png``) get their extension
       appended: ``a_jpg`` and ``a_png``.
    4. Anything left (only contrived cases) gets ``-2``, ``-3``, ... in sorted path order.

    Names never contain ``..`` and are relative, so ``out_dir / name`` always stays inside ``out_dir``.
    """
    root_paths = sorted({Path(os.path.abspath(r)) for r in roots}, key=lambda r: len(r.parts))
    absolute = [Path(os.path.abspath(p)) for p in paths]
    names: list[str] = []
    for path in absolute:
        root = next((r for r in root_paths if path.is_relative_to(r) and path != r), None)
        names.append(output_stem(path, root))

    # Rule 2: prepend parent folder names, one level per round, to groups that span several folders.
    for _ in range(max((len(p.parts) for p in absolute), default=0)):
        changed = False
        for group in _collisions(names):
            if len({absolute[i].parent for i in group}) < 2:
                continue  # same folder: parents cannot tell them apart (rule 3 will)
            for i in group:
                parents = [part for part in absolute[i].parent.parts if part != absolute[i].anchor]
                depth = len(PurePosixPath(names[i]).parts) - 1
                available = parents[: len(parents) - depth]
                if available:
                    names[i] = f"{available[-1]}/{names[i]}"
                    changed = True
        if not changed:
            break

    # Rule 3: the extension.
    for group in _collisions(names):
        for i in group:
            suffix = absolute[i].suffix.lstrip(".")
            if suffix:
                names[i] = f"{names[i]}_{suffix}"

    # Rule 4: numbers, in sorted path order, avoiding every name already taken.
    taken = {n.casefold() for n in names}
    for group in _collisions(names):
        ordered = sorted(group, key=lambda i: absolute[i].parts)
        for number, i in enumerate(ordered[1:], start=2):
            candidate = f"{names[i]}-{number}"
            while candidate.casefold() in taken:
                number += 1
                candidate = f"{names[i]}-{number}"
            taken.add(candidate.casefold())
            names[i] = candidate
    return names


def _collisions(names: Sequence[str]) -> list[list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, name in enumerate(names):
        groups[name.casefold()].append(index)
    return [group for group in groups.values() if len(group) > 1]
