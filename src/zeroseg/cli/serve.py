"""``zeroseg serve``: the web UI (Gradio, the ``web`` extra) on 127.0.0.1 unless told otherwise.

Everything the server writes (uploads, downloads, Gradio's cache) lives under one temporary folder that is
removed when the server stops; each session's files go when its page closes.
"""

from __future__ import annotations

import atexit
import os
from typing import Annotated

import typer

from zeroseg.cli.options import DEVICE_HELP, DTYPE_HELP, check_device, check_dtype, err_console, fail
from zeroseg.errors import ConfigError, ZeroSegError


def serve_command(
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the page to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 7860,
    model: Annotated[
        list[str] | None,
        typer.Option(help="Model to offer (repeat for a choice); default: each method's own.", show_default=False),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            help="Method to offer (repeat; the first is preselected). Default: every method.", show_default=False
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="Side of the square the model sees, for every method (default: each method's).", show_default=False
        ),
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    dtype: Annotated[str, typer.Option(help=DTYPE_HELP)] = "auto",
    max_upload_mb: Annotated[float, typer.Option(min=0.01, help="Largest upload accepted, in MB.")] = 20.0,
    max_pixels: Annotated[
        int, typer.Option(min=64, help="Largest image accepted, in pixels (width x height).")
    ] = 16_000_000,
    clip_model: Annotated[str, typer.Option(help="open_clip model that names segments.")] = "convnext_large_d_320",
    clip_weights: Annotated[
        str, typer.Option(help="open_clip pretrained tag or a local checkpoint file.")
    ] = "laion2b_s29b_b131k_ft_soup",
    share: Annotated[
        bool, typer.Option("--share", help="Also open a public Gradio share link (off by default).")
    ] = False,
) -> None:
    """Start the web UI: upload an image, tune the method's settings live, name segments, download the results."""
    from zeroseg.registry import list_methods
    from zeroseg.web.sessions import SessionStore

    try:
        device = check_device(device)
        dtype_name = check_dtype(dtype)
        methods = list(dict.fromkeys(method or list_methods()))
        unknown = [m for m in methods if m not in list_methods()]
        if unknown:
            raise ConfigError(
                f"unknown method {unknown[0]!r}; choose from {', '.join(list_methods())}", setting="method"
            )
        store = SessionStore()
        atexit.register(store.close_all)
        # Before Gradio is imported: its cache goes under the server's temporary folder, no analytics calls.
        os.environ["GRADIO_TEMP_DIR"] = str(store.root / "gradio")
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        from zeroseg.web.app import build_demo
        from zeroseg.web.service import Limits, SegmentService

        service = SegmentService(
            models=list(dict.fromkeys(model or [])),
            methods=methods,
            device=device,
            dtype=dtype_name,
            capture_settings={"image_size": size} if size is not None else None,
            naming={"clip_model": clip_model, "clip_weights": clip_weights},
            limits=Limits(max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels),
        )
        demo = build_demo(service, store=store)
    except ZeroSegError as exc:
        raise fail(exc) from None
    err_console.print(f"zeroseg web UI on http://{host}:{port} (Ctrl+C to stop)")
    demo.queue(default_concurrency_limit=1).launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=service.limits.max_upload_bytes,
        show_error=False,
        quiet=True,
        footer_links=[],
    )


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the root app."""
    app.command("serve")(serve_command)
