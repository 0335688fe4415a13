"""Peak resident memory of this process over a window, for the benchmarks' "peak extra" columns.

Linux only: ``clear_refs`` 5 resets the kernel's peak-RSS counter (``VmHWM``), so the peak read later is the
workload's own, not one reached while loading inputs. Where that is unavailable, ``ru_maxrss`` is used; it only
grows, so a peak during loading may hide part of the workload's.
"""

from __future__ import annotations

import resource
from pathlib import Path


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakWindow:
    """Starts a window at construction; :meth:`extra_mib` is the peak resident set since then minus the start."""

    def __init__(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._exact = _status_kib("VmHWM") is not None
        except OSError:
            self._exact = False
        self._baseline = self._read(current=True)

    def _read(self, *, current: bool = False) -> int:
        if self._exact:
            return _status_kib("VmRSS" if current else "VmHWM") or 0
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def extra_mib(self) -> float:
        """Peak growth of the resident set since the window started, in MiB."""
        return (self._read() - self._baseline) / 1024
