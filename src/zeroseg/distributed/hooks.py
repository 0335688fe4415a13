"""Ready-made ``before_batch`` hooks: each is called in a worker with the image ids of a batch it is about to do.

- :class:`KillOnce` kills its worker process the first time it meets an image (fault injection: check that a
  dead worker's batch is redone elsewhere and nothing is lost);
- :class:`KillAlways` kills its worker process every time it meets an image (an image that crashes whatever
  worker takes it: check that retries are bounded and the rest of its batch is still written);
- :class:`RecordBatches` writes each batch's image ids to a file (which worker did what, and how often).

What they keep (a marker, records, kills) is kept in files, so it survives the worker processes they run in.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KillOnce:
    """Kill the worker (SIGKILL, as a crash or the OOM killer would) the first time ``image_id`` comes up.

    ``marker`` is created just before, so the batch's second attempt goes through; its content names the
    killed process.
    """

    marker: str
    image_id: str

    def __call__(self, image_ids: list[str]) -> None:
        if self.image_id not in image_ids:
            return
        try:
            descriptor = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"{socket.gethostname()}:{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class KillAlways:
    """Kill the worker (SIGKILL) every time ``image_id`` comes up, as a decoder crash or an image too large for
    memory would.

    With ``folder``, a file (``<host>-<pid>.txt``) is created there just before each kill, so the driver can
    count them.
    """

    image_id: str
    folder: str | None = None

    def __call__(self, image_ids: list[str]) -> None:
        if self.image_id not in image_ids:
            return
        if self.folder is not None:
            folder = Path(self.folder)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{socket.gethostname()}-{os.getpid()}.txt").write_text(f"{self.image_id}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    def kills(self) -> int:
        """How many workers it killed (read back in the driver; needs ``folder``)."""
        return len(list(Path(self.folder).glob("*.txt"))) if self.folder is not None else 0


@dataclass(frozen=True)
class RecordBatches:
    """Write each batch's image ids, one a line, to a new file in ``folder`` (``<host>-<pid>-<time>.txt``)."""

    folder: str

    def __call__(self, image_ids: list[str]) -> None:
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}.txt"
        (folder / name).write_text("".join(f"{image_id}\n" for image_id in image_ids))

    def batches(self) -> list[list[str]]:
        """Every recorded batch (read back in the driver)."""
        return [path.read_text().split() for path in sorted(Path(self.folder).glob("*.txt"))]
