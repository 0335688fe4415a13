"""Compiled PAMR inner loops (numba), giving the same float32 bits as the tensor formulation in
``zeroseg.refine.pamr``.

The tensor form runs one torch operation per neighbour tap over a band of rows, so every tap re-reads and
re-writes the whole band of sums (memory bound). Here one pass over a row of pixels takes the eight taps of a
dilation at once and keeps the running sum in registers; the loops over pixels are contiguous in every
array, so LLVM vectorises them. The sums run tap by tap in the same order as the tensor form (``out = s_0 *
w_0``, then ``out = fma(s_p, w_p, out)``, as torch's ``addcmul_``), so both give the same bits. Square roots
and the softmax stay in torch: its vectorised ``sqrt`` and ``exp`` round differently from libm.

Each kernel fills rows ``[y0, y1)`` of its output and releases the GIL, so :func:`run_rows` splits the rows
over a thread pool (torch's thread count). The machine code is cached on disk (``cache=True``): only the
first run after installation compiles.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


@numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def channel_variance(padded, dys, dxs, ndil, pad, y0, y1, out):  # pragma: no cover - compiled
    """Unbiased variance per channel of the 9 * ndil window samples (centre counted ndil times).

    padded: (3, H + 2 pad, W + 2 pad) replicate-padded image; out: (3, H, W).
    """
    taps = dys.shape[0]
    width = out.shape[2]
    count = np.float32(9 * ndil)
    weight = np.float32(ndil)
    mean = np.empty(width, np.float32)
    for c in range(3):
        for y in range(y0, y1):
            centre = padded[c, pad + y, pad : pad + width]
            spread = out[c, y]
            for x in range(width):
                mean[x] = centre[x] * weight
            for p in range(taps):
                row = padded[c, pad + y + dys[p], pad + dxs[p] : pad + dxs[p] + width]
                for x in range(width):
                    mean[x] = mean[x] + row[x]
            for x in range(width):
                mean[x] = mean[x] / count
            for x in range(width):
                t = centre[x] - mean[x]
                spread[x] = t * t * weight
            for p in range(taps):
                row = padded[c, pad + y + dys[p], pad + dxs[p] : pad + dxs[p] + width]
                for x in range(width):
                    t = row[x] - mean[x]
                    spread[x] = spread[x] + t * t
            for x in range(width):
                spread[x] = spread[x] / (count - np.float32(1))


@numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def affinity_logits(padded, denom, dys, dxs, pad, base, y0, y1, out):  # pragma: no cover - compiled
    """``out[p, y - base] = -(sum_c |I_c - I_p,c| / denom_c) / 3`` for image rows y in [y0, y1).

    padded: (3, H + 2 pad, W + 2 pad) image; denom: (3, H, W); out: (P, rows, W), a band from row ``base``.
    """
    taps = dys.shape[0]
    width = out.shape[2]
    third = np.float32(-1.0 / 3.0)
    for y in range(y0, y1):
        k0 = padded[0, pad + y, pad : pad + width]
        k1 = padded[1, pad + y, pad : pad + width]
        k2 = padded[2, pad + y, pad : pad + width]
        d0, d1, d2 = denom[0, y], denom[1, y], denom[2, y]
        for p in range(taps):
            r, c = pad + y + dys[p], pad + dxs[p]
            v0 = padded[0, r, c : c + width]
            v1 = padded[1, r, c : c + width]
            v2 = padded[2, r, c : c + width]
            o = out[p, y - base]
            # channel by channel: few arrays per loop keep LLVM's alias checks within its vectorising budget
            for x in range(width):
                o[x] = abs(k0[x] - v0[x]) / d0[x]
            for x in range(width):
                o[x] = o[x] + abs(k1[x] - v1[x]) / d1[x]
            for x in range(width):
                o[x] = (o[x] + abs(k2[x] - v2[x]) / d2[x]) * third


@numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy", fastmath={"contract"})
def propagate(src, weights, dys, dxs, pad, y0, y1, out):  # pragma: no cover - compiled
    """One PAMR step for rows [y0, y1): ``out[k, y, x] = sum_p w[p, y, x] * src[k, y + dy_p, x + dx_p]``.

    src / out: (K, H + 2 pad, W + 2 pad) padded masks (the interior of ``out`` is written); weights: (P, H, W)
    with P a multiple of 8.
    """
    taps, _, width = weights.shape
    for y in range(y0, y1):
        for g in range(0, taps, 8):
            w0, w1, w2, w3 = weights[g, y], weights[g + 1, y], weights[g + 2, y], weights[g + 3, y]
            w4, w5, w6, w7 = weights[g + 4, y], weights[g + 5, y], weights[g + 6, y], weights[g + 7, y]
            r0, r1, r2, r3 = pad + y + dys[g], pad + y + dys[g + 1], pad + y + dys[g + 2], pad + y + dys[g + 3]
            r4, r5, r6, r7 = pad + y + dys[g + 4], pad + y + dys[g + 5], pad + y + dys[g + 6], pad + y + dys[g + 7]
            c0, c1, c2, c3 = pad + dxs[g], pad + dxs[g + 1], pad + dxs[g + 2], pad + dxs[g + 3]
            c4, c5, c6, c7 = pad + dxs[g + 4], pad + dxs[g + 5], pad + dxs[g + 6], pad + dxs[g + 7]
            for k in range(src.shape[0]):
                o = out[k, pad + y, pad : pad + width]
                s0, s1 = src[k, r0, c0 : c0 + width], src[k, r1, c1 : c1 + width]
                s2, s3 = src[k, r2, c2 : c2 + width], src[k, r3, c3 : c3 + width]
                s4, s5 = src[k, r4, c4 : c4 + width], src[k, r5, c5 : c5 + width]
                s6, s7 = src[k, r6, c6 : c6 + width], src[k, r7, c7 : c7 + width]
                if g == 0:  # the first tap is a product, as torch.mul(..., out=) in the tensor form
                    for x in range(width):
                        o[x] = s0[x] * w0[x]
                    for x in range(width):
                        o[x] = (o[x] + s1[x] * w1[x] + s2[x] * w2[x] + s3[x] * w3[x] + s4[x] * w4[x]
                                + s5[x] * w5[x] + s6[x] * w6[x] + s7[x] * w7[x])  # fmt: skip
                else:
                    for x in range(width):
                        o[x] = (o[x] + s0[x] * w0[x] + s1[x] * w1[x] + s2[x] * w2[x] + s3[x] * w3[x]
                                + s4[x] * w4[x] + s5[x] * w5[x] + s6[x] * w6[x] + s7[x] * w7[x])  # fmt: skip


def _executor(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(threads, thread_name_prefix="zeroseg-pamr"), threads
        return _pool


def run_rows(kernel, rows: tuple[int, int], *args) -> None:
    """Run ``kernel(*args[:-1], y0, y1, args[-1])`` over ``rows`` (start, stop), split across torch's threads."""
    first, stop = rows
    height = stop - first
    threads = max(1, min(torch.get_num_threads(), height))
    if threads == 1:
        kernel(*args[:-1], first, stop, args[-1])
        return
    parts = min(height, 8 * threads)  # short chunks keep the threads on neighbouring rows (shared cache)
    cuts = [first + height * i // parts for i in range(parts + 1)]
    pool = _executor(threads)
    futures = [pool.submit(kernel, *args[:-1], cuts[i], cuts[i + 1], args[-1]) for i in range(parts)]
    for future in futures:
        future.result()


def offsets_arrays(offsets: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(row offsets, column offsets) as int64 arrays."""
    dys = np.fromiter((dy for dy, _ in offsets), dtype=np.int64, count=len(offsets))
    dxs = np.fromiter((dx for _, dx in offsets), dtype=np.int64, count=len(offsets))
    return dys, dxs


def warm_up() -> None:
    """Call every kernel once on tiny arrays: loads the cached machine code (or compiles it) ahead of real work."""
    image = np.zeros((3, 5, 5), np.float32)
    offsets = np.zeros(8, np.int64)
    maps = np.ones((3, 1, 1), np.float32)
    channel_variance(image, offsets, offsets, 1, 2, 0, 1, maps)
    affinity_logits(image, maps, offsets, offsets, 2, 0, 0, 1, np.empty((8, 1, 1), np.float32))
    propagate(image, np.empty((8, 1, 1), np.float32), offsets, offsets, 2, 0, 1, np.empty_like(image))
