"""Compiled PAMR propagation step (numba); imported only when numba is installed.

``propagate(src, weights, rows, cols, out)`` computes ``out[y, x, k] = sum_p w[y, x, p] * src[rows[p, y],
cols[p, x], k]`` for every pixel. The masks are innermost (``(H, W, K)``, K a multiple of 4), so each
neighbour tap is one contiguous vector load; the weights are pixel-major (``(H, W, P)``), read once per pixel
and iteration; the clamped source indices ``rows`` (P, H) / ``cols`` (P, W) are replicate padding without a
padded buffer.

The sum runs tap by tap in the order of the tensor formulation in ``zeroseg.refine.pamr`` (``out = s_0 *
w_0``, then ``out = fma(s_p, w_p, out)``), so both give the same float32 bits. The compiled code is cached on
disk (``cache=True``): only the first run after installation compiles.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, nogil=True, boundscheck=False, fastmath={"contract"})
def propagate(src: np.ndarray, weights: np.ndarray, rows: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    height, width, taps = weights.shape
    num = src.shape[2]
    wide = num - num % 8
    for y in numba.prange(height):
        for x in range(width):
            for kb in range(0, wide, 8):
                sy, sx, wp = rows[0, y], cols[0, x], weights[y, x, 0]
                s = src[sy, sx]
                a0, a1, a2, a3 = s[kb] * wp, s[kb + 1] * wp, s[kb + 2] * wp, s[kb + 3] * wp
                a4, a5, a6, a7 = s[kb + 4] * wp, s[kb + 5] * wp, s[kb + 6] * wp, s[kb + 7] * wp
                for p in range(1, taps):
                    s, wp = src[rows[p, y], cols[p, x]], weights[y, x, p]
                    a0 += s[kb] * wp
                    a1 += s[kb + 1] * wp
                    a2 += s[kb + 2] * wp
                    a3 += s[kb + 3] * wp
                    a4 += s[kb + 4] * wp
                    a5 += s[kb + 5] * wp
                    a6 += s[kb + 6] * wp
                    a7 += s[kb + 7] * wp
                o = out[y, x]
                o[kb], o[kb + 1], o[kb + 2], o[kb + 3] = a0, a1, a2, a3
                o[kb + 4], o[kb + 5], o[kb + 6], o[kb + 7] = a4, a5, a6, a7
            if wide < num:  # remaining 4 masks
                kb = wide
                sy, sx, wp = rows[0, y], cols[0, x], weights[y, x, 0]
                s = src[sy, sx]
                a0, a1, a2, a3 = s[kb] * wp, s[kb + 1] * wp, s[kb + 2] * wp, s[kb + 3] * wp
                for p in range(1, taps):
                    s, wp = src[rows[p, y], cols[p, x]], weights[y, x, p]
                    a0 += s[kb] * wp
                    a1 += s[kb + 1] * wp
                    a2 += s[kb + 2] * wp
                    a3 += s[kb + 3] * wp
                o = out[y, x]
                o[kb], o[kb + 1], o[kb + 2], o[kb + 3] = a0, a1, a2, a3


def set_threads(count: int) -> None:
    """Run the compiled step on ``count`` threads (capped at numba's pool size)."""
    numba.set_num_threads(max(1, min(int(count), numba.config.NUMBA_NUM_THREADS)))
