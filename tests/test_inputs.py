"""Tests for zeroseg.inputs: expanding INPUT arguments and naming outputs without collisions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zeroseg.inputs import expand_inputs, input_roots, is_image_name, output_stem, output_stems

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small tree of image, non-image and hidden files under ``tmp_path`` (the working folder)."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "photos/b.jpg",
        "photos/a.PNG",
        "photos/notes.txt",
        "photos/.hidden.jpg",
        "photos/._a.jpg",
        "photos/2024/a.jpg",
        "photos/2024/c.webp",
        "photos/.cache/d.jpg",
        "other/a.jpg",
        "readme.md",
    ):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def names(paths: list[Path]) -> list[str]:
    return [p.as_posix() for p in paths]


def test_is_image_name() -> None:
    assert is_image_name("a.JPG") and is_image_name("x/y.tiff") and is_image_name("p.pgm")
    assert not is_image_name("a.txt") and not is_image_name("jpg")


def test_folder_gives_image_files_directly_inside(tree: Path) -> None:
    files, problems = expand_inputs(["photos"])
    assert names(files) == ["photos/a.PNG", "photos/b.jpg"]  # sorted; no .txt, hidden or subfolder files
    assert problems == []


def test_folder_recursive(tree: Path) -> None:
    files, problems = expand_inputs(["photos"], recursive=True)
    assert names(files) == ["photos/2024/a.jpg", "photos/2024/c.webp", "photos/a.PNG", "photos/b.jpg"]
    assert problems == []


def test_explicit_file_is_taken_whatever_its_extension(tree: Path) -> None:
    files, problems = expand_inputs(["readme.md", "photos/b.jpg"])
    assert names(files) == ["photos/b.jpg", "readme.md"]
    assert problems == []


def test_globs(tree: Path) -> None:
    files, problems = expand_inputs(["photos/*"])
    assert names(files) == ["photos/a.PNG", "photos/b.jpg"]  # notes.txt and the folder 2024 are left out
    files, _ = expand_inputs(["photos/**/*.jpg"], recursive=True)
    assert names(files) == ["photos/2024/a.jpg", "photos/b.jpg"]
    files, _ = expand_inputs(["*/a.*"])
    assert names(files) == ["other/a.jpg", "photos/a.PNG"]
    assert problems == []


def test_patterns_that_match_nothing_become_problem_lines(tree: Path) -> None:
    (tree / "empty").mkdir()
    files, problems = expand_inputs(["missing.jpg", "photos/*.gif", "photos/*.txt", "empty", "photos/b.jpg"])
    assert names(files) == ["photos/b.jpg"]
    assert problems == [
        "missing.jpg: no such file",
        "photos/*.gif: no files match",
        "photos/*.txt: matches 1 file(s), none with an image extension",
        "empty: folder has no image files directly inside (use recursive to look in subfolders)",
    ]
    assert all("\n" not in line for line in problems)


def test_broken_symlink(tree: Path) -> None:
    os.symlink(tree / "gone.jpg", tree / "link.jpg")
    files, problems = expand_inputs(["link.jpg"])
    assert files == [] and problems == ["link.jpg: broken symbolic link"]


def test_duplicates_are_kept_once(tree: Path) -> None:
    files, problems = expand_inputs(
        ["photos/b.jpg", "./photos/b.jpg", str(tree / "photos" / "b.jpg"), "photos", "photos/*.jpg"]
    )
    assert names(files) == ["photos/a.PNG", "photos/b.jpg"]
    assert problems == []


def test_result_does_not_depend_on_argument_order(tree: Path) -> None:
    forward, _ = expand_inputs(["other", "photos", "readme.md"], recursive=True)
    backward, _ = expand_inputs(["readme.md", "photos", "other"], recursive=True)
    assert forward == backward


@pytest.mark.skipif(IS_ROOT, reason="root can list any folder")
def test_unlistable_folder(tree: Path) -> None:
    locked = tree / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        files, problems = expand_inputs(["locked"])
        assert files == [] and len(problems) == 1 and "permission denied" in problems[0]
    finally:
        locked.chmod(0o700)


# ------------------------------------------------------------------------------------------ output names


def test_output_stem() -> None:
    assert output_stem("photos/2024/a.jpg", "photos") == "2024/a"
    assert output_stem("photos/2024/a.jpg") == "a"
    assert output_stem("elsewhere/a.jpg", "photos") == "a"
    assert output_stem("archive.tar.png") == "archive.tar"


def test_input_roots(tree: Path) -> None:
    roots = input_roots(["photos", "photos/b.jpg", "other/**/*.jpg", "*.jpg", "missing"])
    assert roots == [Path("photos"), Path("other")]


def test_stems_are_plain_names_without_collisions() -> None:
    paths = [Path("x/a.jpg"), Path("y/b.png")]
    assert output_stems(paths) == ["a", "b"]


def test_recursive_folder_keeps_relative_subfolders(tree: Path) -> None:
    files, _ = expand_inputs(["photos"], recursive=True)
    stems = output_stems(files, roots=input_roots(["photos"]))
    assert stems == ["2024/a", "2024/c", "a", "b"]


def test_same_name_in_different_folders_gets_parent_folders() -> None:
    paths = [Path("x/a.jpg"), Path("y/a.jpg"), Path("b.jpg")]
    assert output_stems(paths) == ["x/a", "y/a", "b"]
    deep = [Path("one/sub/a.jpg"), Path("two/sub/a.jpg")]
    assert output_stems(deep) == ["one/sub/a", "two/sub/a"]


def test_same_stem_different_extension_gets_the_extension() -> None:
    paths = [Path("x/a.jpg"), Path("x/a.png")]
    assert output_stems(paths) == ["a_jpg", "a_png"]
    mixed = [Path("x/a.jpg"), Path("x/a.png"), Path("y/a.jpg")]
    assert output_stems(mixed) == ["x/a_jpg", "x/a_png", "y/a"]


def test_collisions_are_case_insensitive_and_root_relative(tree: Path) -> None:
    files, _ = expand_inputs(["photos", "other"], recursive=True)
    stems = output_stems(files, roots=input_roots(["photos", "other"]))
    by_path = dict(zip(names(files), stems, strict=True))
    # photos/a.PNG and other/a.jpg both want "a" (case-insensitive); photos/2024/a.jpg is already "2024/a".
    assert by_path == {
        "other/a.jpg": "other/a",
        "photos/2024/a.jpg": "2024/a",
        "photos/2024/c.webp": "2024/c",
        "photos/a.PNG": "photos/a",
        "photos/b.jpg": "b",
    }
    assert len({s.casefold() for s in stems}) == len(stems)


def test_stems_are_unique_relative_and_order_independent() -> None:
    paths = [Path("a.jpg"), Path("A.png"), Path("a_jpg.jpg"), Path("q/a.jpg"), Path("r/q/a.jpg")]
    stems = output_stems(paths)
    assert len({s.casefold() for s in stems}) == len(stems)
    assert all(not s.startswith("/") and ".." not in Path(s).parts for s in stems)
    reordered = output_stems(paths[::-1])[::-1]
    assert reordered == stems


def test_nested_roots_use_the_outermost(tree: Path) -> None:
    files, _ = expand_inputs(["photos", "photos/2024"], recursive=True)
    stems = output_stems(files, roots=input_roots(["photos", "photos/2024"]))
    assert stems == ["2024/a", "2024/c", "a", "b"]
