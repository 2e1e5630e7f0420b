"""Event-driven engine for the integer SNN (numba), bit-identical to the numpy engine.

Two facts make it fast. A feed-forward network with zero-delay timesteps can be run layer by
layer: a layer's whole input spike train (T steps) is known once its sources have run, so each
op sees T x batch frames at once. And spikes are sparse: a weighted op adds a weight column per
spike instead of multiplying a mostly-zero matrix. Maps are kept channels-last (H, W, C) inside
so a spike's fan-out is a contiguous run of output channels; a Dense after a Flatten gets its
columns permuted to match. Integer sums are exact in int32 or int64, chosen from the op's
worst-case bound, so the results equal :mod:`.emulator`'s numpy engine bit for bit (tests check).
"""
from __future__ import annotations

import numpy as np

try:
    import numba as nb
except ImportError:  # the core also runs without numba (the Lava environment): numpy engine only
    nb = None

from ..ir import ops as O
from .encode import input_steps

FRAMES = 4096  # timesteps x samples processed at once (bounds memory)


def available() -> bool:
    return nb is not None


if nb is not None:
    # Inner loops run over a contiguous run of output channels (``dst``/``src`` slices) so numba
    # vectorizes them; a spike (value 1) adds its weight column without a multiply.
    @nb.njit(parallel=True, cache=True)
    def _dense_events(x, wt, out):
        """out[f] += sum over nonzero x[f, i] of x[f, i] * wt[i]; x (F, In), wt (In, Out)."""
        for f in nb.prange(x.shape[0]):
            dst = out[f]
            for i in range(x.shape[1]):
                v = x[f, i]
                if v == 0:
                    continue
                src = wt[i]
                if v == 1:
                    for o in range(src.shape[0]):
                        dst[o] += src[o]
                else:
                    for o in range(src.shape[0]):
                        dst[o] += v * src[o]

    @nb.njit(parallel=True, cache=True)
    def _conv_events(x, wr, out, ytab, xtab, cg):
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
    def _sum_pool(x, kh, kw, out):
        """Window sums of x (F, H, W, C) over non-overlapping kh x kw windows into out (F, Ho, Wo, C)."""
        n_f, ho, wo, c = out.shape
        for f in nb.prange(n_f):
            for oy in range(ho):
                for ox in range(wo):
                    dst = out[f, oy, ox]
                    for i in range(kh):
                        for j in range(kw):
                            src = x[f, oy * kh + i, ox * kw + j]
                            for k in range(c):
                                dst[k] += src[k]

    @nb.njit(parallel=True, cache=True)
    def _if_layer(cur, static, bias, theta, v, vmax, subtract, spiking, spikes, counts):
        """The IF equations of ops.IF over T steps; cur (T or 1, F, N), v/counts (F, N) updated in place.

        Branch-free inner loops (one per reset mode) so numba vectorizes them.
        """
        n_t, n_f, n = spikes.shape[0], v.shape[0], v.shape[1]
        for f in nb.prange(n_f):
            vf, cf = v[f], counts[f]
            for t in range(n_t):
                i_t = cur[0 if static else t, f]
                s_t = spikes[t, f]
                if not spiking:
                    for i in range(n):
                        vf[i] = min(max(vf[i] + i_t[i] + bias[i], -vmax), vmax)
                elif subtract:
                    for i in range(n):
                        u = min(max(vf[i] + i_t[i] + bias[i], -vmax), vmax)
                        s = u >= theta
                        s_t[i] = s
                        cf[i] += s
                        vf[i] = u - s * theta
                else:
                    for i in range(n):
                        u = min(max(vf[i] + i_t[i] + bias[i], -vmax), vmax)
                        s = u >= theta
                        s_t[i] = s
                        cf[i] += s
                        vf[i] = u * (1 - s)


def _reach(n_in, k, stride, pad, dil, n_out):
    """tab[i, j]: the output index input i reaches through kernel tap j, or -1."""
    tab = np.full((n_in, k), -1, np.int64)
    for i in range(n_in):
        for j in range(k):
            o, r = divmod(i + pad - j * dil, stride)
            if r == 0 and 0 <= o < n_out:
                tab[i, j] = o
    return tab


def _hwc(shape):
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)


def _chw_index(shape):
    """For a Flatten of a (C, H, W) map kept as (H, W, C): torch's flat index of each HWC position."""
    if len(shape) != 3:
        return None
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


class FastPlan:
    """Weights rearranged once per simulation for the event-driven kernels."""

    def __init__(self, plan):
        self.plan = plan
        g = plan.graph
        self.ops = {}
        for n, op in plan.ops.items():
            if not isinstance(op, O.WEIGHTED):
                continue
            w = plan.weights[n]
            dtype = np.int32 if w.dtype == np.float32 else np.int64  # float32-exact bound < 2**24
            w = w.astype(np.int64).astype(dtype)
            if isinstance(op, O.Dense):
                src = plan.inputs[n][0]
                perm = _chw_index(g.nodes[plan.inputs[src][0]]["shape"]) if isinstance(plan.ops[src], O.Flatten) else None
                self.ops[n] = ("dense", np.ascontiguousarray((w if perm is None else w[:, perm]).T), dtype)
            else:
                o, cg, kh, kw = w.shape
                og = o // op.groups
                wr = w.reshape(op.groups, og, cg, kh, kw).transpose(0, 2, 3, 4, 1).reshape(op.groups * cg, kh, kw, og)
                (hi, wi), (ho, wo) = g.nodes[plan.inputs[n][0]]["shape"][1:], g.nodes[n]["shape"][1:]
                tabs = (_reach(hi, kh, op.stride[0], op.padding[0], op.dilation[0], ho),
                        _reach(wi, kw, op.stride[1], op.padding[1], op.dilation[1], wo))
                self.ops[n] = ("conv", np.ascontiguousarray(wr), dtype, cg, tabs)


def _apply(fp, n, op, x, out_shape):
    """x: (T', F, *in_hwc) integers -> (T', F, *out_hwc) currents."""
    spec = fp.ops[n]
    t, f = x.shape[:2]
    flat = x.reshape((t * f,) + x.shape[2:])
    out = np.zeros((t * f,) + _hwc(out_shape), spec[2])
    for s in range(0, t * f, FRAMES):
        if spec[0] == "dense":
            _dense_events(flat[s:s + FRAMES].reshape(min(FRAMES, t * f - s), -1), spec[1], out[s:s + FRAMES])
        else:
            _conv_events(flat[s:s + FRAMES], spec[1], out[s:s + FRAMES], spec[4][0], spec[4][1], spec[3])
    return out.reshape((t, f) + out.shape[1:])


def run_batch(fp, x, ids, timesteps, encoding, seed, readout):
    """One batch through the whole graph, layer by layer. Returns per neuron layer (v, counts, spiking),
    v and counts in torch's (N, *shape) layout."""
    plan, g = fp.plan, fp.plan.graph
    seq, left = {}, {n: len(list(g.successors(n))) for n in plan.order}
    out_node = next(n for n, op in plan.ops.items() if isinstance(op, O.Output))
    states = {}
    for n in plan.order:
        op, srcs = plan.ops[n], plan.inputs[n]
        shape = g.nodes[n]["shape"]
        if isinstance(op, O.Input):
            steps = input_steps(op, x, 1 if encoding == "constant" else timesteps, encoding, seed, ids, "int")
            arr = np.stack(list(steps)).astype(np.int32)
            seq[n] = arr.transpose(0, 1, 3, 4, 2) if arr.ndim == 5 else arr
        elif isinstance(op, O.WEIGHTED):
            seq[n] = _apply(fp, n, op, seq[srcs[0]], shape)
        elif isinstance(op, O.Flatten):
            s = seq[srcs[0]]
            seq[n] = s.reshape(s.shape[:2] + (-1,))
        elif isinstance(op, O.AvgPool2d):  # a synaptic pool: window sums (kernel == stride, no padding)
            s = seq[srcs[0]]
            (kh, kw), (t, f, h, w, c) = op.kernel_size, s.shape
            pooled = np.zeros((t * f, h // kh, w // kw, c), np.int32)
            _sum_pool(s.reshape((t * f,) + s.shape[2:]), kh, kw, pooled)
            seq[n] = pooled.reshape((t, f) + pooled.shape[1:])
        elif isinstance(op, O.Add):
            parts = [seq[s] for s in srcs]
            total = parts[0].astype(np.int64)
            for p in parts[1:]:
                total = total + p
            seq[n] = total
        else:
            cur = seq[srcs[0]]
            f = cur.shape[1]
            cur = cur.reshape(cur.shape[:2] + (-1,))
            nn = cur.shape[2]
            spiking = not (n == out_node and readout == "membrane")
            v = np.full((f, nn), op.v_init if spiking else 0, np.int64)
            counts = np.zeros((f, nn), np.int64)
            spikes = np.zeros((timesteps, f, nn), np.uint8)
            bias = np.ascontiguousarray(np.broadcast_to(op.bias, shape).astype(np.int64))
            bias = bias.transpose(1, 2, 0).ravel() if len(shape) == 3 else bias.ravel()
            _if_layer(cur, cur.shape[0] == 1, bias, int(op.threshold), v, plan.vmax, plan.reset == "subtract",
                      spiking, spikes, counts)
            seq[n] = spikes.reshape((timesteps, f) + _hwc(shape))
            states[n] = (_torch_layout(v, shape), _torch_layout(counts, shape), spiking)
        for s in srcs:  # free a sequence once its last consumer has run
            left[s] -= 1
            if left[s] == 0:
                seq.pop(s, None)
    return states, out_node


def _torch_layout(a, shape):
    if len(shape) == 3:
        return a.reshape((len(a),) + _hwc(shape)).transpose(0, 3, 1, 2)
    return a.reshape((len(a),) + tuple(shape))
