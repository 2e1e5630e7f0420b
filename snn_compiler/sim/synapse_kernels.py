"""The synaptic kernels of the event-driven engine: currents from spikes or input levels (numba;
:mod:`.numba_kernels` re-exports them, :mod:`.fast` schedules them).

A scatter adds a weight row per nonzero input (a spike adds its row without a multiply); the dense
passes (a depthwise conv, a window sum, the im2col of an int8 product) run over every value. Maps
are channels-last (H, W, C), so a spike's fan-out is a contiguous run of output channels that numba
vectorizes. All are exact in the integer types the plan chose (its bound proves the sums fit).
"""
from __future__ import annotations

import types

import numba as nb
import numpy as np

from .vector_scan import AVAILABLE as VECTOR_SCAN, LANES, compress_nonzeros

# The scatter's helpers are inlined where they are called (numba's inline="always", two kernels each):
# as calls of their own, per row, LLVM inlined them no more once they grew the int16 blocks, and short
# rows (12 inputs, 65,536 frames) ran in 3.3 ms against 1.0 ms inlined; 700-input event frames 18 -> 13 ms.


@nb.njit(inline="always")
def _nonzeros(x_row, idx, vals):
    """The nonzero entries of ``x_row`` in order: their positions into ``idx[:k]``, values into
    ``vals[:k]``; returns (k, their common value, or 0 when they differ). Without a branch per value:
    a scan that tested each value mispredicted twice per event (an event stream at 5% spent more time
    there than adding). Contiguous rows go LANES values at a time where the CPU compresses them in one
    instruction (:mod:`.vector_scan`), the rest value by value. (A two-level scan, nonzero 8-byte
    words first, or a bit mask's set bits: 1.5-2x slower than the scalar scan on 5% event frames.)"""
    k = 0
    start = 0
    if VECTOR_SCAN and x_row.strides[0] == x_row.itemsize:  # (an event frame of 700 float32 values,
        while start + LANES <= x_row.shape[0]:              # 8,192 frames: 4.8 -> 3.0 ms)
            k += compress_nonzeros(x_row, start, idx, k)
            start += LANES
    for i in range(start, x_row.shape[0]):
        idx[k] = i
        k += x_row[i] != 0
    common = x_row[idx[0]] if k else 0
    for j in range(k):
        v = x_row[idx[j]]
        vals[j] = v
        if v != common:
            common = 0
    return k, common


@nb.njit(inline="always")
def _add_rows(idx, k, wt, dst):
    """dst += the sum of weight rows idx[:k], four rows per pass over ``dst`` (read and written a
    quarter as often; exact: any partial sum is bounded by the bound that chose dst's dtype)."""
    n = dst.shape[0]
    j = 0
    while j + 4 <= k:
        a, b, c, d = wt[idx[j]], wt[idx[j + 1]], wt[idx[j + 2]], wt[idx[j + 3]]
        for o in range(n):
            dst[o] += a[o] + b[o] + c[o] + d[o]
        j += 4
    while j < k:
        a = wt[idx[j]]
        for o in range(n):
            dst[o] += a[o]
        j += 1


# int8 rows summed in int16 lanes, this many at a time: |sum| <= 256 * 128 = 2**15 (exact in int16,
# whose lanes hold twice int32's per vector: 5% event frames through a 700 x 256 projection, 25,600
# frames at 1 thread, 17.8 -> 15.9 ms; a 256-neuron recurrent layer's own spikes 17.5 -> 14.9 ms)
NARROW_ROWS = 256


@nb.njit(inline="always")
def _add_rows_narrow(idx, k, wt, dst, acc):
    """:func:`_add_rows` for int8 ``wt``: blocks of NARROW_ROWS rows summed in ``acc`` (int16 scratch of
    dst's length), each block's sum then added to ``dst``."""
    for j in range(0, k, NARROW_ROWS):
        acc[:] = 0
        _add_rows(idx[j:], min(NARROW_ROWS, k - j), wt, acc)
        for o in range(dst.shape[0]):
            dst[o] += acc[o]


@nb.njit(inline="always")
def _sum_rows(idx, k, wt, dst, acc):
    """dst += the sum of weight rows idx[:k]: in int16 blocks for int8 weights (``wt.itemsize`` is a
    constant of the compiled type, so each build keeps one branch)."""
    if wt.itemsize == 1:
        _add_rows_narrow(idx, k, wt, dst, acc)
    else:
        _add_rows(idx, k, wt, dst)


# Rows shorter than this are scanned value by value: the branch-free scan and the four-row blocks pay
# off on long rows (an event frame of 700 inputs: 26 -> 22 ms) and cost a fifth of the time on short
# ones (the Braille-sized net's 12 inputs and 40 recurrent neurons).
COMPACT_MIN = 128


@nb.njit(inline="always")
def _add_events(x_row, wt, gain, dst, idx, vals, rows, acc):
    """dst += sum over nonzero x_row[i] of x_row[i] * gain * wt[i] (``gain``: the factor the weights share,
    :func:`mantissas`); ``idx``, ``vals`` scratch of x_row's length, ``rows`` of dst's (dst's dtype),
    ``acc`` of dst's length (int16). Inputs sharing one value v (spikes, an event frame's levels) sum
    their rows first, then add v * gain times the sum (or the sum itself, when that is 1); other inputs
    multiply each row."""
    if x_row.shape[0] < COMPACT_MIN:
        for i in range(x_row.shape[0]):
            v = x_row[i]
            if v == 0:
                continue
            src = wt[i]
            if gain != 1:  # (a separate name: v keeps x's narrow type, whose products vectorize narrower)
                vg = v * gain
                for o in range(src.shape[0]):
                    dst[o] += vg * src[o]
            elif v == 1:
                for o in range(src.shape[0]):
                    dst[o] += src[o]
            else:
                for o in range(src.shape[0]):
                    dst[o] += v * src[o]
        return
    k, common = _nonzeros(x_row, idx, vals)
    _add_indexed(idx, k, vals, common, wt, gain, dst, rows, acc)


@nb.njit(inline="always")
def _add_indexed(idx, k, vals, common, wt, gain, dst, rows, acc):
    """dst += sum over j < k of vals[j] * gain * wt[idx[j]], or, when every value is ``common`` (nonzero),
    common * gain times the rows' sum (:func:`_add_events` after its scan; a sequence's frames reach it
    with their levels: numba_kernels._add_frame)."""
    scale = common * gain
    if scale == 1:
        _sum_rows(idx, k, wt, dst, acc)
        return
    n = dst.shape[0]
    if common != 0 and wt.itemsize == 1 and k <= NARROW_ROWS and acc.shape[0] == n:
        acc[:] = 0  # (one int16 block holds the whole sum: no int32 copy of it to zero, add and reread;
        _add_rows(idx, k, wt, acc)  # SHD-sized recurrent net, 1 thread: 38 -> 36.5 ms)
        for o in range(n):
            dst[o] += scale * acc[o]
        return
    if common != 0:
        rows[:] = 0
        _sum_rows(idx, k, wt, rows, acc)
        for o in range(n):
            dst[o] += scale * rows[o]
        return
    j = 0
    while j + 4 <= k:
        a, b, c, d = wt[idx[j]], wt[idx[j + 1]], wt[idx[j + 2]], wt[idx[j + 3]]
        va, vb, vc, vd = vals[j] * gain, vals[j + 1] * gain, vals[j + 2] * gain, vals[j + 3] * gain
        for o in range(n):
            dst[o] += va * a[o] + vb * b[o] + vc * c[o] + vd * d[o]
        j += 4
    while j < k:
        a, va = wt[idx[j]], vals[j] * gain
        for o in range(n):
            dst[o] += va * a[o]
        j += 1


def mantissas(w: np.ndarray):
    """(m, gain) with ``w == m * gain`` exactly and m int8, when w's weights do not fit int8 but share a
    factor that brings them there (8-bit synapses scaled by a power of two: Loihi's weight exponent, or a
    recurrent layer sharing its threshold's scale with a wider input projection); else (w, 1). The
    scatter then reads a quarter or half the bytes and sums int8 rows in int16 lanes."""
    if w.dtype == np.int8 or not w.size or w.dtype.kind not in "iu":
        return w, 1
    nonzero = w[w != 0].astype(np.int64)
    if nonzero.size > 4096 and np.gcd.reduce(np.abs(nonzero[:4096])) <= 1:
        return w, 1  # (no common factor: a big layer's weights need not all be read)
    gain = int(np.gcd.reduce(np.abs(nonzero))) if nonzero.size else 1
    if gain <= 1 or int(nonzero.min()) // gain < -128 or int(nonzero.max()) // gain > 127:
        return w, 1
    return (w // gain).astype(np.int8), gain


EVENT_ROWS = 64  # frames per parallel task of dense_events (each task allocates its scratch once)


def dense_events(x, wt, gain, out):
    """out[f] = sum over nonzero x[f, i] of x[f, i] * gain * wt[i]; x (F, In), wt (In, Out). Each row of
    out is written (zeroed here, while it is in cache, rather than in a pass of its own)."""
    n_f, n_in = x.shape
    for b in nb.prange((n_f + EVENT_ROWS - 1) // EVENT_ROWS):
        idx, vals, rows = np.empty(n_in, np.int64), np.empty(n_in, out.dtype), np.empty(out.shape[1], out.dtype)
        acc = np.empty(out.shape[1] if n_in >= COMPACT_MIN else 0, np.int16)  # (short rows do not sum blocks)
        for f in range(b * EVENT_ROWS, min(n_f, (b + 1) * EVENT_ROWS)):
            out[f] = 0
            _add_events(x[f], wt, gain, out[f], idx, vals, rows, acc)


@nb.njit(parallel=True, cache=True)
def conv_events(x, wr, out, ytab, xtab, cg):
    """Scatter each nonzero input of x (F, H, W, C) through wr (C, kh, kw, og) into out (F, Ho, Wo, O).

    out[oy, ox] gathers in[oy*sh - ph + ky*dh, ox*sw - pw + kx*dw]; inverted, input row y
    reaches output row ytab[y, ky] (or nowhere, -1) through kernel row ky; xtab likewise.
    """
    n_f, h, w, c_in = x.shape
    kh, kw, og = wr.shape[1], wr.shape[2], wr.shape[3]
    for f in nb.prange(n_f):
        o = out[f]
        for y in range(h):
            for xx in range(w):
                for c in range(c_in):
                    v = x[f, y, xx, c]
                    if v == 0:
                        continue
                    g0 = (c // cg) * og
                    for ky in range(kh):
                        oy = ytab[y, ky]
                        if oy < 0:
                            continue
                        for kx in range(kw):
                            ox = xtab[xx, kx]
                            if ox < 0:
                                continue
                            dst = o[oy, ox, g0:g0 + og]
                            src = wr[c, ky, kx]
                            if v == 1:
                                for j in range(og):
                                    dst[j] += src[j]
                            else:
                                for j in range(og):
                                    dst[j] += v * src[j]


@nb.njit(parallel=True, cache=True)
def im2col_hwc(x, kh, kw, sh, sw, ph, pw, dh, dw, cols):
    """cols[f, oy, ox, (ky * kw + kx) * C + c] = x[f, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw, c], or 0
    outside the input (x (F, H, W, C), cols (F, Ho, Wo, kh*kw*C)): a conv's input as rows of a product."""
    n_f, ho, wo = cols.shape[0], cols.shape[1], cols.shape[2]
    h, w, c_in = x.shape[1], x.shape[2], x.shape[3]
    for j in nb.prange(n_f * ho):
        f, oy = j // ho, j % ho
        for ox in range(wo):
            row = cols[f, oy, ox]
            for ky in range(kh):
                y = oy * sh - ph + ky * dh
                for kx in range(kw):
                    xx = ox * sw - pw + kx * dw
                    dst = row[(ky * kw + kx) * c_in:(ky * kw + kx + 1) * c_in]
                    if y < 0 or y >= h or xx < 0 or xx >= w:
                        dst[:] = 0
                    else:
                        src = x[f, y, xx]
                        for c in range(c_in):
                            dst[c] = src[c]


@nb.njit(parallel=True, cache=True)
def depthwise_dense(x, w, used, out, sh, sw, ph, pw, dh, dw):
    """out[f, oy, ox, c] = sum over taps of x[f, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw, c] * w[ky, kx, c]
    (zeros outside the input): a depthwise conv (one input channel per output channel) on every value,
    vectorized along the channels (x (F, H, W, C), w (kh, kw, C), out (F, Ho, Wo, C) zeroed), skipping
    the taps whose weights are zero in every channel (``used`` (kh, kw): a max pool's selections)."""
    n_f, ho, wo, c = out.shape
    h, wd, kh, kw = x.shape[1], x.shape[2], w.shape[0], w.shape[1]
    for j in nb.prange(n_f * ho):
        f, oy = j // ho, j % ho
        for ky in range(kh):
            y = oy * sh - ph + ky * dh
            if y < 0 or y >= h:
                continue
            for ox in range(wo):
                dst = out[f, oy, ox]
                for kx in range(kw):
                    xx = ox * sw - pw + kx * dw
                    if xx < 0 or xx >= wd or not used[ky, kx]:
                        continue
                    src, wt = x[f, y, xx], w[ky, kx]
                    for k in range(c):
                        dst[k] += src[k] * wt[k]


@nb.njit(parallel=True, cache=True)
def grouped_dense(x, w, used, out, sh, sw, ph, pw, dh, dw):
    """out[f, oy, ox, g*og + s] = sum over taps and i < cg of x[f, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw, g*cg + i]
    * w[ky, kx, s, i, g] (zeros outside the input): a conv of G groups of cg inputs and og outputs, on
    every value, one output slot s at a time along the groups (contiguous where cg is 1), skipping the
    (tap, slot, input) whose weights are zero in every group (``used``: a max pool's comparisons read 2
    of 9 taps per slot). x (F, H, W, G*cg), w (kh, kw, og, cg, G), used (kh, kw, og, cg), out (F, Ho, Wo,
    G*og), every value written. In blocks of GROUPED_ROWS output rows, one accumulator each (one per
    row had cost an allocation per row), and the contiguous cases (cg = 1, og = 1) as loops of their
    own: a max pool's 1 -> 4 comparisons over 2,048 frames of 24 x 32 x 32 spikes, 2 threads, 40 -> 26 ms,
    its 4 -> 1 gathers 16 -> 11 ms."""
    n_f, ho, wo, c = out.shape
    h, wd, kh, kw, og, cg = x.shape[1], x.shape[2], w.shape[0], w.shape[1], w.shape[2], w.shape[3]
    groups = c // og
    rows = n_f * ho
    for b in nb.prange((rows + GROUPED_ROWS - 1) // GROUPED_ROWS):
        acc = np.empty((og, groups), out.dtype)
        for j in range(b * GROUPED_ROWS, min(rows, (b + 1) * GROUPED_ROWS)):
            f, oy = j // ho, j % ho
            for ox in range(wo):
                acc[:] = 0
                for ky in range(kh):
                    y = oy * sh - ph + ky * dh
                    if y < 0 or y >= h:
                        continue
                    for kx in range(kw):
                        xx = ox * sw - pw + kx * dw
                        if xx < 0 or xx >= wd:
                            continue
                        src = x[f, y, xx]
                        for s in range(og):
                            a = acc[s]
                            for i in range(cg):
                                if not used[ky, kx, s, i]:
                                    continue
                                wt = w[ky, kx, s, i]
                                if cg == 1:
                                    for g in range(groups):
                                        a[g] += src[g] * wt[g]
                                else:
                                    for g in range(groups):
                                        a[g] += src[g * cg + i] * wt[g]
                dst = out[f, oy, ox]
                if og == 1:
                    first = acc[0]
                    for g in range(groups):
                        dst[g] = first[g]
                else:
                    for g in range(groups):
                        for s in range(og):
                            dst[g * og + s] = acc[s, g]


GROUPED_ROWS = 16   # output rows per parallel task of grouped_dense


@nb.njit(parallel=True, cache=True)
def sum_pool(x, kh, kw, sh, sw, ph, pw, out):
    """Window sums (zero padding, as count_include_pad) of x (F, H, W, C) into out (F, Ho, Wo, C)."""
    n_f, ho, wo, c = out.shape
    h, w = x.shape[1], x.shape[2]
    for f in nb.prange(n_f):
        for oy in range(ho):
            for ox in range(wo):
                dst = out[f, oy, ox]
                for i in range(kh):
                    y = oy * sh - ph + i
                    if y < 0 or y >= h:
                        continue
                    for j in range(kw):
                        xx = ox * sw - pw + j
                        if xx < 0 or xx >= w:
                            continue
                        src = x[f, y, xx]
                        for k in range(c):
                            dst[k] += src[k]


# Each of these runs its frames in parallel; a call with little work takes the serial build of the
# same function, as waking the thread pool costs more than the work.
def _renamed(fn, name):
    """The same code as another function object (numba caches a kernel under its qualified name)."""
    twin = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    twin.__qualname__ = name
    return twin


dense_events_serial = nb.njit(cache=True)(_renamed(dense_events, "dense_events_serial"))
dense_events = nb.njit(parallel=True, cache=True)(dense_events)
SERIAL_WORK = 1 << 16   # values a call touches below which the serial build runs
