"""Event-driven engine for the integer SNN (numba), bit-identical to the numpy engine.

Two facts make it fast. A feed-forward network with zero-delay timesteps can be run layer by
layer: a layer's input spike train over a chunk of steps is known once its sources have run
that chunk, so each op sees steps x batch frames at once. And spikes are sparse: a weighted op
adds a weight column per spike instead of multiplying a mostly-zero matrix
(:mod:`.numba_kernels`, whose neuron kernel compiles ``ir.neuron.int_update``, the one step).
Maps are kept channels-last (H, W, C) inside so a spike's fan-out is a contiguous run of output
channels; a Flatten puts values back in torch's (C, H, W) order. Integer sums are exact in int32
or int64, chosen from the op's worst-case bound, so the results equal :mod:`.emulator`'s numpy
engine bit for bit (tests check). Time is cut into chunks of steps (:data:`STEP_FRAMES`,
:data:`STEP_VALUES`); every layer runs a chunk, then the next chunk starts from the neurons'
state, so memory does not grow with T.
"""
from __future__ import annotations

import re

import numpy as np

try:
    import numba as nb
    from . import numba_kernels as K
except ImportError:  # the core also runs without numba (the Lava environment): numpy engine only
    nb = K = None

from ..ir import neuron as N
from ..ir import ops as O
from ..ir.layers import value_range
from ..ir.registers import INT32_MAX
from .encode import input_chunks
from .readout import MEMBRANE_READOUTS, OVER_TIME, fold_membrane, fold_start

FRAMES = 4096  # timesteps x samples per kernel call
# One chunk of a run spans at most STEP_FRAMES timesteps x samples and STEP_VALUES values of its
# widest layer (timesteps x samples x neurons): memory is bounded whatever T is.
STEP_FRAMES = 8192
STEP_VALUES = 1 << 23

NUMBA_ERRORS = (nb.core.errors.NumbaError,) if nb is not None else ()


def available() -> bool:
    return nb is not None


def first_line(err) -> str:
    """The first informative line of a (numba) error message, without colour codes."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(err).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("Failed in ")] or [type(err).__name__]
    return lines[0][:300]


NO_DECISION = (np.zeros(0, np.int64), np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64))


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
            if isinstance(op, O.Dense):  # its input is in torch's order (a Flatten restores it)
                self.ops[n] = ("dense", np.ascontiguousarray(w.T), dtype)
            else:
                o, cg, kh, kw = w.shape
                og = o // op.groups
                wr = w.reshape(op.groups, og, cg, kh, kw).transpose(0, 2, 3, 4, 1).reshape(op.groups * cg, kh, kw, og)
                (hi, wi), (ho, wo) = g.nodes[plan.inputs[n][0]]["shape"][1:], g.nodes[n]["shape"][1:]
                tabs = (_reach(hi, kh, op.stride[0], op.padding[0], op.dilation[0], ho),
                        _reach(wi, kw, op.stride[1], op.padding[1], op.dilation[1], wo))
                self.ops[n] = ("conv", np.ascontiguousarray(wr), dtype, cg, tabs)
        # largest |value| each node emits where it is proved (Input, spikes, pools of them): picks
        # int32 or int64 for graded values and pool sums
        self.bound = {n: (value_range(g, n) or (None,))[0] for n in plan.ops}

    def int_dtype(self, n):
        b = self.bound[n]
        return np.int32 if b is not None and b <= INT32_MAX else np.int64


def _apply(fp, n, op, x, out_shape):
    """x: (T', F, *in_hwc) integers -> (T', F, *out_hwc) currents."""
    spec = fp.ops[n]
    t, f = x.shape[:2]
    flat = x.reshape((t * f,) + x.shape[2:])
    out = np.zeros((t * f,) + _hwc(out_shape), spec[2])
    for s in range(0, t * f, FRAMES):
        if spec[0] == "dense":
            K.dense_events(flat[s:s + FRAMES].reshape(min(FRAMES, t * f - s), -1), spec[1], out[s:s + FRAMES])
        else:
            K.conv_events(flat[s:s + FRAMES], spec[1], out[s:s + FRAMES], spec[4][0], spec[4][1], spec[3])
    return out.reshape((t, f) + out.shape[1:])


class _StepReader:
    """Steps of an encoder's chunks, in runs of any length (the encoder keeps its own, smaller chunks)."""

    def __init__(self, chunks):
        self.chunks, self.left = chunks, None

    def take(self, c, shape, dtype):
        out = np.empty((c,) + shape, dtype)
        t = 0
        while t < c:
            if self.left is None or len(self.left) == 0:
                self.left = next(self.chunks)
            k = min(c - t, len(self.left))
            out[t:t + k] = self.left[:k]
            self.left, t = self.left[k:], t + k
        return out


def run_batch(fp, x, ids, timesteps, encoding, seed, readout, dec=None, on_chunk=None, steps_out=None):
    """One batch through the whole graph, a chunk of steps at a time, each chunk layer by layer.
    Returns per neuron layer (v, counts, spiking), v and counts in torch's (N, *shape) layout.

    ``dec`` (a ``readout.Decisions``, latency read-outs): the read-out layer records each
    sample's decision (step, counts, membrane before reset); with ``dec.stop`` chunks double in
    length from one step, decided samples leave the batch after each chunk (the returned states
    hold ``dec.rows`` only; ``dec.totals`` counts every layer's spikes up to each sample's
    decision step exactly) and the run ends once all are decided. ``steps_out`` ({layer: (N, T,
    neurons) uint8}, no early stop) receives every step's spikes in torch's (C, H, W) order."""
    plan, g = fp.plan, fp.plan.graph
    n_f = len(x)
    out_node = next(n for n, op in plan.ops.items() if O.is_readout(op))
    inp = next(n for n, op in plan.ops.items() if isinstance(op, O.Input))
    widest = max(int(np.prod(g.nodes[n]["shape"])) for n in plan.order)
    stop = dec is not None and dec.stop
    const = plan.static[inp]  # a constant encoding of static samples (not of a sequence)
    in_dtype = fp.int_dtype(inp)
    inputs = _StepReader(input_chunks(plan.ops[inp], x, 1 if const else timesteps, encoding, seed, ids, "int",
                                      1 if const else None, in_dtype))
    static = {}  # node -> its (1, F, ...) value, the same every step (constant input, and ops only it feeds)
    for n in plan.order:
        op = plan.ops[n]
        static[n] = const if isinstance(op, O.Input) else (
            not isinstance(op, (O.NEURONS, O.Delay)) and all(static[p] for p in plan.inputs[n]))
    held = _delay_lines(fp, n_f)  # Delay -> (steps, F, ...) what its source sent in the last `steps` steps
    shortest = min((plan.ops[n].steps for n in held), default=timesteps)  # a chunk reads only stored steps
    cache, layers = {}, {}
    delayed = {plan.inputs[n][0] for n in held}
    for n, op in plan.ops.items():
        if isinstance(op, O.NEURONS):
            shape = g.nodes[n]["shape"]
            nn = int(np.prod(shape))
            spiking = not (n == out_node and readout in MEMBRANE_READOUTS)
            p = N.IntParams.of(op, shape)
            layers[n] = dict(v=np.full((n_f, nn), N.initial_v(op, "int", False, spiking), np.int64),
                             counts=np.zeros((n_f, nn), np.int64), bias=_flat_hwc(p.bias, shape),
                             spiking=spiking, p=p, decay_v=_flat_hwc(p.decay_v, shape),
                             u=np.zeros((n_f, nn if p.decays else 0), np.int64))
    fold = None  # an over-time read-out's fold of the output membrane, (H, W, C) order as v
    if readout in OVER_TIME:
        fold = np.full_like(layers[out_node]["v"], fold_start(readout, True))
    if dec is not None:  # the read-out's decision records, per sample still in the batch (Lava's layout)
        nn = layers[out_node]["v"].shape[1]
        d_step = np.full(n_f, -1, np.int64)
        d_counts, d_pre = np.zeros((n_f, nn), np.int64), np.zeros((n_f, nn), np.int64)
        decision = (d_step, d_counts, d_pre)
    rows = np.arange(n_f)  # batch rows still simulated
    t0 = 0
    while t0 < timesteps and len(rows):
        fa = len(rows)
        c = max(1, min(timesteps - t0, STEP_FRAMES // fa, STEP_VALUES // (fa * widest)))
        if stop:  # chunks double (steps 0, 1, 2-3, 4-7, ...): a sample decided after t steps runs < 2t
            c = max(1, min(c, t0))
        c = min(c, shortest)
        seq, left, sums = {}, {n: g.out_degree(n) for n in plan.order}, {}
        for n in plan.order:
            op, srcs = plan.ops[n], plan.inputs[n]
            shape = g.nodes[n]["shape"]
            if n in cache:
                seq[n] = cache[n]
            elif n in held:  # steps t0 - steps .. t0 + c - 1 - steps of its source, stored (c <= steps)
                seq[n] = held[n][:c]
            elif isinstance(op, O.Input):
                arr = inputs.take(1 if const else c, (n_f,) + tuple(shape), in_dtype)
                if fa < n_f:  # the encoder's streams are per sample: drop the decided ones' rows
                    arr = arr[:, rows]
                seq[n] = arr.transpose(0, 1, 3, 4, 2) if arr.ndim == 5 else arr
            elif isinstance(op, O.WEIGHTED):
                seq[n] = _apply(fp, n, op, seq[srcs[0]], shape)
            elif isinstance(op, O.Flatten):  # back to torch's (C, H, W) flatten order
                s = seq[srcs[0]]
                s = s.transpose(0, 1, 4, 2, 3) if s.ndim == 5 else s
                seq[n] = s.reshape(s.shape[:2] + (-1,))
            elif isinstance(op, O.AvgPool2d):  # window sums (a synaptic pool; any stride or padding)
                s = seq[srcs[0]]
                t, f = s.shape[:2]
                pooled = np.zeros((t * f,) + _hwc(shape), fp.int_dtype(n))
                K.sum_pool(np.ascontiguousarray(s).reshape((t * f,) + s.shape[2:]), op.kernel_size[0], op.kernel_size[1],
                          op.stride[0], op.stride[1], op.padding[0], op.padding[1], pooled)
                seq[n] = pooled.reshape((t, f) + pooled.shape[1:])
            elif isinstance(op, O.Add):
                parts = [seq[s] for s in srcs]
                total = parts[0].astype(np.int64)
                for p in parts[1:]:
                    total = total + p
                seq[n] = total
            elif isinstance(op, O.NEURONS):
                st = layers[n]
                cur = seq[srcs[0]]
                cur = cur.reshape(cur.shape[:2] + (-1,))
                spikes = np.zeros((c,) + st["v"].shape, np.uint8)
                p = st["p"]
                decide = dec is not None and n == out_node
                # a fold or a per-step record of the output membrane: its layer runs one step a call
                trace = n == out_node and not st["spiking"] and (fold is not None or n in (steps_out or {}))
                runs = [(cur if static[srcs[0]] else cur[t:t + 1], spikes[t:t + 1]) for t in range(c)] \
                    if trace else [(cur, spikes)]
                for t, (cur_t, spikes_t) in enumerate(runs):
                    K.neuron_layer(cur_t, static[srcs[0]], st["bias"], st["decay_v"], p.decay_u, p.decays, p.threshold,
                                   st["v"], st["u"], p.v_max, p.subtract, st["spiking"], spikes_t, st["counts"],
                                   dec.k if decide else 0, t0, stop, *(decision if decide else NO_DECISION))
                    if trace and fold is not None:
                        fold_membrane(readout, fold, st["v"])
                    if trace and n in (steps_out or {}):
                        steps_out[n][rows, t0 + t] = _torch_layout(st["v"], shape).reshape(fa, -1)
                if stop and st["spiking"]:
                    sums[n] = np.empty((c, fa), np.int64)
                    K.step_sums(spikes, sums[n])
                seq[n] = spikes.reshape((c, fa) + _hwc(shape))
                if steps_out and n in steps_out and st["spiking"]:  # (steps, samples, H, W, C) -> (samples, steps, C*H*W)
                    s = seq[n].transpose(1, 0, 4, 2, 3) if len(shape) == 3 else seq[n].swapaxes(0, 1)
                    steps_out[n][rows, t0:t0 + c] = s.reshape(fa, c, -1)
            else:
                raise TypeError(f"the numba engine does not know op {O.kind(op)} ({n!r})")
            if static[n]:
                cache[n] = seq[n]
            for s in srcs:  # free a sequence once its last consumer has run (a Delay's source: after the chunk)
                left[s] -= 1
                if left[s] == 0 and s not in delayed:
                    seq.pop(s, None)
        for n, line in held.items():  # the chunk's values of each Delay's source join its line
            new = seq[plan.inputs[n][0]]
            held[n] = np.concatenate([line[c:], np.broadcast_to(new, (c,) + new.shape[1:])])
        if dec is not None:
            dec.sample_steps += c * fa
            out_shape = g.nodes[out_node]["shape"]
            new = (d_step >= 0) & (dec.step[rows] < 0)
            if new.any():
                dec.record(rows[new], d_step[new], _torch_layout(d_counts[new], out_shape),
                           _torch_layout(d_pre[new], out_shape))
            if stop:  # spikes up to each sample's decision step (a chunk runs on past it)
                last = np.where(d_step >= 0, d_step - t0, c - 1)
                upto = np.arange(c)[:, None] <= last[None, :]
                for n, sm in sums.items():
                    dec.add_total(n, np.sum(sm, where=upto))
                keep = d_step < 0
                if not keep.all():
                    for st in layers.values():
                        for key in ("v", "counts", "u"):
                            if st[key] is not None:
                                st[key] = np.ascontiguousarray(st[key][keep])
                    for n in cache:
                        cache[n] = np.ascontiguousarray(cache[n][:, keep])
                    for n in held:
                        held[n] = np.ascontiguousarray(held[n][:, keep])
                    d_step, d_counts, d_pre = d_step[keep], d_counts[keep], d_pre[keep]
                    decision = (d_step, d_counts, d_pre)
                    rows = rows[keep]
                    dec.rows = rows
        if on_chunk is not None:  # sample-steps done (progress)
            on_chunk(fa * c)
        t0 += c
    if fold is not None:  # the read-out's membrane (simulate's scores)
        layers[out_node]["v"] = fold
    states = {n: (_torch_layout(st["v"], g.nodes[n]["shape"]), _torch_layout(st["counts"], g.nodes[n]["shape"]),
                  st["spiking"]) for n, st in layers.items()}
    if dec is not None:
        _, cn, _ = states[out_node]
        dec.finish(cn, states[out_node][0])
        if not stop:  # (with stop, the chunks' step sums counted them)
            for n, (_, cn, sp) in states.items():
                if sp:
                    dec.add_total(n, cn.sum())
    return states, out_node


def _delay_lines(fp, batch) -> dict:
    """Each Delay's line: (steps, batch, *shape in (H, W, C) order) zeros, of what its source sends
    (spikes as uint8, the Input's values in its dtype)."""
    plan = fp.plan
    lines = {}
    for n, op in plan.ops.items():
        if isinstance(op, O.Delay):
            src = plan.inputs[n][0]
            dtype = np.uint8 if isinstance(plan.ops[src], O.NEURONS) else fp.int_dtype(src)
            lines[n] = np.zeros((op.steps, batch) + _hwc(tuple(op.shape)), dtype)
    return lines


def _flat_hwc(a, shape):
    """A per-neuron int64 array broadcast to ``shape`` and flattened in the engine's (H, W, C) order."""
    a = np.broadcast_to(np.asarray(a, np.int64), shape)
    return np.ascontiguousarray(a.transpose(1, 2, 0) if len(shape) == 3 else a).ravel()


def _torch_layout(a, shape):
    if len(shape) == 3:
        return a.reshape((len(a),) + _hwc(shape)).transpose(0, 3, 1, 2)
    return a.reshape((len(a),) + tuple(shape))
