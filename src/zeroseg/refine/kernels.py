"""Compiled inner loops of the refinement stage (numba), giving the same float32 bits as the tensor forms in
:mod:`zeroseg.refine.pamr` and :mod:`zeroseg.refine.upsample` (loaded through :mod:`zeroseg.refine.compiled`).

PAMR: the tensor form runs one torch operation per neighbour tap over a band of rows, so every tap re-reads
and re-writes the whole band of sums (memory bound). Here one pass over a row of pixels takes the eight taps
of a dilation at once and keeps the running sum in registers; the loops over pixels are contiguous in every
array, so LLVM vectorises them. The sums run tap by tap in the same order as the tensor form (``out = s_0 *
w_0``, then ``out = fma(s_p, w_p, out)``, as torch's ``addcmul_``), so both give the same bits. Square roots
and the softmax stay in torch: its vectorised ``sqrt`` and ``exp`` round differently from libm.

Upsampling to labels: the tensor form writes the width-upsampled maps at full output width for every source
row and then the height pass per block of rows; here the width pass of the two source rows an output row needs
is kept while consecutive output rows share them, and every output pixel's argmax is taken on the fly, so
nothing of the output's size but the labels is written. DiffCut's concept assignment
(:func:`concept_argmax`) does the same for its interpolation-matrix products, with their fused multiply-adds.

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
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

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


@intrinsic
def _fma(typingctx, a, b, c):  # pragma: no cover - compiled
    """``a * b + c`` with one rounding (LLVM's ``fma``), as torch's vectorised ``addcmul_``."""
    signature = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, sig, args):
        f32 = ir.FloatType()
        fma = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fma, args)

    return signature, codegen


@numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def _width_pass(maps, row, x0, x1, wx0, wx1, out):  # pragma: no cover - compiled
    """``out[k, x] = maps[k, row, x0[x]] * wx0[x] + maps[k, row, x1[x]] * wx1[x]`` (two products, one sum)."""
    for k in range(maps.shape[0]):
        source, target = maps[k, row], out[k]
        for x in range(out.shape[1]):
            target[x] = source[x0[x]] * wx0[x] + source[x1[x]] * wx1[x]


@numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def upsample_argmax(maps, x0, x1, wx0, wx1, y0s, y1s, wy0, wy1, y0, y1, labels):  # pragma: no cover - compiled
    """Rows [y0, y1) of ``labels[y, x] = argmax_k bilinear(maps[k])(y, x)``, first index on ties, NaN largest.

    maps: (K, h, w) float32; x0/x1/wx0/wx1 and y0s/y1s/wy0/wy1: the 1-D taps of the width and height passes
    (``zeroseg.refine.upsample.bilinear_taps``); labels: (H, W) int64. Values are computed as the tensor form
    does: the width pass ``r = m[x0] * wx0 + m[x1] * wx1`` of a source row (kept while consecutive output rows
    share it), then ``fma(r_lower, wy1, r_upper * wy0)``.
    """
    num, width = maps.shape[0], labels.shape[1]
    upper, lower = np.empty((num, width), np.float32), np.empty((num, width), np.float32)
    upper_row, lower_row = -1, -1
    best = np.empty(width, np.float32)
    for y in range(y0, y1):
        if y0s[y] != upper_row:
            if y0s[y] == lower_row:  # the rows move down by one: the lower row becomes the upper one
                upper, lower, upper_row, lower_row = lower, upper, lower_row, upper_row
            else:
                _width_pass(maps, y0s[y], x0, x1, wx0, wx1, upper)
                upper_row = y0s[y]
        if y1s[y] != lower_row:
            _width_pass(maps, y1s[y], x0, x1, wx0, wx1, lower)
            lower_row = y1s[y]
        out, w0, w1 = labels[y], wy0[y], wy1[y]
        for k in range(num):
            a, b = upper[k], lower[k]
            for x in range(width):
                value = _fma(b[x], w1, a[x] * w0)
                if k == 0:
                    best[x] = value
                    out[x] = 0
                elif value > best[x] or (value != value and best[x] == best[x]):
                    best[x] = value
                    out[x] = k


CONCEPT_TILE = 256
"""Output columns per tile of :func:`concept_argmax` (the running maxima of a tile stay in the L1/L2 cache)."""


@numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
def concept_argmax(scores, x0, x1, wx0, wx1, y0s, y1s, wy0, wy1, y0, y1, labels):  # pragma: no cover - compiled
    """Rows [y0, y1) of DiffCut's concept assignment: ``labels[y, x] = argmax_k`` of the (K, h, w) ``scores``
    bilinearly upsampled through two interpolation matrices, first index on ties, NaN largest.

    Each matrix row has at most two non-zero entries, ``(x0, wx0)`` before ``(x1, wx1)`` (``x1 == x0`` and
    ``wx1 == 0`` where it has one); a matrix product sums its terms in index order with fused multiply-adds, so
    a value is ``fma(s[x1], wx1, s[x0] * wx0)`` along the width, then the same along the height: the bits of
    ``(R @ scores @ C.T)``. Output rows that share their two source rows are done together, in column tiles:
    the width pass of a tile is computed once per concept and the running maxima stay in cache.
    """
    num, width = scores.shape[0], labels.shape[1]
    tile = min(width, CONCEPT_TILE)
    upper, lower = np.empty(tile, np.float32), np.empty(tile, np.float32)
    best = np.empty((max(1, y1 - y0), tile), np.float32)
    index = np.empty((max(1, y1 - y0), tile), np.int64)
    y = y0
    while y < y1:
        stop = y
        while stop < y1 and y0s[stop] == y0s[y] and y1s[stop] == y1s[y]:
            stop += 1
        rows = stop - y
        for t0 in range(0, width, tile):
            count = min(width, t0 + tile) - t0
            for k in range(num):
                top, bottom = scores[k, y0s[y]], scores[k, y1s[y]]
                for x in range(count):
                    c = t0 + x
                    upper[x] = _fma(top[x1[c]], wx1[c], top[x0[c]] * wx0[c])
                    lower[x] = _fma(bottom[x1[c]], wx1[c], bottom[x0[c]] * wx0[c])
                for j in range(rows):
                    w0, w1 = wy0[y + j], wy1[y + j]
                    b, o = best[j], index[j]
                    if k == 0:
                        for x in range(count):
                            b[x] = _fma(lower[x], w1, upper[x] * w0)
                            o[x] = 0
                    else:
                        for x in range(count):
                            value = _fma(lower[x], w1, upper[x] * w0)
                            if value > b[x] or (value != value and b[x] == b[x]):
                                b[x] = value
                                o[x] = k
            for j in range(rows):
                out = labels[y + j]
                for x in range(count):
                    out[t0 + x] = index[j, x]
        y = stop


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
    taps, weights = np.zeros(1, np.int64), np.ones(1, np.float32)
    upsample_argmax(maps, taps, taps, weights, weights, taps, taps, weights, weights, 0, 1, np.empty((1, 1), np.int64))
    concept_argmax(maps, taps, taps, weights, weights, taps, taps, weights, weights, 0, 1, np.empty((1, 1), np.int64))
