"""End to end in headless Chromium (Debian's, driven by Playwright) against ``zeroseg serve`` on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zeroseg.rle import decode_rle

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MAX_PIXELS = 1_000_000
MAX_UPLOAD_MB = 1
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "web-ui.png"
SEGMENT_TIMEOUT_MS = 240_000

playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_sdxl_path):
    """``zeroseg serve`` with the tiny model on a free port, started once for the module, always stopped."""
    port = _free_port()
    temp = tmp_path_factory.mktemp("server-tmp")
    env = os.environ | {"TMPDIR": str(temp), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "zeroseg", "serve", "--port", str(port), "--model", str(tiny_sdxl_path)]
    command += ["--size", "256", "--device", "cpu", "--max-pixels", str(MAX_PIXELS), "--max-upload-mb", "1"]
    log = (temp / "server.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {(temp / 'server.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("server did not start in 120 s")
        yield {"url": f"http://127.0.0.1:{port}/", "temp": temp, "log": temp / "server.log"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(server):
    with playwright_api.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    rng = np.random.default_rng(0)
    scene = np.zeros((96, 128, 3), np.uint8)
    scene[:48] = (40, 90, 200)
    scene[48:, :64] = (30, 160, 40)
    scene[48:, 64:] = (200, 60, 40)
    noisy = np.clip(scene + rng.normal(0, 8, scene.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(folder / "scene.png")
    Image.fromarray(noisy[:, ::-1].copy()).save(folder / "mirrored.png")
    Image.new("RGB", (1100, 1000), (120, 120, 120)).save(folder / "huge.png")  # 1.1 Mpx, a few KB
    (folder / "notes.png").write_text("this is not an image\n")
    return folder


def _status(page) -> str:
    return page.locator("#status").inner_text().strip()


def _wait_status(page, pattern: str) -> str:
    page.wait_for_function(
        "p => new RegExp(p).test(document.querySelector('#status').innerText)", arg=pattern, timeout=SEGMENT_TIMEOUT_MS
    )
    return _status(page)


def _upload(page, path: Path) -> None:
    page.locator("#upload input[type=file]").set_input_files(str(path))


def _segment_table(page) -> str:
    return page.locator("#segments").inner_text()


def _open(browser, url):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#upload input[type=file]", state="attached")
    return context, page


def _set_slider(page, elem_id: str, value: float) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def _passes(status: str) -> int:
    return int(re.search(r"UNet passes for this image: (\d+)", status).group(1))


def test_upload_tune_download(browser, server, images, tmp_path):
    context, page = _open(browser, server["url"])
    try:
        _set_slider(page, "diffcut-tau", 0.3)
        page.locator("#diffcut-pamr input[type=checkbox]").uncheck()
        _upload(page, images / "scene.png")
        status = _wait_status(page, r"segments · segmented scene\.png")
        assert page.locator("#overlay img").count() == 1
        first_table = _segment_table(page)
        first_count = int(status.split(" segments")[0])
        assert _passes(status) == 1

        _set_slider(page, "diffcut-tau", 0.9)
        status = _wait_status(page, r"re-segmented")
        page.wait_for_function(
            "t => document.querySelector('#segments').innerText !== t", arg=first_table, timeout=60_000
        )
        assert _passes(status) == 1  # the capture was reused: no second UNet pass
        segments_shown = int(status.split(" segments")[0])
        assert segments_shown > first_count  # a larger tau gives finer segments

        with page.expect_download() as info:
            page.locator("#download-json").click()
        document = json.loads(Path(info.value.path()).read_text())
        with page.expect_download() as info:
            page.locator("#download-png").click()
        labels = np.asarray(Image.open(info.value.path()))
        assert (document["height"], document["width"]) == labels.shape == (96, 128)
        assert len(document["segments"]) == segments_shown == len(np.unique(labels))
        for segment in document["segments"]:
            mask = decode_rle(segment["segmentation"])
            assert np.array_equal(mask, labels == segment["id"])
            assert segment["area"] == int(mask.sum())
        assert document["settings"]["tau"] == 0.9 and document["settings"]["pamr"] is False
    finally:
        context.close()


def test_sample_and_screenshot(browser, server, tmp_path):
    """The bundled sample segments; the page as it then looks is the README's screenshot (written into the docs
    only with ZEROSEG_UPDATE_SCREENSHOT=1, so a test run never changes the checkout)."""
    context, page = _open(browser, server["url"])
    try:
        _set_slider(page, "diffcut-tau", 0.6)
        page.locator("#diffcut-pamr input[type=checkbox]").uncheck()
        page.locator("#sample").click()
        _wait_status(page, r"segments · segmented sample-scene\.png")
        target = SCREENSHOT if os.environ.get("ZEROSEG_UPDATE_SCREENSHOT") == "1" else tmp_path / "web-ui.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=True)
        with Image.open(target) as shot:
            assert shot.width >= 800 and shot.height >= 600
    finally:
        context.close()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("notes.png", r"notes\.png: not an image file"),
        ("huge.png", r"huge\.png: .*(pixels|Mpx|too large|exceeds)"),
    ],
)
def test_bad_uploads_show_one_line(browser, server, images, name, expected):
    context, page = _open(browser, server["url"])
    try:
        _upload(page, images / name)
        status = _wait_status(page, "Error")
        assert re.search(expected, status), status
        assert "\n" not in status and "Traceback" not in page.content()
    finally:
        context.close()


def test_upload_over_the_size_limit_is_refused(browser, server, tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (720, 720, 3), dtype=np.uint8)  # about 1.5 MB as PNG
    path = tmp_path / "big.png"
    Image.fromarray(noise).save(path)
    assert path.stat().st_size > MAX_UPLOAD_MB * 1024 * 1024
    context, page = _open(browser, server["url"])
    try:
        _upload(page, path)
        page.wait_for_function(
            "() => /exceed|too large|limit/i.test(document.body.innerText)", timeout=SEGMENT_TIMEOUT_MS
        )
        assert "Traceback" not in page.content()
        assert "segments ·" not in _status(page)
    finally:
        context.close()


def test_sessions_see_only_their_own_results(browser, server, images):
    first, page_a = _open(browser, server["url"])
    second, page_b = _open(browser, server["url"])
    try:
        _upload(page_a, images / "scene.png")
        _upload(page_b, images / "mirrored.png")
        status_a = _wait_status(page_a, r"segmented scene\.png")
        status_b = _wait_status(page_b, r"segmented mirrored\.png")
        assert "mirrored" not in status_a and "scene" not in status_b
        with page_a.expect_download() as info:
            page_a.locator("#download-json").click()
        assert json.loads(Path(info.value.path()).read_text())["source"] == "scene.png"
        with page_b.expect_download() as info:
            page_b.locator("#download-json").click()
        assert json.loads(Path(info.value.path()).read_text())["source"] == "mirrored.png"
        sessions = [p for p in server["temp"].glob("zeroseg-web-*/session-*") if any(p.iterdir())]
        assert len(sessions) >= 2
    finally:
        first.close()
        second.close()
    # Closed pages end their sessions: their folders go.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = [p for p in server["temp"].glob("zeroseg-web-*/session-*") if any(p.iterdir())]
        if not left:
            break
        time.sleep(0.5)
    assert not left


def test_nothing_written_outside_the_temporary_folder(server):
    # The server's temporary directory holds its one root (uploads and Gradio's cache inside) and the log.
    entries = sorted(p.name for p in server["temp"].iterdir())
    roots = [name for name in entries if name.startswith("zeroseg-web-")]
    assert len(roots) == 1 and set(entries) - set(roots) <= {"server.log"}
    assert (server["temp"] / roots[0] / "gradio").is_dir()


def _pick_text(page) -> str:
    return page.locator("#pick").inner_text().strip()


def _wait_pick(page, pattern: str) -> str:
    page.wait_for_function(
        "p => new RegExp(p).test(document.querySelector('#pick').innerText)", arg=pattern, timeout=60_000
    )
    return _pick_text(page)


def _click_overlay(page, fx: float, fy: float) -> None:
    """Click the overlay at the image pixel (fx * width, fy * height), placed as Gradio draws the picture."""
    page.wait_for_function(
        "() => { const i = document.querySelector('#overlay img'); return i && i.complete && i.naturalWidth > 0; }",
        timeout=60_000,
    )
    image = page.locator("#overlay img")
    box = image.bounding_box()
    width, height = image.evaluate("e => [e.naturalWidth, e.naturalHeight]")
    scale = min(box["width"] / width, box["height"] / height, 1)
    left, top = (box["width"] - width * scale) / 2, (box["height"] - height * scale) / 2
    image.click(position={"x": left + fx * width * scale, "y": top + fy * height * scale})


def _segmented(browser, server, images):
    context, page = _open(browser, server["url"])
    _set_slider(page, "diffcut-tau", 0.5)
    page.locator("#diffcut-pamr input[type=checkbox]").uncheck()
    _upload(page, images / "scene.png")
    _wait_status(page, r"segments · segmented scene\.png")
    return context, page


def test_pick_by_click_and_by_row(browser, server, images):
    context, page = _segmented(browser, server, images)
    try:
        _click_overlay(page, 0.75, 0.75)
        text = _wait_pick(page, r"^segment \d+ · \d+ px")
        with page.expect_download() as info:
            page.locator("#download-cutout").click()
        cutout = np.asarray(Image.open(info.value.path()))
        assert cutout.shape == (96, 128, 4) and cutout[72, 96, 3] == 255
        assert int(re.search(r"· (\d+) px", text).group(1)) == int((cutout[..., 3] > 0).sum())
        last = len(page.locator("#segments [data-col='0'][data-row]").all()) - 1
        page.locator(f"#segments [data-testid='cell-{last}-0']").click()
        _wait_pick(page, rf"^segment {last} · ")
    finally:
        context.close()


def _pick_where(page, button: str) -> str:
    """Click across the overlay until the picked segment allows ``button`` (split or merge)."""
    for fx, fy in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75), (0.5, 0.5), (0.1, 0.9), (0.9, 0.1)]:
        _click_overlay(page, fx, fy)
        _wait_pick(page, r"^segment \d+ · ")
        page.wait_for_timeout(1000)  # a pick of the segment already shown leaves the text as it is
        if page.locator(f"#{button}").is_enabled():
            return _pick_text(page)
    raise AssertionError(f"no segment could be {button}")


def test_split_then_merge(browser, server, images):
    context, page = _segmented(browser, server, images)
    try:
        count = int(_status(page).split(" segments")[0])
        _pick_where(page, "split")
        page.locator("#split").click()
        status = _wait_status(page, r"split of segment")
        assert _passes(status) == 1 and int(status.split(" segments")[0]) >= count
        with page.expect_download() as info:
            page.locator("#download-json").click()
        edits = json.loads(Path(info.value.path()).read_text())["settings"]["edits"]
        assert [edit["op"] for edit in edits] == ["split"]
        split_count = int(status.split(" segments")[0])
        _pick_where(page, "merge")
        page.locator("#merge").click()
        status = _wait_status(page, r"merge of segment")
        assert int(status.split(" segments")[0]) <= split_count
        with page.expect_download() as info:
            page.locator("#download-json").click()
        edits = json.loads(Path(info.value.path()).read_text())["settings"]["edits"]
        assert [edit["op"] for edit in edits] == ["split", "merge"]
        page.locator("#reset-edits").click()
        _wait_status(page, r"edits undone")
    finally:
        context.close()


def test_image_size_change_is_one_more_pass(browser, server, images):
    context, page = _segmented(browser, server, images)
    try:
        assert _passes(_status(page)) == 1
        label = page.locator("#diffcut-image-size").inner_text()
        assert "Image size (new UNet pass)" in label
        box = page.locator("#diffcut-image-size input[type=number]")
        assert box.input_value() == "256"  # the server's --size
        box.fill("128")
        box.press("Enter")
        status = _wait_status(page, r"captured again \(image size 128\)")
        assert _passes(status) == 2  # exactly one more UNet pass, no new upload
        assert page.locator("#overlay img").count() == 1
        with page.expect_download() as info:
            page.locator("#download-json").click()
        document = json.loads(Path(info.value.path()).read_text())
        assert document["settings"]["image_size"] == 128 and (document["height"], document["width"]) == (96, 128)
        _set_slider(page, "diffcut-tau", 0.8)  # re-segments the new capture: no further pass
        assert _passes(_wait_status(page, r"re-segmented")) == 2
    finally:
        context.close()
