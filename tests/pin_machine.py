"""Which float kernels a pinned digest was computed with: torch build, CPU vendor and vector instruction set.

Bit-for-bit pins of float computations hold for one set of kernels: torch and MKL pick different code paths
by CPU vendor and instruction set, and those round differently in the last bits (for DiffCut, last bits can
move an NCut threshold). Pins are therefore kept per key; on a machine without pins the tests skip.
"""

from __future__ import annotations

import platform

import pytest
import torch


def float_kernels_key() -> str:
    """``"torch <version>, <CPU vendor>, <capability>"``, e.g. ``"torch 2.13.0+cpu, AuthenticAMD, AVX512"``."""
    return f"torch {torch.__version__}, {_cpu_vendor()}, {torch.backends.cpu.get_cpu_capability()}"


def pins_for_this_machine(pins_by_key: dict) -> dict:
    """The pins recorded with this machine's float kernels; skips the test where none were recorded."""
    key = float_kernels_key()
    if key not in pins_by_key:
        pytest.skip(f"no pins recorded for {key} (recorded: {'; '.join(sorted(pins_by_key))})")
    return pins_by_key[key]


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
