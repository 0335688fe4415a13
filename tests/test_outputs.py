"""Tests for zeroseg.outputs: atomic writes, label-map PNGs, palettes, overlays and boundary lines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zeroseg.errors import ConfigError, ZeroSegError
from zeroseg.outputs import (
    OutputError,
    OutputExistsError,
    atomic_write,
    check_output,
    ensure_folder,
    find_boundaries,
    make_overlay,
    output_exists,
    palette,
    save_label_map,
    save_overlay,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def quadrants(height: int = 20, width: int = 30) -> np.ndarray:
    labels = np.zeros((height, width), dtype=np.int64)
    labels[: height // 2, width // 2 :] = 1
    labels[height // 2 :, : width // 2] = 2
    labels[height // 2 :, width // 2 :] = 3
    return labels


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# ------------------------------------------------------------------------------------------ atomic_write


def test_atomic_write_moves_the_finished_file_into_place(tmp_path: Path) -> None:
    target = tmp_path / "out" / "sub" / "x.txt"  # missing folders are created
    with atomic_write(target) as temp:
        assert temp.parent == target.parent and temp != target
        assert temp.suffix == ".txt"
        temp.write_text("done")
        assert not target.exists()  # nothing at the final name until the block succeeds
    assert target.read_text() == "done"
    assert leftovers(target.parent) == []


def test_atomic_write_failure_leaves_no_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as temp:
        temp.write_text("half writ")
        raise RuntimeError("boom")
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_atomic_write_failure_keeps_the_previous_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    target.write_text("previous complete content")
    with pytest.raises(RuntimeError), atomic_write(target, overwrite=True) as temp:
        temp.write_text("partial")
        raise RuntimeError("interrupted")
    assert target.read_text() == "previous complete content"
    assert leftovers(tmp_path) == []


def test_atomic_write_overwrite_rules(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(OutputExistsError) as exc, atomic_write(target, overwrite=False):
        pass
    assert str(exc.value) == f"{target}: exists (use --overwrite to replace it)"
    assert isinstance(exc.value, FileExistsError) and isinstance(exc.value, ZeroSegError)
    with atomic_write(target, overwrite=True) as temp:
        temp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_write_does_not_clobber_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    with pytest.raises(OutputExistsError), atomic_write(target, overwrite=False) as temp:
        temp.write_text("mine")
        target.write_text("someone else's")
    assert target.read_text() == "someone else's"
    assert leftovers(tmp_path) == []


def test_atomic_write_block_that_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="nothing was written"), atomic_write(tmp_path / "x.txt"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_parent_that_is_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    target = blocker / "out" / "x.png"
    with pytest.raises(OutputError) as exc, atomic_write(target):
        pass
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{blocker / 'out'}: cannot create the output folder")
    assert f"{blocker} is a file, not a folder" in message
    with pytest.raises(OutputError) as exc:
        save_label_map(quadrants(), blocker / "x.png")
    assert str(exc.value) == f"{blocker}: cannot be used as the output folder (it is a file, not a folder)"


@pytest.mark.skipif(IS_ROOT, reason="root can write anywhere")
def test_unwritable_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            ensure_folder(locked)
        with pytest.raises(OutputError, match="permission denied"):
            ensure_folder(locked / "sub")
        with pytest.raises(OutputError):
            save_label_map(quadrants(), locked / "x.png")
    finally:
        locked.chmod(0o700)


def test_output_checks(tmp_path: Path) -> None:
    target = tmp_path / "x.png"
    assert not output_exists(target)
    check_output(target)
    target.write_bytes(b"1")
    assert output_exists(target)
    with pytest.raises(OutputExistsError):
        check_output(target)
    check_output(target, overwrite=True)
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path, overwrite=True)


# ------------------------------------------------------------------------------------------ palette


def test_palette_is_fixed_deterministic_and_well_separated() -> None:
    colours = palette(256)
    assert colours.shape == (256, 3) and colours.dtype == np.uint8
    np.testing.assert_array_equal(colours, palette(256))
    np.testing.assert_array_equal(palette(10), colours[:10])
    assert len({tuple(c) for c in colours}) == 256
    first = colours[:20].astype(float)
    distances = np.linalg.norm(first[:, None] - first[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() > 60  # the first twenty are far apart (RGB units)
    assert colours[0].tolist() not in ([0, 0, 0], [255, 255, 255])  # label 0 gets a real colour
    assert palette(0).shape == (0, 3)


def test_palette_beyond_256_extends_deterministically() -> None:
    colours = palette(1000)
    assert colours.shape == (1000, 3)
    np.testing.assert_array_equal(colours[:256], palette(256))
    np.testing.assert_array_equal(colours, palette(1000))
    with pytest.raises(ConfigError, match="`n`"):
        palette(-1)


# ------------------------------------------------------------------------------------------ label maps


def test_label_map_palette_png_round_trips(tmp_path: Path) -> None:
    labels = np.random.default_rng(0).integers(0, 256, (17, 23))
    labels[0, 0], labels[-1, -1] = 0, 255
    path = save_label_map(labels, tmp_path / "labels.png")
    with Image.open(path) as written:
        assert written.mode == "P"
        np.testing.assert_array_equal(np.asarray(written), labels)
        table = np.array(written.getpalette()[: 256 * 3]).reshape(256, 3)
    np.testing.assert_array_equal(table, palette(256))


def test_label_map_sixteen_bit_round_trips(tmp_path: Path) -> None:
    labels = quadrants() * 300
    labels[0, 0] = 65535
    path = save_label_map(labels, tmp_path / "labels.png")
    with Image.open(path) as written:
        assert written.mode.startswith("I")
        np.testing.assert_array_equal(np.asarray(written).astype(np.int64), labels)


def test_label_map_accepts_int32_and_overwrite_flag(tmp_path: Path) -> None:
    path = tmp_path / "labels.png"
    save_label_map(quadrants().astype(np.int32), path)
    with pytest.raises(OutputExistsError):
        save_label_map(quadrants(), path)
    save_label_map(quadrants()[::-1], path, overwrite=True)
    with Image.open(path) as written:
        np.testing.assert_array_equal(np.asarray(written), quadrants()[::-1])
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("labels", "name", "match"),
    [
        (np.zeros((4, 4, 1), dtype=int), "a.png", "2-D"),
        (np.full((4, 4), -1), "a.png", "0..65535"),
        (np.full((4, 4), 70000), "a.png", "0..65535"),
        (np.zeros((4, 4), dtype=float), "a.png", "integers"),
        (np.zeros((4, 4), dtype=int), "a.jpg", ".png"),
    ],
)
def test_label_map_rejects_bad_input(tmp_path: Path, labels: np.ndarray, name: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        save_label_map(labels, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ boundaries


def test_boundaries_are_one_pixel_wide_between_two_halves() -> None:
    labels = np.zeros((6, 8), dtype=int)
    labels[:, 4:] = 1
    edge = find_boundaries(labels)
    expected = np.zeros_like(edge)
    expected[:, 3] = True  # the smaller label's side of the interface
    np.testing.assert_array_equal(edge, expected)
    np.testing.assert_array_equal(find_boundaries(np.zeros((5, 5), dtype=int)), np.zeros((5, 5), bool))


def test_boundaries_match_half_of_skimage_thick() -> None:
    segmentation = pytest.importorskip("skimage.segmentation")
    labels = np.random.default_rng(1).integers(0, 4, (12, 15))
    labels = np.kron(labels, np.ones((3, 3), dtype=int))  # blocks, so segments have interiors
    edge = find_boundaries(labels)
    thick = segmentation.find_boundaries(labels, mode="thick", connectivity=1)
    assert not (edge & ~thick).any()  # only pixels skimage also calls boundary
    # ...and every pair of 4-neighbours with different labels has one of its two pixels marked.
    for axis in (0, 1):
        a = np.moveaxis(labels, axis, 0)
        e = np.moveaxis(edge, axis, 0)
        differ = a[:-1] != a[1:]
        assert (e[:-1] | e[1:])[differ].all()


def test_thin_segment_with_larger_label_keeps_its_colour() -> None:
    labels = np.zeros((7, 7), dtype=int)
    labels[:, 3] = 5
    edge = find_boundaries(labels)
    assert edge[:, 2].all() and edge[:, 4].all() and not edge[:, 3].any()


# ------------------------------------------------------------------------------------------ overlays


def test_overlay_blends_palette_colours() -> None:
    image = Image.new("RGB", (30, 20), (100, 50, 200))
    labels = quadrants()
    out = make_overlay(image, labels, alpha=0.5, boundaries=False)
    assert out.size == image.size and out.mode == "RGB"
    pixels = np.asarray(out).astype(float)
    colours = palette(4).astype(float)
    np.testing.assert_allclose(pixels[0, 0], np.rint(0.5 * np.array([100, 50, 200]) + 0.5 * colours[0]))
    np.testing.assert_allclose(pixels[-1, -1], np.rint(0.5 * np.array([100, 50, 200]) + 0.5 * colours[3]))
    solid = np.asarray(make_overlay(image, labels, alpha=1.0, boundaries=False))
    np.testing.assert_array_equal(solid, palette(4)[labels])
    clear = np.asarray(make_overlay(image, labels, alpha=0.0, boundaries=False))
    np.testing.assert_array_equal(clear, np.asarray(image))


def test_overlay_draws_contrasting_boundaries_where_labels_change() -> None:
    labels = quadrants()
    for background in ((255, 255, 255), (0, 0, 0)):
        image = Image.new("RGB", (30, 20), background)
        plain = np.asarray(make_overlay(image, labels, alpha=0.0, boundaries=False))
        drawn = np.asarray(make_overlay(image, labels, alpha=0.0))
        changed = (plain != drawn).any(axis=2)
        np.testing.assert_array_equal(changed, find_boundaries(labels))
        line = 0 if background == (255, 255, 255) else 255  # black on white, white on black
        assert (drawn[changed] == line).all()


def test_overlay_accepts_other_modes_and_rejects_mismatches() -> None:
    gray = Image.new("L", (30, 20), 128)
    assert make_overlay(gray, quadrants()).mode == "RGB"
    with pytest.raises(ConfigError, match="does not match"):
        make_overlay(gray, quadrants(30, 20))
    with pytest.raises(ConfigError, match="`alpha`"):
        make_overlay(gray, quadrants(), alpha=1.5)


@pytest.mark.parametrize(("name", "mode_format"), [("o.jpg", "JPEG"), ("o.JPEG", "JPEG"), ("o.png", "PNG")])
def test_save_overlay_format_by_extension(tmp_path: Path, name: str, mode_format: str) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    path = save_overlay(image, quadrants(), tmp_path / "deep" / name)
    with Image.open(path) as written:
        assert written.format == mode_format and written.size == (30, 20)
    with pytest.raises(OutputExistsError):
        save_overlay(image, quadrants(), path)
    save_overlay(image, quadrants(), path, overwrite=True, quality=50)
    assert leftovers(path.parent) == []


def test_save_overlay_rejects_bad_arguments(tmp_path: Path) -> None:
    image = Image.new("RGB", (30, 20))
    with pytest.raises(ConfigError, match=r"\.jpg, \.jpeg or \.png"):
        save_overlay(image, quadrants(), tmp_path / "o.gif")
    with pytest.raises(ConfigError, match="`quality`"):
        save_overlay(image, quadrants(), tmp_path / "o.jpg", quality=0)
    assert list(tmp_path.iterdir()) == []


def test_folder_permission_error_without_chmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping of the chmod test, runnable as root: creating the folder raises PermissionError."""

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(OutputError) as exc:
        save_label_map(quadrants(), tmp_path / "new" / "x.png")
    assert str(exc.value) == f"{tmp_path / 'new'}: cannot create the output folder (permission denied)"
