"""Tests for zeroseg.image: loading every kind of input, refusing bad ones with one clear line, tensors."""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zeroseg.errors import ConfigError, ImageError
from zeroseg.image import MAX_PIXELS, MIN_SIDE, center_crop, load_image, resize, to_tensor

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def noise(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def assert_one_line(exc: pytest.ExceptionInfo[ImageError], name: str, problem: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: "), message
    assert problem in message, message


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------------------ good files


def test_rgb_png_round_trips_exactly(workdir: Path) -> None:
    pixels = noise()
    Image.fromarray(pixels).save("photo.png")
    image = load_image("photo.png")
    assert image.mode == "RGB" and image.size == (64, 48)
    np.testing.assert_array_equal(np.asarray(image), pixels)
    assert load_image(Path("photo.png")).size == (64, 48)  # os.PathLike too


def test_grayscale_and_one_bit_replicate_to_three_channels(workdir: Path) -> None:
    gray = noise()[:, :, 0]
    Image.fromarray(gray, mode="L").save("gray.png")
    out = np.asarray(load_image("gray.png"))
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray)
    bits = np.zeros((16, 16), dtype=bool)
    bits[:, 8:] = True
    Image.fromarray(bits).convert("1").save("bits.png")
    out = np.asarray(load_image("bits.png"))
    assert (out[:, :8] == 0).all() and (out[:, 8:] == 255).all()


def test_rgba_is_composited_on_white(workdir: Path) -> None:
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[:, :8] = (255, 0, 0, 0)  # fully transparent red -> white
    rgba[:, 8:] = (255, 0, 0, 128)  # half-transparent red -> pink
    Image.fromarray(rgba, mode="RGBA").save("rgba.png")
    out = np.asarray(load_image("rgba.png")).astype(int)
    assert (out[:, :8] == 255).all()
    # 255 * a + 255 * (1 - a) = 255 for red; 0 * a + 255 * (1 - a) = 127 for green and blue.
    np.testing.assert_allclose(out[0, 12], [255, 127, 127], atol=1)


def test_la_is_composited_on_white(workdir: Path) -> None:
    la = np.zeros((16, 16, 2), dtype=np.uint8)
    la[:, :, 1] = 0  # black, fully transparent
    la[8:, :, 1] = 255  # black, opaque
    Image.fromarray(la, mode="LA").save("la.png")
    out = np.asarray(load_image("la.png"))
    assert (out[:8] == 255).all() and (out[8:] == 0).all()


def test_palette_without_and_with_transparency(workdir: Path) -> None:
    indices = np.zeros((16, 16), dtype=np.uint8)
    indices[:, 8:] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    image.save("palette.png")
    out = np.asarray(load_image("palette.png"))
    assert (out[:, :8] == (0, 0, 255)).all() and (out[:, 8:] == (0, 255, 0)).all()

    image.save("palette_transparent.png", transparency=0)
    out = np.asarray(load_image("palette_transparent.png"))
    assert (out[:, :8] == 255).all(), "the transparent index must become white, not its blue palette entry"
    assert (out[:, 8:] == (0, 255, 0)).all()


def test_gif_palette_transparency_and_first_frame(workdir: Path) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save("anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open("anim.gif") as gif:
        assert gif.n_frames == 2
    out = np.asarray(load_image("anim.gif")).astype(int)
    np.testing.assert_allclose(out[8, 8], [255, 0, 0], atol=2)


def test_sixteen_bit_ramp_scales_to_full_eight_bit_range(workdir: Path) -> None:
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(ramp).save("ramp16.png")
    with Image.open("ramp16.png") as raw:
        assert raw.mode == "I;16"
    out = np.asarray(load_image("ramp16.png"))[:, :, 0].astype(int)
    assert out.min() == 0 and out.max() == 255  # not clipped at 255 after the first 256 values
    np.testing.assert_array_equal(out, np.rint(ramp / 257.0).astype(int))
    assert (np.diff(out.reshape(-1)) >= 0).all()


def test_sixteen_bit_big_endian_and_int32_modes() -> None:
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    big = Image.frombytes("I;16B", (256, 256), ramp.astype(">u2").tobytes())
    np.testing.assert_array_equal(np.asarray(load_image(big))[:, :, 0], np.rint(ramp / 257.0))
    as_int32 = Image.fromarray(ramp.astype(np.int32))
    assert as_int32.mode == "I"
    np.testing.assert_array_equal(np.asarray(load_image(as_int32))[:, :, 0], np.rint(ramp / 257.0))
    signed = Image.fromarray(np.linspace(-1000, 1000, 16 * 16).reshape(16, 16).astype(np.int32))
    out = np.asarray(load_image(signed))[:, :, 0]
    assert out[0, 0] == 0 and out[-1, -1] == 255  # outside 0..65535: min-max


def test_float_mode_unit_range_and_min_max() -> None:
    unit = np.linspace(0.0, 1.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    out = np.asarray(load_image(Image.fromarray(unit, mode="F")))[:, :, 0]
    np.testing.assert_array_equal(out, np.rint(unit.astype(np.float64) * 255))
    wide = unit * 4000.0 + 10.0
    out = np.asarray(load_image(Image.fromarray(wide, mode="F")))[:, :, 0]
    assert out.min() == 0 and out.max() == 255
    np.testing.assert_allclose(out, unit * 255, atol=1)


def test_cmyk_jpeg_becomes_rgb(workdir: Path) -> None:
    cmyk = Image.new("CMYK", (32, 32), (255, 0, 0, 0))  # pure cyan ink
    cmyk.save("cmyk.jpg", quality=95)
    with Image.open("cmyk.jpg") as raw:
        assert raw.mode == "CMYK"
    out = np.asarray(load_image("cmyk.jpg")).astype(int)
    np.testing.assert_allclose(out[16, 16], [0, 255, 255], atol=6)


def test_ycbcr_image_becomes_rgb() -> None:
    pixels = noise(16, 16)
    ycbcr = Image.fromarray(pixels).convert("YCbCr")
    out = np.asarray(load_image(ycbcr)).astype(int)
    np.testing.assert_allclose(out, pixels.astype(int), atol=3)


def test_exif_orientation_six_is_applied(workdir: Path) -> None:
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 tall as stored
    stored[:10, :10] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save("rotated.jpg", exif=exif.tobytes(), quality=95)
    image = load_image("rotated.jpg")
    assert image.size == (20, 40)  # displayed: 20 wide, 40 tall
    out = np.asarray(image).astype(int)
    # Rotating 90 degrees clockwise moves the stored top-left corner to the displayed top-right.
    assert out[5, 15, 0] > 200 and out[5, 15, 1] < 60
    assert out[5, 4].sum() < 60 and out[35, 15].sum() < 60


def test_min_side_boundary(workdir: Path) -> None:
    Image.fromarray(noise(MIN_SIDE, MIN_SIDE)).save("tiny_ok.png")
    assert load_image("tiny_ok.png").size == (MIN_SIDE, MIN_SIDE)


# ------------------------------------------------------------------------------------------ bad files


def test_missing_path(workdir: Path) -> None:
    with pytest.raises(ImageError) as exc:
        load_image("z.png")
    assert_one_line(exc, "z.png", "no such file")


def test_directory(workdir: Path) -> None:
    (workdir / "folder.png").mkdir()
    with pytest.raises(ImageError) as exc:
        load_image("folder.png")
    assert_one_line(exc, "folder.png", "is a folder")


def test_zero_byte_file(workdir: Path) -> None:
    Path("x.png").write_bytes(b"")
    with pytest.raises(ImageError) as exc:
        load_image("x.png")
    assert_one_line(exc, "x.png", "empty file (0 bytes)")


def test_text_file_named_jpg(workdir: Path) -> None:
    Path("photo.jpg").write_text("this is not a picture\n" * 10)
    with pytest.raises(ImageError) as exc:
        load_image("photo.jpg")
    assert_one_line(exc, "photo.jpg", "not an image file (cannot identify format)")


@pytest.mark.parametrize(("name", "options"), [("y.jpg", {"quality": 90}), ("y.png", {})])
def test_truncated_file(workdir: Path, name: str, options: dict[str, int]) -> None:
    Image.fromarray(noise(128, 128)).save(name, **options)
    data = Path(name).read_bytes()
    Path(name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as exc:
        load_image(name)
    assert_one_line(exc, name, "truncated or corrupt image data")


@pytest.mark.skipif(IS_ROOT, reason="root can read any file")
def test_unreadable_file(workdir: Path) -> None:
    Image.fromarray(noise()).save("a.png")
    os.chmod("a.png", 0)
    try:
        with pytest.raises(ImageError) as exc:
            load_image("a.png")
        assert_one_line(exc, "a.png", "permission denied")
    finally:
        os.chmod("a.png", 0o644)


@pytest.mark.parametrize(("height", "width"), [(3, 5), (100, 7), (7, 100)])
def test_too_small(workdir: Path, height: int, width: int) -> None:
    Image.fromarray(noise(height, width)).save("a.png")
    with pytest.raises(ImageError) as exc:
        load_image("a.png")
    assert_one_line(exc, "a.png", f"image too small ({width}x{height} px; at least 8 px a side)")


def write_bomb(path: Path, width: int, height: int) -> None:
    """A tiny valid 1-bit PNG whose IHDR is then patched to claim ``width x height`` (CRC recomputed)."""
    Image.new("1", (16, 16)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def test_decompression_bomb_is_refused_quickly(workdir: Path) -> None:
    write_bomb(workdir / "big.png", 26000, 26000)
    assert (workdir / "big.png").stat().st_size < 1000
    start = time.perf_counter()
    with pytest.raises(ImageError) as exc:
        load_image("big.png")
    assert time.perf_counter() - start < 1.0
    assert_one_line(exc, "big.png", "image too large (26000x26000 = 676 Mpx, limit 179 Mpx)")
    assert "decompression bomb" in str(exc.value)
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS // 2  # PIL's global limit is left as it was


def test_max_pixels_is_overridable(workdir: Path) -> None:
    Image.fromarray(noise(40, 50)).save("a.png")
    with pytest.raises(ImageError) as exc:
        load_image("a.png", max_pixels=1999)
    assert_one_line(exc, "a.png", "image too large (50x40 = 0 Mpx")
    assert load_image("a.png", max_pixels=2000).size == (50, 40)


def test_pil_bomb_limit_is_caught_and_warning_does_not_leak(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(noise(40, 50)).save("a.png")  # 2000 px
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # PIL would warn (> 1500), not refuse (< 3000)
    assert load_image("a.png").size == (50, 40)  # pytest turns leaked warnings into errors
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # PIL refuses (> 1000): our own limit decides
    assert load_image("a.png").size == (50, 40)
    assert Image.MAX_IMAGE_PIXELS == 500
    with pytest.raises(ImageError) as exc:
        load_image("a.png", max_pixels=1000)
    assert_one_line(exc, "a.png", "image too large (50x40")


def test_bad_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="`max_pixels`"):
        load_image(noise(), max_pixels=0)
    with pytest.raises(ConfigError, match="`min_side`"):
        load_image(noise(), min_side=0)


# ------------------------------------------------------------------------------------------ arrays, tensors


@pytest.mark.parametrize(
    ("array", "expected_red"),
    [
        (np.full((16, 16, 3), 200, dtype=np.uint8), 200),
        (np.full((16, 16), 200, dtype=np.uint8), 200),
        (np.full((16, 16, 1), 200, dtype=np.uint8), 200),
        (np.full((16, 16, 3), 0.5, dtype=np.float32), 128),
        (np.full((16, 16, 3), 0.5, dtype=np.float64), 128),
        (np.full((16, 16, 3), 65535, dtype=np.uint16), 255),
        (np.full((16, 16, 3), 257 * 7, dtype=np.uint16), 7),
        (np.ones((16, 16), dtype=bool), 255),
        (np.full((16, 16, 3), 9, dtype=np.int64), 9),
    ],
)
def test_numpy_arrays(array: np.ndarray, expected_red: int) -> None:
    image = load_image(array)
    assert image.mode == "RGB" and image.size == (16, 16)
    assert (np.asarray(image) == expected_red).all()


def test_numpy_rgba_array_is_composited_on_white() -> None:
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    out = np.asarray(load_image(rgba))
    assert (out == 255).all()


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.zeros((3, 16, 16), dtype=np.uint8), "looks channel-first"),
        (np.zeros((16, 16, 5), dtype=np.uint8), "is not an image"),
        (np.zeros((2, 16, 16, 3), dtype=np.uint8), "is not an image"),
        (np.full((16, 16, 3), 1.5), "float values must lie in [0, 1]"),
        (np.full((16, 16, 3), np.nan), "NaN"),
        (np.full((16, 16, 3), 300, dtype=np.int32), "outside 0..255"),
        (np.zeros((4, 16, 3), dtype=np.uint8), "image too small (16x4 px"),
        (np.zeros((16, 16, 3), dtype=np.complex64), "unsupported dtype"),
    ],
)
def test_bad_numpy_arrays(array: np.ndarray, problem: str) -> None:
    with pytest.raises(ImageError) as exc:
        load_image(array)
    assert_one_line(exc, "<array>", problem)


def test_tensors_channel_first_and_last() -> None:
    pixels = noise(16, 24)
    expected = pixels
    chw_float = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    for tensor in (
        chw_float,
        chw_float.unsqueeze(0),
        torch.from_numpy(pixels),  # (H, W, 3) uint8
        torch.from_numpy(pixels).permute(2, 0, 1),  # (3, H, W) uint8
        chw_float.permute(1, 2, 0),  # (H, W, 3) float
    ):
        np.testing.assert_array_equal(np.asarray(load_image(tensor)), expected)


def test_bad_tensor() -> None:
    with pytest.raises(ImageError) as exc:
        load_image(torch.zeros(5, 16, 16))
    assert_one_line(exc, "<tensor>", "is not an image")
    with pytest.raises(ImageError) as exc:
        load_image(torch.full((3, 16, 16), 2.0))
    assert_one_line(exc, "<tensor>", "float values must lie in [0, 1]")


def test_unsupported_source_type() -> None:
    with pytest.raises(ImageError, match="cannot read an image from this type"):
        load_image(12345)  # type: ignore[arg-type]


def test_to_tensor_values_and_layout() -> None:
    pixels = noise(10, 12)
    x = to_tensor(Image.fromarray(pixels))
    assert x.shape == (3, 10, 12) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 3, 4], torch.tensor(pixels[3, 4], dtype=torch.float32) / 255)
    gray = to_tensor(Image.fromarray(pixels[:, :, 0], mode="L"))
    assert gray.shape == (3, 10, 12)
    torch.testing.assert_close(gray[0], gray[2])


# ------------------------------------------------------------------------------------------ resize, crop


def test_resize_halving_without_antialias_averages_pixel_pairs() -> None:
    x = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4).repeat(3, 1, 1)
    y = resize(x, (2, 2))
    # Half-pixel centres: output pixel i samples input coordinate 2i + 0.5, the mean of pixels 2i and 2i+1.
    expected = torch.tensor([[2.5, 4.5], [10.5, 12.5]])
    torch.testing.assert_close(y[0], expected)
    assert y.shape == (3, 2, 2)


def test_resize_upsampling_hand_values_and_batch() -> None:
    x = torch.tensor([[0.0, 1.0]]).expand(3, 1, 2).unsqueeze(0).repeat(2, 1, 1, 1)  # (2, 3, 1, 2)
    y = resize(x, (1, 4))
    # Output x maps to input (x + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped at the borders.
    torch.testing.assert_close(y[1, 2, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert y.shape == (2, 3, 1, 4)


def test_resize_antialias_is_opt_in() -> None:
    stripes = torch.zeros(3, 8, 8)
    stripes[:, :, ::2] = 1.0
    plain = resize(stripes, (2, 2))
    smooth = resize(stripes, (2, 2), antialias=True)
    assert not torch.allclose(plain, smooth)
    torch.testing.assert_close(smooth, torch.full_like(smooth, 0.5), atol=0.05, rtol=0)


def test_resize_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="`size`"):
        resize(torch.zeros(3, 4, 4), (0, 2))
    with pytest.raises(ConfigError, match="`x`"):
        resize(torch.zeros(4, 4), (2, 2))
    with pytest.raises(ConfigError, match="floating-point"):
        resize(torch.zeros(3, 4, 4, dtype=torch.uint8), (2, 2))


def test_center_crop_offsets() -> None:
    x = torch.arange(5 * 8).reshape(1, 5, 8)
    crop = center_crop(x)  # side 5, offsets ((5-5)//2, (8-5)//2) = (0, 1)
    torch.testing.assert_close(crop, x[:, :, 1:6])
    crop = center_crop(x, 4)  # DiffCut evaluation: min(H, W) - 1; offsets (0, 2)
    torch.testing.assert_close(crop, x[:, 0:4, 2:6])
    tall = torch.arange(7 * 4).reshape(7, 4)
    torch.testing.assert_close(center_crop(tall), tall[1:5])  # offsets ((7-4)//2, 0) = (1, 0)
    batch = torch.zeros(2, 3, 10, 6)
    assert center_crop(batch).shape == (2, 3, 6, 6)


def test_center_crop_rejects_bad_side() -> None:
    with pytest.raises(ConfigError, match="`side`"):
        center_crop(torch.zeros(3, 4, 6), 5)
    with pytest.raises(ConfigError, match="`side`"):
        center_crop(torch.zeros(3, 4, 6), 0)


def test_permission_error_message_without_chmod(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same mapping as the chmod test, runnable as root: opening the file raises PermissionError."""
    import zeroseg.image as image_module

    Image.fromarray(noise()).save("a.png")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(image_module, "open", refuse, raising=False)
    with pytest.raises(ImageError) as exc:
        load_image("a.png")
    assert_one_line(exc, "a.png", "permission denied")
