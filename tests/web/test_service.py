"""The page's behaviour without a browser: uploads, re-segmentation from the kept capture, downloads, sessions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from zeroseg.rle import decode_rle
from zeroseg.web.service import Limits, SegmentService
from zeroseg.web.sessions import SessionStore


@pytest.fixture(scope="module")
def service(tiny_sdxl_path):
    return SegmentService(
        models=[str(tiny_sdxl_path)],
        capture_settings={"image_size": 128},
        limits=Limits(max_upload_bytes=200_000, max_pixels=250_000),
    )


@pytest.fixture
def store(tmp_path):
    store = SessionStore(tmp_path / "root")
    yield store
    store.close_all()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    rng = np.random.default_rng(0)
    array = np.zeros((48, 64, 3), np.uint8)
    array[:24] = (40, 90, 200)
    array[24:, 32:] = (200, 60, 40)
    path = tmp_path_factory.mktemp("images") / "scene.png"
    Image.fromarray(np.clip(array + rng.normal(0, 8, array.shape), 0, 255).astype(np.uint8)).save(path)
    return path


NO_PAMR = {"tau": 0.3, "alpha": 10.0, "pamr": False}


def test_upload_then_settings_reuse_the_capture(service, store, scene):
    session = store.get("visitor")
    model = service.models[0]
    view = service.segment_upload(session, scene, method="diffcut", model=model, settings=NO_PAMR)
    assert not view.error and view.image.shape == (48, 64, 3) and view.label_map.shape == (48, 64, 3)
    passes = service.backbone_passes
    assert session.base.capture is not None and session.base.tree is not None
    finer = service.resegment(session, settings=NO_PAMR | {"tau": 0.9})
    assert not finer.error and finer.num_segments >= view.num_segments
    assert service.backbone_passes == passes  # no second UNet pass
    # The downloads are the writers' files, in the session's own folder.
    assert set(finer.downloads) == {"png", "overlay", "json", "tree"}
    assert all(path.parent == session.folder for path in finer.downloads.values())
    document = json.loads(finer.downloads["json"].read_text())
    labels = np.asarray(Image.open(finer.downloads["png"]))
    for segment in document["segments"]:
        assert np.array_equal(decode_rle(segment["segmentation"]), labels == segment["id"])
    assert len(finer.rows) == finer.num_segments == len(document["segments"])


def test_equal_to_a_direct_pipeline_run(service, store, scene, tiny_sdxl_path):
    from zeroseg.pipeline import build_pipeline

    session = store.get("visitor")
    service.segment_upload(session, scene, method="diffcut", model=service.models[0], settings=NO_PAMR)
    view = service.resegment(session, settings=NO_PAMR | {"tau": 0.7})
    direct = build_pipeline("diffcut", model=str(tiny_sdxl_path), image_size=128, tau=0.7, pamr=False)(str(scene))[0]
    assert np.array_equal(np.asarray(Image.open(view.downloads["png"])), direct.labels)


def test_diffseg_settings(service, store, scene):
    session = store.get("visitor")
    view = service.segment_upload(
        session, scene, method="diffseg", model=service.models[0], settings={"kl_threshold": 1.1, "anchors": 8}
    )
    assert not view.error and "tree" not in view.downloads
    again = service.resegment(session, settings={"kl_threshold": 0.2, "anchors": 8, "refine": True})
    assert not again.error and session.backbone_passes == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"plain text, no image", "notes.png: not an image file"),
        (None, "notes.png: "),  # truncated PNG
    ],
)
def test_bad_files_give_one_line_naming_the_upload(service, store, scene, tmp_path, content, message):
    path = tmp_path / "upload-1234" / "notes.png"
    path.parent.mkdir()
    path.write_bytes(content if content is not None else scene.read_bytes()[:200])
    session = store.get("visitor")
    view = service.segment_upload(session, path, method="diffcut", model=service.models[0], settings=NO_PAMR)
    assert view.error and view.status.startswith(message) and "\n" not in view.status
    assert "upload-1234" not in view.status  # the temporary path is not shown, the file's name is
    assert session.base is None


def test_limits(service, store, tmp_path):
    session = store.get("visitor")
    wide = tmp_path / "wide.png"
    Image.new("RGB", (600, 500), (9, 9, 9)).save(wide)  # 300 000 px > 250 000
    view = service.segment_upload(session, wide, method="diffcut", model=None, settings={})
    assert view.error and view.status.startswith("wide.png:") and "pixels" in view.status
    heavy = tmp_path / "heavy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(heavy)
    view = service.segment_upload(session, heavy, method="diffcut", model=None, settings={})
    assert view.error and "upload limit" in view.status
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (4, 4)).save(tiny)
    assert service.segment_upload(session, tiny, method="diffcut", model=None, settings={}).error


def test_bad_setting_is_one_line_and_keeps_the_result(service, store, scene):
    session = store.get("visitor")
    service.segment_upload(session, scene, method="diffcut", model=service.models[0], settings=NO_PAMR)
    view = service.resegment(session, settings={"tau": -1.0})
    assert view.error and "--tau" in view.status and session.base is not None
    assert service.resegment(session, settings={"image_size": 64}).error  # capture settings are fixed


def test_sessions_are_separate_and_cleaned(service, store, scene, tmp_path):
    first, second = store.get("a"), store.get("b")
    service.segment_upload(first, scene, method="diffcut", model=service.models[0], settings=NO_PAMR)
    assert second.base is None and first.folder != second.folder
    assert first.memory_bytes() > 0 and second.memory_bytes() == 0
    folder = first.folder
    store.close("a")
    assert not folder.exists() and len(store) == 1
    root = store.root
    store.close_all()
    assert not root.exists()


def test_build_demo_without_launching(service, store):
    gr = pytest.importorskip("gradio")
    from zeroseg.web import build_demo

    demo = build_demo(service, store=store)
    assert isinstance(demo, gr.Blocks)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    expected = {"upload", "sample", "method", "status", "overlay", "label-map", "segments", "download-json"}
    expected |= {"pick", "split", "merge", "reset-edits", "download-cutout", "diffcut-image-size"}
    expected |= {"diffcut-timestep", "diffseg-image-size", "diffseg-timestep"}
    assert expected <= ids
    assert {"diffcut-tau", "diffcut-alpha", "diffcut-pamr", "diffseg-kl-threshold", "diffseg-anchors"} <= ids
    assert (store.root / "sample-scene.png").is_file()


def test_missing_gradio_names_the_extra(monkeypatch, service, store):
    import sys

    from zeroseg.errors import MissingDependencyError
    from zeroseg.web import build_demo

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now fails as if it were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'zeroseg\[web\]'"):
        build_demo(service, store=store)


def test_cli_help_imports_neither_gradio_nor_torch():
    import subprocess
    import sys

    code = "import sys; from zeroseg.cli.app import app; print('gradio' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_recapture_costs_one_pass_per_change(service, store, scene):
    session = store.get("visitor")
    service.segment_upload(session, scene, method="diffcut", model=service.models[0], settings=NO_PAMR)
    first = session.base
    total = service.backbone_passes
    assert session.backbone_passes == 1 and session.capture == {}
    view = service.recapture(session, capture={"image_size": 64}, settings=NO_PAMR)
    assert not view.error and view.status.endswith("UNet passes for this image: 2")
    assert service.backbone_passes == total + 1 and session.capture == {"image_size": 64}
    assert view.label_map.shape == (48, 64, 3)  # the label map keeps the image's size ...
    old, new = first.capture["features"], session.base.capture["features"]
    assert new.shape[-1] < old.shape[-1]  # ... the capture is of the smaller side
    assert session.base.settings["image_size"] == 64 and session.base.tree is not first.tree
    # The same settings again only re-segment; a timestep change is one more pass; back to the default is too.
    same = service.recapture(session, capture={"image_size": "64"}, settings=NO_PAMR | {"tau": 0.8})
    assert not same.error and session.backbone_passes == 2 and service.backbone_passes == total + 1
    service.recapture(session, capture={"image_size": 64, "timestep": 20}, settings=NO_PAMR)
    assert session.backbone_passes == 3 and session.base.settings["timestep"] == 20
    back = service.recapture(session, capture={"image_size": 128.0, "timestep": None}, settings=NO_PAMR)
    assert not back.error and session.capture == {} and session.backbone_passes == 4
    assert service.backbone_passes == total + 3
    # Edits and re-segmentations use the new capture's pipeline; a new upload starts at one pass again.
    assert not service.resegment(session, settings=NO_PAMR | {"tau": 0.6}).error
    service.segment_upload(session, scene, method="diffcut", model=service.models[0], settings=NO_PAMR)
    assert session.backbone_passes == 1 and session.capture == {}


def test_recapture_errors_keep_the_result(service, store, scene):
    session = store.get("visitor")
    assert service.recapture(session, capture={"image_size": 64}, settings={}).status == "upload an image first"
    service.segment_upload(
        session, scene, method="diffseg", model=service.models[0], settings={}, capture={"image_size": 64}
    )
    assert session.capture == {"image_size": 64} and session.base.settings["image_size"] == 64
    view = service.recapture(session, capture={"image_size": -5}, settings={})
    assert view.error and "--size" in view.status and "\n" not in view.status
    assert session.base is not None and session.backbone_passes == 1
    assert service.recapture(session, capture={"seed": 3}, settings={}).error  # not offered on the page


PAMR_FEW = {"tau": 0.5, "alpha": 10.0, "pamr": True, "pamr_iters": 2}


def _recorder():
    calls = []
    return calls, lambda fraction, description: calls.append((fraction, description))


def test_progress_shows_the_tree_build_and_pamr_iterations(service, store, scene):
    session = store.get("visitor")
    calls, progress = _recorder()
    view = service.segment_upload(
        session, scene, method="diffcut", model=service.models[0], settings=PAMR_FEW, progress=progress
    )
    assert not view.error
    texts = [text for _, text in calls]
    segments = session.base.tree.num_segments(session.base.tree.max_tau)
    assert f"NCut tree: {segments} segments" in texts  # the last report of the build always gets through
    assert texts[-1] == "PAMR iteration 2/2"
    fractions = [fraction for fraction, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] < 1.0
    calls.clear()
    service.resegment(session, settings=PAMR_FEW | {"tau": 0.7}, progress=progress)
    assert [text for _, text in calls][-1] == "PAMR iteration 2/2"  # the kept tree fits: no build reported
    assert not any(text.startswith("NCut tree") for _, text in calls)


def test_step_reporter_drops_close_reports_but_not_the_last():
    from zeroseg.web.service import step_reporter

    calls, progress = _recorder()
    report = step_reporter(progress, interval=3600.0)
    for done in range(1, 11):
        report("PAMR iteration", done, 10)
    assert calls == [(0.5 + 0.045, "PAMR iteration 1/10"), (0.95, "PAMR iteration 10/10")]


def _same_cut_taus(tree) -> tuple[float, float]:
    """Two taus with the same cut of ``tree`` (inside its widest gap between thresholds)."""
    bounds = [0.0, *(t for t in tree.thresholds() if t < tree.max_tau), tree.max_tau]
    low, high = max(zip(bounds[:-1], bounds[1:], strict=True), key=lambda gap: gap[1] - gap[0])
    return low + (high - low) / 3, low + 2 * (high - low) / 3


@pytest.mark.parametrize("pamr", [False, True])
def test_a_kept_cut_gives_the_uncached_result(service, store, scene, pamr):
    settings = NO_PAMR | ({"pamr": True, "pamr_iters": 2} if pamr else {})
    cached = store.get("cached")
    service.segment_upload(cached, scene, method="diffcut", model=service.models[0], settings=settings)
    first, second = _same_cut_taus(cached.base.tree)
    service.resegment(cached, settings=settings | {"tau": first})
    kept = dict(cached.cut_results)
    view = service.resegment(cached, settings=settings | {"tau": second})
    assert dict(cached.cut_results).keys() == kept.keys()  # answered from the kept cut
    assert cached.result.settings["tau"] == second
    fresh = store.get("fresh")
    service.segment_upload(fresh, scene, method="diffcut", model=service.models[0], settings=settings)
    expected = service.resegment(fresh, settings=settings | {"tau": second})
    assert not fresh.cut_results.keys() & cached.cut_results.keys()
    assert np.array_equal(cached.result.labels, fresh.result.labels)
    assert cached.result.labels.dtype == fresh.result.labels.dtype
    assert cached.result.segments == fresh.result.segments and cached.result.settings == fresh.result.settings
    for key in ("png", "json", "overlay"):
        assert view.downloads[key].read_bytes() == expected.downloads[key].read_bytes()


def test_overlay_download_is_the_overlay_format(service, store, scene, tmp_path):
    from zeroseg.writers import OutputWriter

    session = store.get("visitor")
    view = service.segment_upload(session, scene, method="diffcut", model=service.models[0], settings=NO_PAMR)
    (written,) = OutputWriter(tmp_path, formats=["overlay"]).write(session.result, "scene")
    assert view.downloads["overlay"].read_bytes() == written.read_bytes()


def test_page_progress_reaches_gradio(service, store, scene):
    gr = pytest.importorskip("gradio")
    from types import SimpleNamespace

    from zeroseg.web import build_demo

    demo = build_demo(service, store=store)
    session = store.get("page")
    service.segment_upload(session, scene, method="diffcut", model=service.models[0], settings=NO_PAMR)
    blocks = {getattr(block, "elem_id", None): block for block in demo.blocks.values()}
    data = {block: getattr(block, "value", None) for block in demo.blocks.values()}
    data |= {blocks["method"]: "diffcut", blocks["vocabulary"]: "", blocks["diffcut-pamr"]: True}
    (handler,) = {f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_settings"}
    shown = []

    class Progress(gr.Progress):
        def __call__(self, progress, desc=None, **kwargs):
            shown.append(desc)

    outputs = handler(data, SimpleNamespace(session_hash="page"), progress=Progress())
    assert "Error" not in outputs[0]
    iterations = session.result.settings["pamr_iters"]
    assert f"PAMR iteration {iterations}/{iterations}" in shown
