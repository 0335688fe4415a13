"""Per-visitor state of the web page: the kept capture and result, and a private temporary folder.

Each browser session gets its own :class:`Session` (looked up by Gradio's session hash), so visitors never
see each other's images or results. Downloads are written into the session's folder under one temporary
root; the folder goes when the session ends (page closed), when it has been idle too long, and the whole root
when the server stops.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

IDLE_SECONDS = 3600.0
"""A session untouched this long is dropped (its capture freed, its folder deleted)."""


@dataclass
class Session:
    """One visitor's image, capture and current result.

    Attributes:
        folder: private temporary folder for the downloads.
        base: the first result of the current image, with its capture (and DiffCut's NCut tree).
        result: what the page shows now (``base`` re-segmented with the current settings).
        method / model / name: how ``base`` was made and the uploaded file's name.
        capture: the capture settings chosen on the page for ``base`` (image size, timestep; empty: the
            service's own), which a recapture replaces.
        backbone_passes: backbone passes run for the current image (one per upload and per capture-setting
            change; re-segmenting adds none).
        overrides / labels: the method settings and vocabulary of the current result (what an edit re-runs).
        edits: local edits of the current result (:mod:`zeroseg.web.edits`), in the order made.
        picked / previous: the segment ids picked last and before it (DiffSeg merges the two).
        cut_results: recent results by the cut of the segment tree they come from, oldest first (see
            ``zeroseg.web.service.CUT_CACHE_SIZE``); emptied with every new capture.
    """

    folder: Path
    base: Any = None
    result: Any = None
    method: str | None = None
    model: str | None = None
    name: str | None = None
    capture: dict[str, Any] = field(default_factory=dict)
    backbone_passes: int = 0
    downloads: dict[str, Path] = field(default_factory=dict)
    tree_written: Any = None
    overrides: dict[str, Any] = field(default_factory=dict)
    labels: str = ""
    edits: list[dict[str, Any]] = field(default_factory=list)
    edited_tree: Any = None
    picked: int | None = None
    previous: int | None = None
    overlay: Any = None
    cut_results: OrderedDict[Any, Any] = field(default_factory=OrderedDict)
    touched: float = field(default_factory=time.monotonic)

    def keep(
        self, result: Any, *, method: str, model: str | None, name: str, capture: dict[str, Any] | None = None
    ) -> None:
        """Keep a fresh result with its capture as the base of later re-segmentations (a new image: one pass)."""
        self.base, self.result = result, result
        self.method, self.model, self.name = method, model, name
        self.capture = dict(capture or {})
        self.backbone_passes = 1
        self.cut_results.clear()

    def recaptured(self, result: Any, *, model: str | None, capture: dict[str, Any]) -> None:
        """Replace the base by a new capture of the same image (one more pass); edits and picks of the old
        capture no longer apply."""
        self.base, self.result = result, result
        self.model, self.capture = model, dict(capture)
        self.backbone_passes += 1
        self.tree_written, self.edits, self.edited_tree = None, [], None
        self.picked = self.previous = self.overlay = None
        self.cut_results.clear()

    def clear_result(self) -> None:
        """Forget the image, its capture and the downloads written for it."""
        self.base = self.result = None
        self.method = self.model = self.name = None
        self.capture = {}
        self.backbone_passes = 0
        self.downloads, self.tree_written = {}, None
        self.overrides, self.labels, self.edits, self.edited_tree = {}, "", [], None
        self.picked = self.previous = self.overlay = None
        self.cut_results.clear()
        for path in self.folder.glob("*"):
            if path.is_file():
                path.unlink(missing_ok=True)

    def memory_bytes(self) -> int:
        """Bytes held by the kept arrays and tensors (capture, NCut tree, image, label maps)."""
        total = 0
        seen: set[int] = set()
        for result in (self.base, self.result, *self.cut_results.values()):
            if result is None:
                continue
            for value in (result.labels, result.image, *(result.capture or {}).values()):
                total += _nbytes(value, seen)
            tree = getattr(result.tree, "base", result.tree)  # an edited tree shares the base tree's regions
            if tree is not None and id(tree) not in seen:
                seen.add(id(tree))
                total += sum(node.members.numel() * node.members.element_size() for node in tree.nodes)
        return total


def _nbytes(value: Any, seen: set[int]) -> int:
    if value is None or id(value) in seen:
        return 0
    seen.add(id(value))
    if hasattr(value, "element_size"):
        return int(value.numel() * value.element_size())
    if hasattr(value, "nbytes"):
        return int(value.nbytes)
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v, seen) for v in value)
    return 0


class SessionStore:
    """The sessions of one server, each with a folder under ``root`` (a new temporary folder by default)."""

    def __init__(self, root: str | Path | None = None, *, idle_seconds: float = IDLE_SECONDS) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="zeroseg-web-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Session:
        """The session of ``key`` (created on first use); idle sessions of others are dropped on the way."""
        now = time.monotonic()
        with self._lock:
            for other in [k for k, s in self._sessions.items() if k != key and now - s.touched > self.idle_seconds]:
                self._drop(other)
            session = self._sessions.get(key)
            if session is None:
                folder = Path(tempfile.mkdtemp(prefix="session-", dir=self.root))
                session = self._sessions[key] = Session(folder=folder)
            session.touched = now
            return session

    def close(self, key: str) -> None:
        """End a session: free its capture and delete its folder."""
        with self._lock:
            self._drop(key)

    def close_all(self) -> None:
        """End every session and delete the root folder (server shutdown)."""
        with self._lock:
            for key in list(self._sessions):
                self._drop(key)
        shutil.rmtree(self.root, ignore_errors=True)

    def __len__(self) -> int:
        return len(self._sessions)

    def _drop(self, key: str) -> None:
        session = self._sessions.pop(key, None)
        if session is not None:
            shutil.rmtree(session.folder, ignore_errors=True)
            logger.debug("session closed, folder %s removed", session.folder.name)
