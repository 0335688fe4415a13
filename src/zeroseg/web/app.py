"""The Gradio page: upload or sample, method and model, live method settings, results and downloads.

The widgets only call :class:`~zeroseg.web.service.SegmentService`; the method controls are generated from
the config fields the methods mark for the page (``zeroseg.options.setting(..., ui=True)``), so they are the
command line's options with the same names, help and defaults. ``build_demo`` returns the ``gr.Blocks``
without launching it (``zeroseg serve`` launches it).
"""

import html
import logging
from typing import Any

from zeroseg.errors import one_line, require
from zeroseg.web.service import CAPTURE_SETTINGS, TABLE_HEADERS, Pick, SegmentService, View, tree_bound
from zeroseg.web.sessions import SessionStore

logger = logging.getLogger(__name__)

SLIDER_RANGES: dict[str, tuple[float, float, float]] = {
    "tau": (0.05, 1.0, 0.01),
    "alpha": (1.0, 20.0, 0.5),
    "kl_threshold": (0.1, 3.0, 0.05),
    "anchors": (2, 32, 1),
}
"""Slider range and step per setting (presentation only; the config validates the values). A setting that a
method's segment tree answers ends at the tree's bound instead (:func:`zeroseg.web.service.tree_bound`)."""

PICK_HINT = "Click the overlay or a table row to pick a segment."

RESEGMENT_CONCURRENCY = 4
"""Re-segmentations (no backbone pass) run at once over all sessions."""

DOWNLOADS = (
    ("png", "Label map (PNG)"),
    ("overlay", "Overlay (JPEG)"),
    ("json", "Segments (JSON, RLE)"),
    ("tree", "NCut tree (JSON)"),
)


def build_demo(service: SegmentService | None = None, *, store: SessionStore | None = None, **service_options: Any):
    """The page as a ``gr.Blocks`` (not launched).

    Args:
        service: the segmentation service (built from ``service_options`` when omitted).
        store: where sessions keep their state and temporary folders (a new temporary root when omitted).
        **service_options: keyword arguments of :class:`SegmentService`.

    Raises:
        MissingDependencyError: Gradio is not installed (``pip install 'zeroseg[web]'``).
    """
    gr = require("gradio", "web", "the web UI")
    from zeroseg.options import method_options
    from zeroseg.web.sample import write_sample

    service = service if service is not None else SegmentService(**service_options)
    store = store if store is not None else SessionStore()
    sample_path = write_sample(store.root)
    models = service.models

    with gr.Blocks(title="zeroseg", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(
            "## zeroseg: zero-shot segmentation with a diffusion UNet\n"
            "Upload an image (or use the sample), then move the settings: the page re-segments from the kept "
            "capture, without another UNet pass. The controls marked *new UNet pass* capture the kept image "
            "again (one pass each change, no new upload)."
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                upload = gr.File(label="Image", type="filepath", file_count="single", elem_id="upload")
                sample = gr.Button("Use the sample image", elem_id="sample", size="sm")
                method = gr.Dropdown(service.methods, value=service.methods[0], label="Method", elem_id="method")
                model = gr.Dropdown(
                    models or [""],
                    value=models[0] if models else "",
                    label="Model (new UNet pass)",
                    info="Another model captures the kept image again: one more UNet pass.",
                    visible=len(models) > 1,
                    elem_id="model",
                )
                vocabulary = gr.Textbox(
                    label="Vocabulary (optional)",
                    info="Names the segments with CLIP (the `clip` extra): classes separated by commas, `|` "
                    "between synonyms; press Enter.",
                    placeholder="sky|clouds, grass, house",
                    elem_id="vocabulary",
                )
                groups, controls, capture_controls = {}, {}, {}
                for name in service.methods:
                    with gr.Group(visible=name == service.methods[0]) as group:
                        gr.Markdown(f"**{name} settings**")
                        known = service.served_defaults(name)  # the model's defaults
                        capture_controls[name] = {
                            o.name: _capture_control(gr, name, o, known | service.capture_settings)
                            for o in method_options(name)
                            if o.capture and o.name in CAPTURE_SETTINGS
                        }
                        controls[name] = {
                            o.name: _control(gr, name, o, known.get(o.name, o.default))
                            for o in method_options(name)
                            if o.ui
                        }
                    groups[name] = group
            with gr.Column(scale=2):
                status = gr.Markdown("Upload an image to start.", elem_id="status")
                picture = {"interactive": False, "height": 320}
                with gr.Row():
                    shown = gr.Image(label="Input", elem_id="input-image", format="png", **picture)
                    overlay = gr.Image(label="Overlay", elem_id="overlay", format="jpeg", **picture)
                label_map = gr.Image(label="Label map", elem_id="label-map", format="png", **picture)
                table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="segments", label="Segments")
                pick_info = gr.Markdown(PICK_HINT, elem_id="pick")
                with gr.Row():
                    split = gr.Button("Split", elem_id="split", size="sm", interactive=False)
                    merge = gr.Button("Merge", elem_id="merge", size="sm", interactive=False)
                    reset = gr.Button("Undo edits", elem_id="reset-edits", size="sm")
                    cutout = gr.DownloadButton(
                        "Cut-out (PNG)", value=None, interactive=False, elem_id="download-cutout", size="sm"
                    )
                with gr.Row():
                    downloads = {
                        key: gr.DownloadButton(text, value=None, interactive=False, elem_id=f"download-{key}")
                        for key, text in DOWNLOADS
                    }

        pick_outputs = [pick_info, split, merge, cutout]
        outputs = [status, shown, overlay, label_map, table, *downloads.values(), *pick_outputs]
        flat_controls = [(m, n, c) for m, named in controls.items() for n, c in named.items()]
        control_inputs = [c for _, _, c in flat_controls]
        capture_inputs = [c for named in capture_controls.values() for c in named.values()]

        def settings_of(chosen: str, data: dict[Any, Any]) -> dict[str, Any]:
            return {n: data[c] for m, n, c in flat_controls if m == chosen}

        def capture_of(chosen: str, data: dict[Any, Any]) -> dict[str, Any]:
            return {n: data[c] for n, c in capture_controls[chosen].items()}

        def render(view: View) -> list[Any]:
            text = ("**Error:** " if view.error else "") + html.escape(view.status)
            files = [
                gr.DownloadButton(value=str(view.downloads[key]), interactive=True)
                if key in view.downloads
                else gr.DownloadButton(value=None, interactive=False)
                for key, _ in DOWNLOADS
            ]
            rows = view.rows if view.rows else None
            unpicked = [
                PICK_HINT,
                gr.Button(interactive=False),
                gr.Button(interactive=False),
                gr.DownloadButton(value=None, interactive=False),
            ]
            return [text, view.image, view.overlay, view.label_map, rows, *files, *unpicked]

        def render_pick(pick: Pick) -> list[Any]:
            text = ("**Error:** " if pick.error else "") + html.escape(pick.status)
            return [
                text,
                gr.skip() if pick.overlay is None else pick.overlay,
                gr.Button(interactive=pick.can_split),
                gr.Button(interactive=pick.can_merge),
                gr.DownloadButton(
                    value=None if pick.cutout is None else str(pick.cutout), interactive=pick.cutout is not None
                ),
            ]

        def guarded_pick(action):  # noqa: ANN001, ANN202 - wraps the pick handlers below
            try:
                return render_pick(action())
            except Exception as exc:  # the page shows one line, the log keeps the traceback
                logger.exception("web handler failed")
                return render_pick(Pick(status=f"internal error ({type(exc).__name__}): {one_line(exc)}", error=True))

        def guarded(action):  # noqa: ANN001, ANN202 - wraps the handlers below
            try:
                return render(action())
            except Exception as exc:  # the page shows one line, the log keeps the traceback
                logger.exception("web handler failed")
                return render(View(status=f"internal error ({type(exc).__name__}): {one_line(exc)}", error=True))

        def on_image(data: dict, request: gr.Request, progress=gr.Progress()):  # noqa: ANN001, ANN202, B008
            path, chosen, model_name, labels = data[upload], data[method], data[model], data[vocabulary]
            session = store.get(request.session_hash)
            if not path:
                session.clear_result()
                return render(View(status="Upload an image to start."))
            name = _original_name(path)
            return guarded(
                lambda: service.segment_upload(
                    session,
                    path,
                    name=name,
                    method=chosen,
                    model=model_name or service.default_model(chosen),
                    settings=settings_of(chosen, data),
                    labels=labels or "",
                    capture=capture_of(chosen, data),
                    progress=lambda f, d: progress(f, desc=d),
                )
            )

        def on_capture(data: dict, request: gr.Request, progress=gr.Progress()):  # noqa: ANN001, ANN202, B008
            chosen, model_name, labels = data[method], data[model], data[vocabulary]
            session = store.get(request.session_hash)
            if session.base is None or session.method != chosen:
                return [gr.skip()] * len(outputs)  # nothing kept to capture again: the next upload uses them
            return guarded(
                lambda: service.recapture(
                    session,
                    capture=capture_of(chosen, data),
                    model=model_name or service.default_model(chosen),
                    settings=settings_of(chosen, data),
                    labels=labels or "",
                    progress=lambda f, d: progress(f, desc=d),
                )
            )

        def on_settings(data: dict, request: gr.Request, progress=gr.Progress()):  # noqa: ANN001, ANN202, B008
            chosen, labels = data[method], data[vocabulary]
            session = store.get(request.session_hash)
            if session.base is None or session.method != chosen:
                return [gr.skip()] * len(outputs)
            return guarded(
                lambda: service.resegment(
                    session,
                    settings=settings_of(chosen, data),
                    labels=labels or "",
                    progress=lambda f, d: progress(f, desc=d),
                )
            )

        image_inputs = {upload, method, model, vocabulary, *capture_inputs, *control_inputs}
        backbone_events = {"concurrency_limit": max(1, len(models)), "concurrency_id": "backbone"}
        upload.upload(on_image, image_inputs, outputs, **backbone_events)
        upload.clear(on_image, image_inputs, outputs, **backbone_events)
        sample.click(lambda: str(sample_path), None, upload, queue=False).then(
            on_image, image_inputs, outputs, **backbone_events
        )
        method.change(
            lambda chosen: [gr.Group(visible=name == chosen) for name in groups], method, list(groups.values())
        ).then(on_image, image_inputs, outputs, **backbone_events)
        model.change(on_capture, image_inputs, outputs, **backbone_events)
        for control in capture_inputs:  # Enter or leaving the box; an unchanged value costs no pass
            control.submit(on_capture, image_inputs, outputs, **backbone_events)
            control.blur(on_capture, image_inputs, outputs, **backbone_events)
        settings_inputs = {method, vocabulary, *control_inputs}
        settings_events = {
            "trigger_mode": "always_last",
            "concurrency_limit": RESEGMENT_CONCURRENCY,
            "concurrency_id": "resegment",
        }
        for control in control_inputs:
            control.change(on_settings, settings_inputs, outputs, **settings_events)
        vocabulary.submit(on_settings, settings_inputs, outputs, **settings_events)

        def on_pick_pixel(event: gr.SelectData, request: gr.Request):  # noqa: ANN202
            session = store.get(request.session_hash)
            x, y = event.index
            return guarded_pick(lambda: service.pick(session, int(x), int(y)))

        def on_pick_row(event: gr.SelectData, request: gr.Request):  # noqa: ANN202
            session = store.get(request.session_hash)
            row = event.row_value or []
            if not row or row[0] in ("", None):
                return [gr.skip()] * len(pick_outputs_with_overlay)
            return guarded_pick(lambda: service.pick_segment(session, int(row[0])))

        def on_edit(name: str):  # noqa: ANN202
            def handler(request: gr.Request):  # noqa: ANN202
                session = store.get(request.session_hash)
                return guarded(lambda: getattr(service, name)(session))

            return handler

        pick_outputs_with_overlay = [pick_info, overlay, split, merge, cutout]
        pick_events = {"concurrency_limit": RESEGMENT_CONCURRENCY, "concurrency_id": "pick"}
        overlay.select(on_pick_pixel, None, pick_outputs_with_overlay, **pick_events)
        table.select(on_pick_row, None, pick_outputs_with_overlay, **pick_events)
        edit_events = {"concurrency_limit": RESEGMENT_CONCURRENCY, "concurrency_id": "resegment"}
        split.click(on_edit("split"), None, outputs, **edit_events)
        merge.click(on_edit("merge"), None, outputs, **edit_events)
        reset.click(on_edit("reset_edits"), None, outputs, **edit_events)

        def on_unload(request: gr.Request) -> None:
            store.close(request.session_hash)

        demo.unload(on_unload)

    demo.zeroseg_service = service  # type: ignore[attr-defined]
    demo.zeroseg_store = store  # type: ignore[attr-defined]
    return demo


def _control(gr: Any, method: str, option: Any, default: Any) -> Any:
    """The widget of one config option, set to ``default`` (the served model's where it is model-aware): a
    checkbox for flags, a slider where a range is known, else a box."""
    label = f"{option.name} ({option.cli})"
    elem_id = f"{method}-{option.name}".replace("_", "-")
    if option.kind == "bool":
        return gr.Checkbox(value=default, label=label, info=option.help, elem_id=elem_id)
    if option.name in SLIDER_RANGES and option.kind in ("int", "float", "floats"):
        low, high, step = SLIDER_RANGES[option.name]
        high = tree_bound(method, option.name) or high
        value = default[0] if isinstance(default, tuple) else default
        return gr.Slider(low, high, value=value, step=step, label=label, info=option.help, elem_id=elem_id)
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
    return gr.Textbox(value=shown, label=label, info=option.help, elem_id=elem_id)


CAPTURE_LABELS = {"image_size": "Image size", "timestep": "Timestep"}


def _capture_control(gr: Any, method: str, option: Any, served: dict[str, Any]) -> Any:
    """A capture setting's box, labelled as costing a UNet pass: Enter captures the kept image again."""
    return gr.Number(
        value=served.get(option.name, option.default),
        label=f"{CAPTURE_LABELS.get(option.name, option.name)} (new UNet pass)",
        info=f"{option.help} Press Enter: the kept image is captured again, one more UNet pass ({option.cli}).",
        precision=0,
        elem_id=f"{method}-{option.name}".replace("_", "-"),
    )


def _original_name(path: str) -> str:
    """The file name the visitor uploaded (Gradio keeps it as the last path component)."""
    from pathlib import Path

    return Path(path).name
