"""Loading of the refinement stage's compiled row kernels (:mod:`zeroseg.refine.kernels`, numba).

The kernels give the same float32 bits as the tensor forms beside them in :mod:`zeroseg.refine.pamr` and
:mod:`zeroseg.refine.upsample`; the tensor forms run when numba is missing, or when ``ZEROSEG_TENSOR_FORM=1``
is set. Importing numba and loading its on-disk machine-code cache takes about 0.7 s (the first compilation
after installation a few seconds), so :func:`preload` starts it in the background while a model loads.
"""

from __future__ import annotations

import logging
import os
import threading
from types import ModuleType

logger = logging.getLogger(__name__)

TENSOR_FORM_VARIABLE = "ZEROSEG_TENSOR_FORM"
"""Environment variable: set to 1 to run the tensor forms instead of the compiled kernels (same bits)."""

_lock = threading.Lock()
_loaded: list[ModuleType | None] = []
"""The kernels module (or None when numba is unusable), once :func:`_load` has run."""


def tensor_form_requested() -> bool:
    """Whether the environment asks for the tensor forms."""
    return os.environ.get(TENSOR_FORM_VARIABLE, "") not in ("", "0")


def _load() -> ModuleType | None:
    with _lock:
        if not _loaded:
            try:
                from zeroseg.refine import kernels
            except ImportError as error:  # numba missing or unusable here: the tensor forms give the same bits
                logger.info("refinement runs in its tensor form (%s)", error)
                kernels = None
            if kernels is not None:
                kernels.warm_up()
            _loaded.append(kernels)
        return _loaded[0]


def compiled_kernels() -> ModuleType | None:
    """:mod:`zeroseg.refine.kernels` when numba is installed and the tensor form is not asked for, else None."""
    return None if tensor_form_requested() else _load()


def preload() -> None:
    """Load the compiled kernels in a background thread, so that the load overlaps other start-up work."""
    if not _loaded and not tensor_form_requested() and not _lock.locked():
        threading.Thread(target=_load, name="zeroseg-kernels-preload", daemon=True).start()
