"""What the web page does, without the page: load an upload, run the pipeline, re-segment, write the downloads.

Everything here goes through :mod:`zeroseg.pipeline` and :mod:`zeroseg.writers`; the Gradio layer
(:mod:`zeroseg.web.app`) only wires widgets to :class:`SegmentService` calls, so the behaviour is tested without
a browser. Imports no Gradio.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from zeroseg.errors import ConfigError, ImageError, ZeroSegError, one_line
from zeroseg.web.edits import with_edits
from zeroseg.web.sessions import Session

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 16_000_000

Progress = Callable[[float, str], None]

STEP_INTERVAL = 0.1
"""Seconds between two step reports forwarded to the page (the last step of a stage is always shown)."""

CUT_CACHE_SIZE = 8
"""Results kept per session by the cut of the segment tree they come from (a tau move back to a cut seen
before is answered from here: no concept assignment, no PAMR)."""


def _no_progress(fraction: float, description: str) -> None:
    """Progress sink when the caller shows none."""


def step_reporter(progress: Progress, *, interval: float = STEP_INTERVAL) -> Callable[[str, int, int], None]:
    """The step callback of the NCut tree build and PAMR (``(what, done, total)``) as page progress: "NCut tree:
    12 segments", "PAMR iteration 3/10" (PAMR from 50 % to 95 %). Reports closer than ``interval`` seconds are
    dropped, except the last one of a step."""
    from zeroseg.diffcut.tree import NCUT_TREE_STEP

    last = [-float("inf")]

    def report(what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < interval and not (total and done >= total):
            return
        last[0] = now
        if what == NCUT_TREE_STEP:
            progress(0.4, f"{what}: {done} segments")
        elif total:
            progress(0.5 + 0.45 * min(done, total) / total, f"{what} {done}/{total}")
        else:
            progress(0.5, f"{what} {done}")

    return report


@dataclass(frozen=True)
class Limits:
    """What a public page accepts: upload size in bytes and image size in pixels (width * height)."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class View:
    """Everything the page shows after a segmentation (or an error: ``error`` set, the rest empty)."""

    status: str
    error: bool = False
    image: np.ndarray | None = None
    overlay: Any = None
    label_map: np.ndarray | None = None
    rows: list[list[Any]] = field(default_factory=list)
    downloads: dict[str, Path] = field(default_factory=dict)
    num_segments: int = 0


@dataclass
class Pick:
    """What the page shows for a picked segment: its description, the overlay with it highlighted, its cut-out
    (PNG, alpha 0 outside the mask) and which edits apply (``error`` set: ``status`` says why, the rest empty)."""

    status: str
    error: bool = False
    segment_id: int | None = None
    overlay: np.ndarray | None = None
    cutout: Path | None = None
    region: int | None = None
    can_split: bool = False
    can_merge: bool = False


CAPTURE_SETTINGS = ("image_size", "timestep")
"""Capture settings the page offers; each change costs one new backbone pass of the kept image."""

TABLE_HEADERS = ["id", "area (px)", "area (%)", "bbox (x, y, w, h)", "label", "score"]


class SegmentService:
    """Pipelines per (method, model), loaded on first use, with one backbone pass at a time per model.

    Args:
        models: model names offered (short names, hub ids, folders); the first is the default. Empty means
            each method's own default model.
        methods: methods offered; the first is the default (default: every registered method, the registry's
            default first).
        device / dtype: where and in which precision the UNets run.
        capture_settings: capture settings applied to every method (e.g. ``{"image_size": 512}``).
        naming: keyword arguments of :class:`zeroseg.pipeline.NamingOptions` besides the labels (CLIP model
            and weights), used when a user types a vocabulary.
        limits: upload limits.
    """

    def __init__(
        self,
        *,
        models: Sequence[str] = (),
        methods: Sequence[str] | None = None,
        device: str = "cpu",
        dtype: str | None = None,
        capture_settings: dict[str, Any] | None = None,
        naming: dict[str, Any] | None = None,
        limits: Limits | None = None,
    ) -> None:
        from zeroseg.registry import DEFAULT_METHOD, get_method, list_methods

        if methods is None:
            methods = sorted(list_methods(), key=lambda name: name != DEFAULT_METHOD)
        for method in methods:
            get_method(method)  # unknown method: one-line ConfigError before anything loads
        if not methods:
            raise ConfigError("at least one method must be offered", setting="method")
        self.models = list(models)
        self.methods = list(methods)
        self.device = device
        self.dtype = dtype
        self.capture_settings = dict(capture_settings or {})
        self.naming = dict(naming or {})
        self.limits = limits or Limits()
        self._pipelines: dict[tuple[str, str | None, tuple[tuple[str, Any], ...]], Any] = {}
        self._backbones: dict[str | None, Any] = {}
        self._namers: dict[str, Any] = {}
        self._served_defaults: dict[str, dict[str, Any]] = {}
        self._load_lock = threading.Lock()
        self._model_locks: dict[str | None, threading.Lock] = {}
        self._waiting: dict[str | None, int] = {}
        self._count_lock = threading.Lock()
        self.backbone_passes = 0
        """Backbone passes run by this service (all sessions); a re-segmentation never adds one."""

    # ------------------------------------------------------------------------------------------ loading

    def default_model(self, method: str) -> str | None:
        """The model ``method`` uses when the visitor picks none: the page's first model, else the method's own
        default (``None``: the config's default, as loading without a model name does)."""
        if self.models:
            return self.models[0]
        from zeroseg.registry import config_class

        return str(config_class(method)().model)

    def served_defaults(self, method: str) -> dict[str, Any]:
        """The model-aware settings' values for ``method``'s default model, as far as they are known before it
        loads (what the page's controls start at); read once per method."""
        if method not in self._served_defaults:
            from zeroseg.backbones.defaults import known_defaults

            self._served_defaults[method] = known_defaults(self.default_model(method) or "", method)
        return self._served_defaults[method]

    def pipeline(self, method: str, model: str | None, capture: dict[str, Any] | None = None) -> Any:
        """The pipeline of ``method`` on ``model`` with the page's ``capture`` settings over the service's own
        (built once per combination; the backbone of a model is shared between methods and capture settings)."""
        from zeroseg.pipeline import build_pipeline

        capture = capture or {}
        key = (method, model, tuple(sorted(capture.items())))
        with self._load_lock:
            if key not in self._pipelines:
                settings = dict(self.capture_settings) | capture
                if model is not None:
                    settings["model"] = model
                pipe = build_pipeline(
                    method,
                    device=self.device,
                    dtype=self.dtype,
                    keep_capture=True,
                    keep_tree=True,
                    backbone=self._backbones.get(model),
                    **settings,
                )
                self._backbones.setdefault(model, pipe.segmenter.backbone)
                self._pipelines[key] = pipe
            return self._pipelines[key]

    def namer(self, labels: str) -> Any:
        """The CLIP namer of a typed vocabulary (``cat,dog,sky|clouds``), loaded once per vocabulary."""
        from zeroseg.pipeline import NamingOptions

        with self._load_lock:
            if labels not in self._namers:
                options = NamingOptions(labels=labels, **self.naming)
                options.check()
                self._namers[labels] = options.build(self.device if self.device != "auto" else "cpu")
            return self._namers[labels]

    # ------------------------------------------------------------------------------------------ actions

    def segment_upload(
        self,
        session: Session,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        method: str,
        model: str | None,
        settings: dict[str, Any],
        labels: str = "",
        capture: dict[str, Any] | None = None,
        progress: Progress = _no_progress,
    ) -> View:
        """Load an uploaded file, run the backbone once, keep the capture in the session and segment it.

        ``capture``: capture settings chosen on the page (``image_size``, ``timestep``; ``None`` or empty values:
        the service's own)."""
        session.clear_result()
        name = name or Path(path).name
        try:
            image = self.load_upload(path, name)
            chosen = self.capture_of(method, capture)
            pipe = self._pipeline_with(method, model, settings, labels, chosen)
            item = self._capture(pipe, model, image, name, progress, "UNet pass")
        except ZeroSegError as exc:
            return self._error(session, _describe(exc, method))
        session.keep(item, method=method, model=model, name=name, capture=chosen)
        session.overrides, session.labels = _changed(pipe, settings), labels.strip()
        return self._view(session, item, f"segmented {name}")

    def recapture(
        self,
        session: Session,
        *,
        capture: dict[str, Any],
        model: str | None = None,
        settings: dict[str, Any],
        labels: str = "",
        progress: Progress = _no_progress,
    ) -> View:
        """Capture the kept image again with other capture settings (image size, timestep) or another model:
        one new backbone pass, no upload. Settings equal to the kept capture's only re-segment (no pass)."""
        base = session.base
        if base is None:
            return View(status="upload an image first")
        model = session.model if model is None else model
        try:
            chosen = self.capture_of(session.method, capture)
            if chosen == session.capture and model == session.model:
                return self.resegment(session, settings=settings, labels=labels, progress=progress)
            pipe = self._pipeline_with(session.method, model, settings, labels, chosen)
            item = self._capture(pipe, model, base.image, session.name or "image", progress, _pass_text(chosen))
        except ZeroSegError as exc:
            return self._error(session, _describe(exc, session.method), keep_result=True)
        session.recaptured(item, model=model, capture=chosen)
        session.overrides, session.labels = _changed(pipe, settings), labels.strip()
        what = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in chosen.items()) or "the default capture"
        return self._view(session, item, f"captured again ({what})")

    def capture_of(self, method: str, capture: dict[str, Any] | None) -> dict[str, Any]:
        """The page's capture settings parsed by their options, keeping only those that differ from the
        service's own (so equal settings share one pipeline); empty values mean the service's own."""
        from zeroseg.backbones.defaults import known_defaults
        from zeroseg.options import method_options

        options = {o.name: o for o in method_options(method) if o.capture and o.name in CAPTURE_SETTINGS}
        served = known_defaults(self.default_model(method) or "", method) | self.capture_settings
        chosen = {}
        for name, value in (capture or {}).items():
            if value is None or value == "":
                continue
            if name not in options:
                raise ConfigError("is not a capture setting of the page", setting=name)
            option = options[name]
            parsed = option.parse(int(value) if option.kind == "int" and isinstance(value, float) else value)
            if parsed != served.get(name, option.default):
                chosen[name] = parsed
        return chosen

    def _capture(self, pipe: Any, model: str | None, image: Any, name: str, progress: Progress, text: str) -> Any:
        """One backbone pass of ``image`` (waiting for the model's turn), counted; the result with its capture."""
        from zeroseg.pipeline import Failure, ImageItem

        with self._model_turn(model, progress):
            progress(0.2, text)
            before = pipe.segmenter.num_backbone_passes
            (item,) = list(_reporting(pipe, {}, progress).stream([ImageItem(image, source=name)]))
            self._count_passes(pipe.segmenter.num_backbone_passes - before)
        if isinstance(item, Failure):
            raise ImageError(item.error)
        return item

    def resegment(
        self,
        session: Session,
        *,
        settings: dict[str, Any],
        labels: str = "",
        progress: Progress = _no_progress,
    ) -> View:
        """Redo the method with other settings from the session's kept capture (no backbone pass)."""
        base = session.base
        if base is None:
            return View(status="upload an image first")
        try:
            pipe = self._pipeline_with(session.method, session.model, {}, labels, session.capture)
            overrides = _changed(pipe, settings)
            progress(0.3, "segmenting (PAMR)" if settings.get("pamr") else "segmenting")
            start = time.perf_counter()
            edited = self._edited_base(session, session.edits) if base.tree is not None else base
            run = _reporting(pipe, overrides, progress)
            key = _cut_key(run, edited.tree)
            cached = session.cut_results.pop(key, None) if key is not None else None
            if cached is not None:  # the same cut of the tree: the same labels, under this run's settings
                session.cut_results[key] = cached  # now the most recent
                result = replace(cached, settings=run.settings())
            else:
                result = run.resegment(edited)
                if key is not None and result.tree is edited.tree:
                    session.cut_results[key] = result
                    while len(session.cut_results) > CUT_CACHE_SIZE:
                        session.cut_results.popitem(last=False)
            seconds = time.perf_counter() - start
        except ZeroSegError as exc:
            return self._error(session, _describe(exc, session.method), keep_result=True)
        session.overrides, session.labels = overrides, labels.strip()
        if result.tree is not None and result.tree is not edited.tree:
            session.base = replace(base, tree=result.tree)  # alpha changed: keep the new tree for the next move
            session.edits = []  # the edits named regions of the old tree
            session.cut_results.clear()  # cuts of the old tree
        if base.tree is None:
            session.edits = []  # label-map edits name the ids of the old result
        result = with_edits(result, session.edits)
        return self._view(session, result, f"re-segmented in {seconds:.2f} s from the kept capture")

    # ------------------------------------------------------------------------------------------ exploring

    def pick(self, session: Session, x: int, y: int) -> Pick:
        """The segment under pixel (``x``, ``y``) of the current result (a click on the overlay)."""
        result = session.result
        if result is None:
            return Pick(status="upload an image first", error=True)
        height, width = result.labels.shape
        if not (0 <= x < width and 0 <= y < height):
            return Pick(status=f"({x}, {y}) is outside the {width}x{height} image", error=True)
        return self.pick_segment(session, int(result.labels[int(y), int(x)]))

    def pick_segment(self, session: Session, segment_id: int) -> Pick:
        """Highlight one segment, describe it and write its cut-out; remembered for split and merge."""
        from PIL import Image

        result = session.result
        if result is None:
            return Pick(status="upload an image first", error=True)
        if not 0 <= segment_id < result.num_segments:
            return Pick(status=f"there is no segment {segment_id} (ids 0..{result.num_segments - 1})", error=True)
        if session.picked != segment_id:
            session.previous, session.picked = session.picked, segment_id
        mask = result.labels == segment_id
        segment = result.segments[segment_id]
        overlay = session.overlay if session.overlay is not None else np.asarray(_render_overlay(result))
        highlighted = np.where(mask[..., None], overlay, (overlay * 0.3).astype(np.uint8))
        cutout = np.dstack([result.image, np.where(mask, 255, 0).astype(np.uint8)])
        for old in session.folder.glob("*_segment-*.png"):
            old.unlink(missing_ok=True)
        path = session.folder / f"{Path(session.name or 'image').stem or 'image'}_segment-{segment_id}.png"
        Image.fromarray(cutout, "RGBA").save(path, compress_level=1)
        x, y, w, h = segment.bbox
        total = max(result.labels.size, 1)
        share = 100.0 * segment.area / total
        text = f"segment {segment_id} · {segment.area} px ({share:.2f} %) · box x {x}, y {y}, {w}x{h}"
        if segment.label:
            text += f" · {segment.label}" + ("" if segment.score is None else f" ({segment.score:.3f})")
            if segment.alternatives:
                text += " · runners-up: " + ", ".join(f"{name} ({p:.3f})" for name, p in segment.alternatives)
        region, can_split, can_merge = None, False, False
        if result.tree is not None:
            from zeroseg.web.edits import segment_regions

            region = segment_regions(result, float(result.settings["tau"]))[segment_id]
            node = result.tree.nodes[region]
            can_split, can_merge = node.children is not None, node.parent is not None
            text += f" · NCut region {region}"
        else:
            can_merge = session.previous is not None and session.previous < result.num_segments
            if can_merge:
                text += f" · Merge joins it with segment {session.previous}"
        return Pick(
            status=text,
            segment_id=segment_id,
            overlay=highlighted,
            cutout=path,
            region=region,
            can_split=can_split,
            can_merge=can_merge,
        )

    def split(self, session: Session) -> View:
        """DiffCut: replace the picked segment by the two children of its NCut region."""
        return self._edit(session, "split")

    def merge(self, session: Session) -> View:
        """DiffCut: join the picked segment's region with its sibling; DiffSeg: join the last two picked segments."""
        return self._edit(session, "merge")

    def reset_edits(self, session: Session) -> View:
        """Drop every local edit: back to the segmentation of the current settings."""
        if session.base is None:
            return View(status="upload an image first")
        session.edits = []
        return self._apply_edits(session, "edits undone")

    def _edit(self, session: Session, op: str) -> View:
        result = session.result
        if result is None or session.picked is None:
            return View(status="pick a segment first", error=True)
        pick = self.pick_segment(session, session.picked)
        if pick.error:
            return View(status=pick.status, error=True)
        if result.tree is not None:
            if op == "split" and not pick.can_split:
                return View(status=f"segment {pick.segment_id} has no split in the NCut tree", error=True)
            if op == "merge" and not pick.can_merge:
                return View(status="the whole image is one region: nothing to merge with", error=True)
            edit = {"op": op, "node": pick.region}
            what = f"{op} of segment {pick.segment_id} (NCut region {pick.region})"
        else:
            if op == "split":
                return View(status=f"{session.method} has no segment tree to split along", error=True)
            if not pick.can_merge or session.previous == session.picked:
                return View(status="pick two segments to merge (one, then the other)", error=True)
            edit = {"op": "merge", "segments": [session.previous, session.picked]}
            what = f"merge of segments {session.previous} and {session.picked}"
        session.edits = [*session.edits, edit]
        session.picked = session.previous = None
        return self._apply_edits(session, what)

    def _apply_edits(self, session: Session, what: str) -> View:
        """Re-run the current settings with the session's edits (DiffCut from the kept capture and tree)."""
        from zeroseg.web.edits import apply_label_edits

        try:
            pipe = self._pipeline_with(session.method, session.model, {}, session.labels, session.capture)
            start = time.perf_counter()
            if session.base.tree is not None:
                run = _reporting(pipe, session.overrides, _no_progress)
                result = run.resegment(self._edited_base(session, session.edits))
            else:
                unedited = pipe.resegment(session.base, **session.overrides)
                result = apply_label_edits(unedited, session.edits, namer=pipe.namer)
            seconds = time.perf_counter() - start
        except ZeroSegError as exc:
            session.edits = session.edits[:-1]
            return self._error(session, _describe(exc, session.method), keep_result=True)
        result = with_edits(result, session.edits)
        return self._view(session, result, f"{what} in {seconds:.2f} s · {len(session.edits)} edits")

    @staticmethod
    def _edited_base(session: Session, edits: list[dict[str, Any]]) -> Any:
        """The session's base with its NCut tree carrying ``edits`` (the plain tree when there are none); the
        edited tree is kept while the edits stay, so a tau move does not write the tree download again."""
        from zeroseg.diffcut.tree import EditedTree

        base = session.base
        if not edits:
            return base
        tree = session.edited_tree
        if tree is None or tree.base is not base.tree or tree.edits != edits:
            tree = session.edited_tree = EditedTree(base.tree, edits)
        return replace(base, tree=tree)

    def load_upload(self, path: str | os.PathLike[str], name: str) -> Any:
        """The uploaded image as RGB, or a one-line :class:`ImageError` naming the file (size, pixels, format)."""
        from zeroseg.image import load_image

        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise ImageError(f"{name}: cannot read the upload ({exc.strerror or exc})") from None
        limit = self.limits.max_upload_bytes
        if size > limit:
            raise ImageError(f"{name}: the file is {_megabytes(size)}, over the {_megabytes(limit)} upload limit")
        width, height = _header_size(path)
        if width * height > self.limits.max_pixels:
            raise ImageError(
                f"{name}: {width}x{height} = {width * height:,} pixels, over this page's limit of "
                f"{self.limits.max_pixels:,} pixels; downscale it first"
            )
        try:
            return load_image(path, max_pixels=self.limits.max_pixels)
        except ImageError as exc:
            raise ImageError(str(exc).replace(str(path), name)) from None

    # ------------------------------------------------------------------------------------------ helpers

    def _pipeline_with(
        self,
        method: str,
        model: str | None,
        settings: dict[str, Any],
        labels: str,
        capture: dict[str, Any] | None = None,
    ) -> Any:
        """The cached pipeline, with the page's method settings and naming applied (the backbone is shared)."""
        from zeroseg.pipeline import Pipeline

        base = self.pipeline(method, model, capture)
        segmenter = base.segmenter.with_config(**_changed(base, settings)) if settings else base.segmenter
        labels = labels.strip()
        namer = self.namer(labels) if labels else None
        if segmenter is base.segmenter and namer is None:
            return base
        return Pipeline(
            segmenter,
            namer=namer,
            keep_capture=True,
            keep_tree=True,
            naming_settings={"labels": labels} if namer else None,
        )

    def _model_turn(self, model: str | None, progress: Progress) -> _Turn:
        with self._count_lock:
            lock = self._model_locks.setdefault(model, threading.Lock())
            ahead = self._waiting.get(model, 0)
            self._waiting[model] = ahead + 1
        if ahead:
            progress(0.0, f"waiting for the model: {ahead} ahead")
        return _Turn(self, model, lock)

    def _count_passes(self, passes: int) -> None:
        with self._count_lock:
            self.backbone_passes += passes

    def _view(self, session: Session, result: Any, what: str) -> View:
        from zeroseg import writers
        from zeroseg.outputs import palette

        session.result = result
        session.picked = session.previous = None  # ids may have changed: pick again
        stem = Path(session.name or "image").stem or "image"
        formats = ["png", "json"]
        if result.tree is not None and session.tree_written is not result.tree:
            formats.append("tree")  # the tree changes only with alpha: written once per tree
        writer = writers.OutputWriter(session.folder, formats=formats, overwrite=True)
        downloads = session.downloads | dict(zip(formats, writer.write(result, stem), strict=True))
        overlay = _render_overlay(result)  # rendered once: the page's picture and the overlay download
        downloads["overlay"] = _write_overlay(overlay, session.folder / f"{stem}{writers.FORMATS['overlay'].suffix}")
        if result.tree is None:
            downloads.pop("tree", None)
        session.tree_written, session.downloads = result.tree, downloads
        total = max(result.labels.size, 1)
        rows = [
            [
                s.id,
                s.area,
                round(100.0 * s.area / total, 2),
                ", ".join(str(v) for v in s.bbox),
                s.label or "",
                "" if s.score is None else round(float(s.score), 3),
            ]
            for s in result.segments
        ]
        colours = palette(max(int(result.labels.max()) + 1, 1))[result.labels]
        session.overlay = np.asarray(overlay)
        status = f"{result.num_segments} segments · {what} · UNet passes for this image: {session.backbone_passes}"
        return View(
            status=status,
            image=result.image,
            overlay=overlay,
            label_map=colours.astype(np.uint8),
            rows=rows,
            downloads=downloads,
            num_segments=result.num_segments,
        )

    def _error(self, session: Session, message: str, *, keep_result: bool = False) -> View:
        if not keep_result:
            session.clear_result()
        logger.info("page error: %s", message)
        return View(status=message, error=True)


class _Turn:
    """Holds a model's lock for one backbone pass; releases it and the waiting count on exit."""

    def __init__(self, service: SegmentService, model: str | None, lock: threading.Lock) -> None:
        self.service, self.model, self.lock = service, model, lock

    def __enter__(self) -> _Turn:
        self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
        with self.service._count_lock:
            self.service._waiting[self.model] -= 1


def _render_overlay(result: Any) -> Any:
    from zeroseg import writers

    return writers.render_overlay(result)


OVERLAY_QUALITY = 90
"""JPEG quality of the overlay download, as the ``overlay`` output format writes it."""


def _write_overlay(picture: Any, path: Path) -> Path:
    """The rendered overlay saved as the ``overlay`` output format saves it (same bytes), without rendering it
    a second time."""
    from zeroseg.outputs import atomic_write

    with atomic_write(path, overwrite=True) as temp:
        picture.save(temp, format="JPEG", quality=OVERLAY_QUALITY)
    return path


class _Reporting:
    """A segmenter whose ``segment_capture`` and ``build_tree`` report their steps (PAMR iterations, the NCut
    tree build) to a callback, where the method takes one; everything else is the wrapped segmenter's own."""

    def __init__(self, segmenter: Any, step: Callable[[str, int, int], None]) -> None:
        self._segmenter, self._step = segmenter, step

    def __getattr__(self, name: str) -> Any:
        return getattr(self._segmenter, name)

    def segment_capture(self, capture: dict[str, Any], **kwargs: Any) -> Any:
        return self._segmenter.segment_capture(capture, **kwargs, **self._progress("segment_capture"))

    def build_tree(self, capture: dict[str, Any], **kwargs: Any) -> Any:
        return self._segmenter.build_tree(capture, **kwargs, **self._progress("build_tree"))

    def _progress(self, method: str) -> dict[str, Any]:
        parameters = inspect.signature(getattr(type(self._segmenter), method)).parameters
        return {"progress": self._step} if "progress" in parameters else {}


def _reporting(pipe: Any, overrides: dict[str, Any], progress: Progress) -> Any:
    """``pipe`` with ``overrides`` applied and its method's steps reported to ``progress`` (what
    ``pipe.resegment(result, **overrides)`` runs, as ``_reporting(...).resegment(result)``)."""
    segmenter = pipe.segmenter.with_config(**overrides) if overrides else pipe.segmenter
    clone = copy.copy(pipe)
    clone.segmenter = segmenter if progress is _no_progress else _Reporting(segmenter, step_reporter(progress))
    return clone


def _cut_key(run: Any, tree: Any) -> tuple[Any, ...] | None:
    """What a result of ``run`` from ``tree`` depends on: the tree, every setting but the one the tree answers,
    the naming, and the cut at that setting (its accepted splits); None when the run does not read a tree."""
    segmenter = run.segmenter
    spec = segmenter.tree_spec
    if spec is None or tree is None or not segmenter.tree_fits(tree):
        return None
    settings = {name: value for name, value in run.settings().items() if name != spec.setting}
    splits = tuple(node.id for node in tree.accepted_splits(getattr(segmenter.config, spec.setting)))
    return tree, repr(sorted(settings.items())), splits


def tree_bound(method: str, setting: str) -> float | None:
    """The largest value of ``setting`` the method's kept segment tree answers (DiffCut's tau), else ``None``:
    the page's slider for that setting ends there, so every move is read from the tree."""
    from zeroseg.registry import method_class

    spec = method_class(method).tree_spec
    return spec.bound if spec is not None and spec.setting == setting else None


def _changed(pipe: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings parsed by their options (text from the page) and validated; capture settings refused."""
    from zeroseg.options import method_options

    options = {o.name: o for o in method_options(pipe.method)}
    parsed = {}
    for name, value in settings.items():
        if name not in options or value is None:
            continue
        if options[name].capture:
            raise ConfigError("is fixed by the kept capture; upload the image again", setting=name)
        parsed[name] = options[name].parse(value)
    return parsed


def _pass_text(capture: dict[str, Any]) -> str:
    shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in capture.items())
    return f"UNet pass ({shown})" if shown else "UNet pass"


def _describe(exc: ZeroSegError, method: str | None) -> str:
    from zeroseg.options import describe_error

    text = describe_error(exc, method) if isinstance(exc, ConfigError) else str(exc)
    return one_line(text)


def _header_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Width and height from the file header, no pixel decoded; (0, 0) when unreadable (the loader then says
    what is wrong, as on the command line)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except Exception:  # noqa: BLE001 - any failure is reported by load_image with its own message
        return 0, 0


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"
