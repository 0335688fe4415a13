"""``zeroseg segment`` end to end on tiny models, including every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from zeroseg.cli.app import app
from zeroseg.registry import config_class, list_methods

runner = CliRunner()
FAST_DIFFSEG = ["--method", "diffseg", "--size", "64"]
FAST_DIFFCUT = ["--method", "diffcut", "--size", "64", "--pamr-iters", "2", "--pamr-dilations", "1,2"]


def _photo(height: int = 48, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(height * width)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _bomb(path: Path) -> None:
    """A tiny PNG whose header claims 30000 x 30000 pixels."""
    header = (30000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0"))
        + _png_chunk(b"IEND", b"")
    )


def test_folder_end_to_end_writes_label_maps_overlays_and_settings(tiny_sd_path, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(_photo(48, 64)).save(inputs / "a.png")
    Image.fromarray(_photo(40, 40)).save(inputs / "b.jpg")
    out = tmp_path / "out"
    result = _run("segment", str(inputs), "--model", str(tiny_sd_path), "--out", str(out), *FAST_DIFFSEG)
    assert result.exit_code == 0, result.output
    assert "2 segmented" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "a.png",
        "a_overlay.jpg",
        "b.png",
        "b_overlay.jpg",
        "zeroseg-settings.json",
    ]
    label_map = Image.open(out / "a.png")
    assert label_map.mode == "P" and label_map.size == (64, 48)
    assert Image.open(out / "b_overlay.jpg").size == (40, 40)
    settings = json.loads((out / "zeroseg-settings.json").read_text())
    assert settings["method"] == "diffseg" and settings["image_size"] == 64 and "zeroseg" in settings


def test_existing_outputs_are_kept_unless_overwrite(tiny_sd_path, tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "a.png"), "--model", str(tiny_sd_path), "--out", str(out), *FAST_DIFFSEG]
    assert _run(*args).exit_code == 0
    (out / "a.png").write_bytes(b"keep me")
    again = _run(*args)
    assert again.exit_code == 0 and "1 skipped" in again.output
    assert (out / "a.png").read_bytes() == b"keep me"
    assert _run(*args, "--overwrite").exit_code == 0
    assert Image.open(out / "a.png").size == (64, 48)


def test_diffcut_through_the_command_line(tiny_sdxl_path, tmp_path):
    Image.fromarray(_photo(50, 70)).save(tmp_path / "x.png")
    out = tmp_path / "out"
    result = _run(
        "segment",
        str(tmp_path / "x.png"),
        "--model",
        str(tiny_sdxl_path),
        "--out",
        str(out),
        "--tau",
        "0.9",
        *FAST_DIFFCUT,
    )
    assert result.exit_code == 0, result.output
    assert Image.open(out / "x.png").size == (70, 50)
    assert json.loads((out / "zeroseg-settings.json").read_text())["tau"] == 0.9


def _bad_inputs(folder: Path) -> dict[str, str]:
    """File name -> words the error line must contain."""
    good = Image.fromarray(_photo())
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image")
    buffer = folder / "whole.png"
    good.save(buffer)
    (folder / "truncated.png").write_bytes(buffer.read_bytes()[:200])
    buffer.unlink()
    Image.fromarray(_photo(5, 40)).save(folder / "tiny.png")
    _bomb(folder / "bomb.png")
    return {
        "empty.png": "empty",
        "text.jpg": "not an image",
        "truncated.png": "truncated",
        "tiny.png": "too small",
        "bomb.png": "too large",
    }


def test_bad_files_get_one_line_each_and_the_batch_goes_on(tiny_sd_path, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    expected = _bad_inputs(inputs)
    Image.fromarray(_photo()).save(inputs / "good.png")
    out = tmp_path / "out"
    result = _run(
        "segment",
        str(inputs),
        str(tmp_path / "missing.jpg"),
        "--model",
        str(tiny_sd_path),
        "--out",
        str(out),
        *FAST_DIFFSEG,
    )
    assert result.exit_code == 1
    lines = result.output.splitlines()
    for name, words in {**expected, "missing.jpg": "no such file"}.items():
        hits = [line for line in lines if name in line and line.startswith("error:")]
        assert len(hits) == 1 and words in hits[0], (name, result.output)
    assert "1 segmented" in result.output and "6 failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["good.png", "good_overlay.jpg", "zeroseg-settings.json"]


@pytest.mark.parametrize("kind", ["L", "RGBA", "P", "I;16", "CMYK", "exif"])
def test_unusual_image_modes_are_converted(kind, tiny_sd_path, tmp_path):
    rgb = Image.fromarray(_photo(40, 56))
    path = tmp_path / ("in.jpg" if kind in ("CMYK", "exif") else "in.png")
    if kind == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise on display
        rgb.save(path, exif=exif)
    elif kind == "I;16":
        Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257).save(path)
    else:
        rgb.convert(kind).save(path)
    out = tmp_path / "out"
    result = _run("segment", str(path), "--model", str(tiny_sd_path), "--out", str(out), *FAST_DIFFSEG)
    assert result.exit_code == 0, result.output
    expected = (40, 56) if kind == "exif" else (56, 40)  # PIL sizes are (width, height)
    assert Image.open(out / "in.png").size == expected


def test_missing_model_is_one_line_and_exit_1(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    result = _run(
        "segment", str(tmp_path / "a.png"), "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "out")
    )
    assert result.exit_code == 1
    assert result.output.count("error:") == 1 and "no-model" in result.output
    assert "Traceback" not in result.output


def test_unwritable_output_folder_is_one_line(tiny_sd_path, tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _run("segment", str(tmp_path / "a.png"), "--model", str(tiny_sd_path), "--out", str(blocker / "out"))
    assert result.exit_code == 1 and "error:" in result.output and "file" in result.output
    assert "Traceback" not in result.output


def test_options_of_the_other_method_are_refused(tmp_path):
    result = _run("segment", str(tmp_path), "--method", "diffseg", "--tau", "0.4")
    assert result.exit_code == 1 and "--tau" in result.output and "diffcut" in result.output


def test_every_config_field_is_an_option_that_parses_to_its_field_type():
    import dataclasses

    from zeroseg.options import build_config, method_options

    samples = {"bool": "true", "int": "128", "float": "0.7", "str": "some/model", "ints": "1,2,4"}
    for method in list_methods():
        declared = {f.name for f in dataclasses.fields(config_class(method))}
        options = {o.name: o for o in method_options(method)}
        assert set(options) == declared, method
        for name, option in options.items():
            if name in ("exact_reference", "iterations") or option.kind == "floats":
                continue  # checked together below: they constrain each other
            value = samples[option.kind] if name != "timestep" else "10"
            config = build_config(method, {name: value})
            kinds = {"bool": bool, "int": int, "float": float, "str": str, "ints": tuple}
            expected = type(option.default) if option.default is not None else kinds[option.kind]  # per model
            assert type(getattr(config, name)) is expected, (method, name)
    config = build_config("diffseg", {"kl_threshold": "1.1,0.9,0.9", "iterations": "3", "exact_reference": True})
    assert config.kl_threshold == (1.1, 0.9, 0.9) and config.iterations == 3 and config.exact_reference is True


def test_help_shows_every_option_with_the_default_of_its_field():
    from zeroseg.options import format_default, method_options

    result = runner.invoke(app, ["segment", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for option in ("--method", "--out", "--save", "--overwrite", "--device", "--batch-size"):
        assert option in text, option
    for method in list_methods():
        for option in method_options(method):
            assert option.cli in text, option.cli
            default = format_default(option)
            assert f"Default: {default}" in text or f"{default} ({method})" in text, (method, option.name, default)


def test_help_does_not_import_torch():
    code = "import sys; from zeroseg.cli.app import app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_version_and_models():
    assert _run("--version").output.startswith("zeroseg ")
    assert "segmind/SSD-1B" in _run("models").output


def test_setting_errors_name_the_flag(tmp_path):
    result = _run("segment", str(tmp_path), "--size", "100")
    assert result.exit_code == 1 and "`--size` must be a multiple of 16" in result.output
