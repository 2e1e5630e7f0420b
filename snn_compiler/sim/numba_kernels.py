"""The numba kernels of the event-driven engine (:mod:`.fast` schedules them).

Synaptic kernels scatter a weight column per nonzero input (a spike adds its column without a
multiply). The neuron kernel does not restate the neuron: it compiles
:func:`snn_compiler.ir.neuron.int_update`, the one integer step, and only loops over frames,
steps and neurons around it. Maps are channels-last (H, W, C), so a spike's fan-out is a
contiguous run of output channels that numba vectorizes.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import sys
import types

import numba as nb
import numpy as np
from numba.extending import register_jitable

from ..ir import neuron as N
from . import readout
from .input_rule import input_levels

# The step's helpers become callable from compiled code as they are (the same function objects
# the numpy and torch engines call), so int_update compiles without a copy of its equations.
register_jitable(N.tz_decay)
register_jitable(N.saturate)
register_jitable(readout.decides)
_int_update = nb.njit(inline="always")(N.int_update)
_input_levels = nb.njit(inline="always")(input_levels)


@register_jitable
def _nonzeros(x_row, idx, vals):
    """The nonzero entries of ``x_row`` in order: their positions into ``idx[:k]``, values into
    ``vals[:k]``; returns (k, their common value, or 0 when they differ). Without a branch per value:
    a scan that tested each value mispredicted twice per event (an event stream at 5% spent more time
    there than adding)."""
    k = 0
    for i in range(x_row.shape[0]):
        idx[k] = i
        k += x_row[i] != 0
    common = x_row[idx[0]] if k else 0
    for j in range(k):
        v = x_row[idx[j]]
        vals[j] = v
        if v != common:
            common = 0
    return k, common


@register_jitable
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


# Rows shorter than this are scanned value by value: the branch-free scan and the four-row blocks pay
# off on long rows (an event frame of 700 inputs: 26 -> 22 ms) and cost a fifth of the time on short
# ones (the Braille-sized net's 12 inputs and 40 recurrent neurons).
COMPACT_MIN = 128


@register_jitable
def _add_events(x_row, wt, dst, idx, vals, rows):
    """dst += sum over nonzero x_row[i] of x_row[i] * wt[i]; ``idx``, ``vals`` scratch of x_row's length,
    ``rows`` of dst's. Spikes add their weight rows unmultiplied; inputs sharing one value v (an event
    frame's levels) sum their rows first, then add v times the sum; other inputs multiply each row."""
    if x_row.shape[0] < COMPACT_MIN:
        for i in range(x_row.shape[0]):
            v = x_row[i]
            if v == 0:
                continue
            src = wt[i]
            if v == 1:
                for o in range(src.shape[0]):
                    dst[o] += src[o]
            else:
                for o in range(src.shape[0]):
                    dst[o] += v * src[o]
        return
    k, common = _nonzeros(x_row, idx, vals)
    if common == 1:
        _add_rows(idx, k, wt, dst)
        return
    n = dst.shape[0]
    if common != 0:
        rows[:] = 0
        _add_rows(idx, k, wt, rows)
        for o in range(n):
            dst[o] += common * rows[o]
        return
    j = 0
    while j + 4 <= k:
        a, b, c, d = wt[idx[j]], wt[idx[j + 1]], wt[idx[j + 2]], wt[idx[j + 3]]
        va, vb, vc, vd = vals[j], vals[j + 1], vals[j + 2], vals[j + 3]
        for o in range(n):
            dst[o] += va * a[o] + vb * b[o] + vc * c[o] + vd * d[o]
        j += 4
    while j < k:
        a, va = wt[idx[j]], vals[j]
        for o in range(n):
            dst[o] += va * a[o]
        j += 1


EVENT_ROWS = 64  # frames per parallel task of dense_events (each task allocates its scratch once)


def dense_events(x, wt, out):
    """out[f] = sum over nonzero x[f, i] of x[f, i] * wt[i]; x (F, In), wt (In, Out). Each row of out
    is written (zeroed here, while it is in cache, rather than in a pass of its own)."""
    n_f, n_in = x.shape
    for b in nb.prange((n_f + EVENT_ROWS - 1) // EVENT_ROWS):
        idx, vals, rows = np.empty(n_in, np.int64), np.empty(n_in, out.dtype), np.empty(out.shape[1], out.dtype)
        for f in range(b * EVENT_ROWS, min(n_f, (b + 1) * EVENT_ROWS)):
            out[f] = 0
            _add_events(x[f], wt, out[f], idx, vals, rows)


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
def depthwise_dense(x, w, out, sh, sw, ph, pw, dh, dw):
    """out[f, oy, ox, c] = sum over taps of x[f, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw, c] * w[ky, kx, c]
    (zeros outside the input): a depthwise conv (one input channel per output channel) on every value,
    vectorized along the channels (x (F, H, W, C), w (kh, kw, C), out (F, Ho, Wo, C) zeroed)."""
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
                    if xx < 0 or xx >= wd:
                        continue
                    src, wt = x[f, y, xx], w[ky, kx]
                    for k in range(c):
                        dst[k] += src[k] * wt[k]


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


@nb.njit(inline="always")
def _step_span(vf, uf, cf, i_t, s_t, pre, bias, decay_v, decay_u, vmax, theta, subtract, spiking, decays, track):
    """``int_update`` on each neuron of a span; ``decays`` and ``track`` arrive as constants
    (:func:`_step_row`), so their branches leave the loop and it vectorizes (2.2x on an IF layer)."""
    for i in range(len(vf)):
        vn, un, s, w = _int_update(vf[i], uf[i] if decays else 0, i_t[i], bias[i], decay_v[i], decay_u, vmax,
                                   theta, subtract, spiking, decays)
        vf[i] = vn
        if decays:
            uf[i] = un
        if track:
            pre[i] = w
        s_t[i] = s
        cf[i] += s


@nb.njit(inline="always")
def _step_row(vf, uf, cf, i_t, s_t, pre, track, bias, decay_v, decay_u, vmax, theta, subtract, spiking, decays):
    """One step of one frame's neurons: ``int_update`` on each, state, spikes and counts written
    in place (``track``: each membrane before reset into ``pre``)."""
    if decays:
        if track:
            _step_span(vf, uf, cf, i_t, s_t, pre, bias, decay_v, decay_u, vmax, theta, subtract, spiking, True, True)
        else:
            _step_span(vf, uf, cf, i_t, s_t, pre, bias, decay_v, decay_u, vmax, theta, subtract, spiking, True, False)
    elif track:
        _step_span(vf, uf, cf, i_t, s_t, pre, bias, decay_v, decay_u, vmax, theta, subtract, spiking, False, True)
    else:
        _step_span(vf, uf, cf, i_t, s_t, pre, bias, decay_v, decay_u, vmax, theta, subtract, spiking, False, False)


@nb.njit(cache=True)
def _tile_steps(cur, static, f, lo, hi, bias, decay_v, decay_u, decays, theta, v, u, vmax, subtract, spiking, spikes,
                counts):
    """Neurons ``lo:hi`` of frame ``f`` over all the call's steps (a function of its own: the serial and
    the parallel build of neuron_layer then run the same compiled loop, 6x faster than inlined there)."""
    vf, cf, bf, df = v[f, lo:hi], counts[f, lo:hi], bias[lo:hi], decay_v[lo:hi]
    uf = u[f, lo:hi] if decays else u[f]
    for t in range(spikes.shape[0]):
        _step_row(vf, uf, cf, cur[0 if static else t, f, lo:hi], spikes[t, f, lo:hi], vf, False, bf, df, decay_u, vmax,
                  theta, subtract, spiking, decays)


NEURON_TILE = 512  # neurons a step loop keeps in cache (int64 v, u and counts: 12 KB)


def neuron_layer(cur, static, bias, decay_v, decay_u, decays, theta, v, u, vmax, subtract, spiking, spikes, counts,
                 k, t0, stop, d_step, d_counts, d_pre):
    """``int_update`` over T' steps for every frame: cur (T' or 1, F, N) currents, v/u/counts
    (F, N) updated in place, spikes (T', F, N) written. ``decay_v`` has one value per neuron;
    ``u`` is read and written only when the layer ``decays``.

    ``k`` > 0 (the read-out under a latency read-out, steps numbered from ``t0``): for each frame
    f the first step at which its counts decide it (``readout.decides``) goes to ``d_step[f]``
    (-1 while undecided), with that step's counts and membranes before reset in ``d_counts[f]``,
    ``d_pre[f]``; with ``stop`` a decided frame is not stepped any further. ``k`` = 0: no
    decisions (the ``d_`` arrays are not read)."""
    n_t, n_f, n = spikes.shape[0], v.shape[0], v.shape[1]
    deciding = k > 0
    if not deciding:
        # in tiles of NEURON_TILE neurons over all T' steps: a tile's state stays in L1 while the
        # currents stream past (a 64x32x32 layer's v and counts are 1 MB), and frames x tiles share
        # the threads
        tiles = (n + NEURON_TILE - 1) // NEURON_TILE
        for j in nb.prange(n_f * tiles):
            f, lo = j // tiles, (j % tiles) * NEURON_TILE
            _tile_steps(cur, static, f, lo, min(n, lo + NEURON_TILE), bias, decay_v, decay_u, decays, theta, v, u,
                        vmax, subtract, spiking, spikes, counts)
        return
    for f in nb.prange(n_f):
        vf, uf, cf = v[f], u[f], counts[f]
        for t in range(n_t):
            # an undecided frame's d_pre holds this step's membrane before reset; the step that
            # decides it leaves it there (no per-frame scratch array: allocating one inside the
            # parallel loop cost 5x at two threads)
            undecided = deciding and d_step[f] < 0
            if deciding and stop and not undecided:
                break
            _step_row(vf, uf, cf, cur[0 if static else t, f], spikes[t, f], d_pre[f] if undecided else vf, undecided,
                      bias, decay_v, decay_u, vmax, theta, subtract, spiking, decays)
            if undecided and readout.decides(cf, k):
                d_step[f] = t0 + t
                for i in range(n):
                    d_counts[f, i] = cf[i]


def recurrent_layer(ext, static, wt, bias, decay_v, decay_u, decays, theta, v, u, vmax, subtract, spiking, spikes,
                    counts, prev, acc):
    """A layer reading its own spikes one step late, over T' steps for every frame: ``int_update``
    (the one step) on ``ext[t] + wt^T prev`` (``ext`` (T' or 1, F, N) int64, the currents from
    outside the cycle; ``wt`` (N, N), row j the fan-out of neuron j; ``prev`` (F, N) the last
    step's spikes, the one-step delay line, updated in place; ``acc`` (F, N) int64 scratch).
    v/u/counts updated and spikes (T', F, N) written as ``neuron_layer`` does."""
    n_t, n_f, n = spikes.shape[0], v.shape[0], v.shape[1]
    for f in nb.prange(n_f):
        vf, uf, cf, pf, af = v[f], u[f], counts[f], prev[f], acc[f]
        idx, vals, rows = np.empty(n, np.int64), np.empty(n, acc.dtype), np.empty(n, acc.dtype)
        for t in range(n_t):
            e = ext[0 if static else t, f]
            for i in range(n):
                af[i] = e[i]
            _add_events(pf, wt, af, idx, vals, rows)
            s_t = spikes[t, f]
            _step_row(vf, uf, cf, af, s_t, vf, False, bias, decay_v, decay_u, vmax, theta, subtract, spiking, decays)
            for i in range(n):
                pf[i] = s_t[i]


# Each of these runs its frames in parallel; a call with little work (a recurrent layer stepping one
# step at a time: a few thousand neurons) takes the serial build of the same function, as waking the
# thread pool costs more than the work (milliseconds per call on a busy machine).
def _renamed(fn, name):
    """The same code as another function object (numba caches a kernel under its qualified name)."""
    twin = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    twin.__qualname__ = name
    return twin


dense_events_serial = nb.njit(cache=True)(_renamed(dense_events, "dense_events_serial"))
dense_events = nb.njit(parallel=True, cache=True)(dense_events)
neuron_layer_serial = nb.njit(cache=True)(_renamed(neuron_layer, "neuron_layer_serial"))
neuron_layer = nb.njit(parallel=True, cache=True)(neuron_layer)
recurrent_layer = nb.njit(parallel=True, cache=True)(recurrent_layer)
SERIAL_WORK = 1 << 16   # values a call touches below which the serial build runs


@nb.njit(parallel=True, cache=True)
def step_sums(spikes, out):
    """out[t, f] = spikes of frame (t, f) (spikes (T', F, N) uint8, out (T', F) int64)."""
    n_t, n_f, n = spikes.shape
    for j in nb.prange(n_t * n_f):
        t, f = j // n_f, j % n_f
        s = 0
        row = spikes[t, f]
        for i in range(n):
            s += row[i]
        out[t, f] = s


def _drop_stale_step_cache() -> bool:
    """numba keys a cached kernel by the source of this file alone, but the step and the decision
    rule the neuron kernels inline live in ir/neuron.py and sim/readout.py: when their source
    changes, the kernels' cache is flushed, so a changed rule is never run from an old compilation."""
    step = "".join(inspect.getsource(f) for f in (N.tz_decay, N.saturate, N.int_update, readout.decides))
    digest = hashlib.sha256(step.encode()).hexdigest()
    flushed = False
    for kernel in (neuron_layer, neuron_layer_serial, recurrent_layer, _tile_steps):
        cache = kernel._cache
        stamp = os.path.join(cache.cache_path, f"{kernel.__name__}.snnc-step")
        try:
            with open(stamp) as f:
                if f.read() == digest:
                    continue
        except OSError:
            pass
        cache.flush()
        flushed = True
        try:
            os.makedirs(cache.cache_path, exist_ok=True)
            with open(stamp, "w") as f:
                f.write(digest)
        except OSError:  # a read-only install: numba compiles in memory there anyway
            pass
    return flushed


def _cached() -> bool:
    try:
        return os.path.exists(neuron_layer._cache._cache_file._index_path)
    except AttributeError:  # another numba's cache layout: do not guess
        return True


_will_compile = not _cached()
_will_compile = _drop_stale_step_cache() or _will_compile


# A first call then takes 10-20 s of JIT (a new install, or the step's source changed), which
# otherwise looks like a hang: say so to a person at a terminal (a script's stderr stays its own).
if _will_compile and sys.stderr.isatty():
    print("snnc: compiling the numba engine's kernels for this installation (10-20 s, once; cached after)",
          file=sys.stderr, flush=True)


@nb.njit(parallel=True, cache=True)
def quantize_frames(x, t0, scale, levels, lowest, out):
    """``out[t, n] = input_rule.input_levels(x[n, t0 + t])`` for the frames of a sequence ``x`` (N, T, F),
    ``out`` (c, N, F), in one pass. A frame holding only zeros and one other value (an event frame)
    is written in one vectorized pass from those two values' levels (3.8x on 5% events); other
    frames value by value, reusing the level of the sample's last other value while it repeats."""
    if x.shape[2] == 0:
        return
    zero_level = _input_levels(0.0, scale, levels, lowest)
    for n in nb.prange(x.shape[0]):
        other = x[n, t0, 0]
        for f in range(x.shape[2]):  # the first frame's first nonzero value, if any (else a chunk's first
            if x[n, t0, f] != 0:     # event frame would take the slow loop)
                other = x[n, t0, f]
                break
        other_level = _input_levels(np.float64(other), scale, levels, lowest)
        for t in range(out.shape[0]):
            row, dst = x[n, t0 + t], out[t, n]
            two = True
            for f in range(row.shape[0]):
                two &= (row[f] == 0) | (row[f] == other)
            if two:
                for f in range(row.shape[0]):
                    dst[f] = zero_level if row[f] == 0 else other_level
                continue
            for f in range(row.shape[0]):
                v = row[f]
                if v == 0:
                    dst[f] = zero_level
                    continue
                if v != other:
                    other, other_level = v, _input_levels(np.float64(v), scale, levels, lowest)
                dst[f] = other_level
