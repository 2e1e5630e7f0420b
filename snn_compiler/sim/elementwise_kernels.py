"""The engine's element-wise kernels: the parallel adds and per-channel scales between its event-driven
kernels (re-exported by :mod:`.numba_kernels`, the one namespace the engine calls). They restate no
neuron or synapse rule: an Add's sum and a depthwise 1x1 conv's product, value by value, and the spikes
of each step (the early stop's sums)."""
from __future__ import annotations

import numba as nb

VALUE_BLOCK = 1 << 14  # values per parallel task of the element-wise kernels
STACK_ROWS = 256       # rows per parallel task of stack_channels (their output, ~100 KB, stays in cache)


@nb.njit(parallel=True, cache=True)
def add_steps(a, b, out):
    """out[t] = a[t or 0] + b[t or 0]: two terms of an Add over T steps of V values (a (Ta, V), b (Tb, V),
    out (T, V); a term with one step is static and broadcasts), in out's type (the engine proves the sums
    fit). numpy's add runs on one thread: a residual net's adds were a sixth of its time at 2 threads."""
    n_t, n_v = out.shape
    blocks = (n_v + VALUE_BLOCK - 1) // VALUE_BLOCK
    for j in nb.prange(n_t * blocks):
        t, lo = j // blocks, (j % blocks) * VALUE_BLOCK
        ra, rb, ro = a[t if a.shape[0] > 1 else 0], b[t if b.shape[0] > 1 else 0], out[t]
        for i in range(lo, min(n_v, lo + VALUE_BLOCK)):
            ro[i] = ra[i] + rb[i]


@nb.njit(parallel=True, cache=True)
def scale_channels(x, scale, out):
    """out[r, c] = x[r, c] * scale[c] (x, out (R, C)): a depthwise 1x1 conv, a residual's identity path."""
    n_r, n_c = out.shape
    rows = max(1, VALUE_BLOCK // max(n_c, 1))
    for j in nb.prange((n_r + rows - 1) // rows):
        for r in range(j * rows, min(n_r, (j + 1) * rows)):
            xr, orow = x[r], out[r]
            for c in range(n_c):
                orow[c] = xr[c] * scale[c]


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


@nb.njit(parallel=True, cache=True)
def stack_channels(parts, shifts, out):
    """out[p] = the rows parts[j][p] (uint8, (P, C_j)) side by side, part j times 2**shifts[j], as int8
    (P, sum C_j): the spikes of a concatenation's parts for one product (sim/stacked.py). In blocks of
    STACK_ROWS rows, each part taken from the list once a block (a list item costs a reference count)."""
    n = out.shape[0]
    for b in nb.prange((n + STACK_ROWS - 1) // STACK_ROWS):
        p0, p1 = b * STACK_ROWS, min(n, (b + 1) * STACK_ROWS)
        lo = 0
        for j in range(len(parts)):
            src, shift = parts[j], shifts[j]
            c = src.shape[1]
            for p in range(p0, p1):
                row, dst = src[p], out[p]
                for i in range(c):
                    dst[lo + i] = row[i] << shift
            lo += c
