"""The web UI (``zeroseg serve``, the ``web`` extra): :func:`build_demo` returns the Gradio page.

Gradio is imported only when the page is built, so ``import zeroseg.web`` stays cheap and a missing extra is a
one-line error naming ``pip install 'zeroseg[web]'``.
"""

from zeroseg.web.service import Limits, SegmentService
from zeroseg.web.sessions import SessionStore


def build_demo(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - see zeroseg.web.app.build_demo
    """The page as a ``gr.Blocks``, not launched (see :func:`zeroseg.web.app.build_demo`)."""
    from zeroseg.web.app import build_demo as build

    return build(*args, **kwargs)


__all__ = ["Limits", "SegmentService", "SessionStore", "build_demo"]
