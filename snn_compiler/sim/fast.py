"""Event-driven engine for the integer SNN (numba), bit-identical to the numpy engine.

Two facts make it fast. A feed-forward network with zero-delay timesteps can be run layer by
layer: a layer's input spike train over a chunk of steps is known once its sources have run
that chunk, so each op sees steps x batch frames at once (a recurrent layer's cycle steps one
step at a time inside the chunk: :mod:`.fast_run`, the schedule). And spikes are sparse: a weighted op
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

import contextlib
import re

import numpy as np

try:
    import numba as nb
    from . import numba_kernels as K
except ImportError:  # the core also runs without numba (the Lava environment): numpy engine only
    nb = K = None

from ..ir import ops as O
from ..ir.layers import value_range
from ..ir.registers import INT32_MAX
from . import float_conv, int_gemm

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


def _reach(n_in, k, stride, pad, dil, n_out, in_dil=1):
    """tab[i, j]: the output index input i reaches through kernel tap j, or -1 (input i sits at
    ``in_dil * i`` of the zero-inserted input a Conv2d with input dilation reads)."""
    tab = np.full((n_in, k), -1, np.int64)
    for i in range(n_in):
        for j in range(k):
            o, r = divmod(in_dil * i + pad - j * dil, stride)
            if r == 0 and 0 <= o < n_out:
                tab[i, j] = o
    return tab


def _narrowest(w, dtype):
    """The narrowest integer type holding every weight (int8 for 8-bit synapses): the kernels add them
    into ``dtype`` sums, and a quarter of int32's bytes per weight keeps a big layer's weights in cache
    (ResNet-18's 512-channel 3x3 conv: 2.4 MB as int8, 9.4 MB as int32)."""
    hi = max(-int(w.min()), int(w.max())) if w.size else 0
    for narrow in (np.int8, np.int16, np.int32):
        if hi <= np.iinfo(narrow).max:
            return narrow
    return dtype


def _hwc(shape):
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)


class FastPlan:
    """Weights rearranged once per simulation for the event-driven kernels."""

    def __init__(self, plan):
        self.plan = plan
        self.schedule = None  # fast_run.Schedule, made at the first batch
        g = plan.graph
        self.ops = {}
        self.product = {}  # node: ((K, N) weight matrix, conv geometry or None) of an op the int8 product can run,
        self.product_split = {}  # until product_parts splits it (once; the matrix then leaves `product`)
        self.channel_scale = {}  # node: per-channel weights of a depthwise 1x1 conv (out = x * scale)
        self.depthwise = {}  # node: ((kh, kw, C) weights, (kh, kw) nonzero, geometry) of a depthwise conv
        self.grouped = {}  # node: ((kh, kw, og, cg, G) weights, (kh, kw, og, cg) nonzero, geometry): small groups
        self.float_conv = {}  # node: (float32 weights, geometry, groups): wider groups, as torch's float conv
        self.methods = {}  # node: {method: kernel calls} (simulate's info["methods"]; benchmarks print it)
        for n, op in plan.ops.items():
            if not isinstance(op, O.WEIGHTED):
                continue
            w = plan.weights[n]
            dtype = np.int32 if w.dtype == np.float32 else np.int64  # float32-exact bound < 2**24
            wi = np.asarray(op.weight_int)
            if not op.weight_exp and wi.dtype.kind in "iu":  # the integers themselves: no pass over floats
                w = wi.astype(_narrowest(wi, dtype))
            else:
                w = w.astype(_narrowest(w, dtype))  # integer-valued floats, within the narrow type: exact
            # int8 x int8 products sum exactly in int32 (int32 sums: the bound is below 2**24)
            productive = dtype == np.int32 and w.dtype in (np.int8, np.int16)
            if isinstance(op, O.Dense):  # its input is in torch's order (a Flatten restores it)
                wt = np.ascontiguousarray(w.T)
                m, gain = K.mantissas(wt) if K is not None else (wt, 1)
                self.ops[n] = ("dense", m, dtype, gain)  # wt == m * gain (the scatter's narrower rows)
                if productive:
                    self._add_product(n, wt, None)
            else:
                o, cg, kh, kw = w.shape
                og = o // op.groups
                wr = w.reshape(op.groups, og, cg, kh, kw).transpose(0, 2, 3, 4, 1).reshape(op.groups * cg, kh, kw, og)
                (hi, wi), (ho, wo) = g.nodes[plan.inputs[n][0]]["shape"][1:], g.nodes[n]["shape"][1:]
                tabs = tuple(_reach((hi, wi)[a], (kh, kw)[a], op.stride[a], op.padding[a], op.dilation[a], (ho, wo)[a],
                                    op.input_dilation[a]) for a in range(2))
                self.ops[n] = ("conv", np.ascontiguousarray(wr), dtype, cg, tabs)
                if cg == og == 1 and (kh, kw) == (1, 1) and tuple(op.stride) == (1, 1) \
                        and tuple(op.padding) == (0, 0) and tuple(op.input_dilation) == (1, 1):
                    # a per-channel scale (a residual's identity path): one multiply per value, no scan
                    self.channel_scale[n] = wr.reshape(o).astype(dtype)
                elif cg == 1 and og == 1 and tuple(op.input_dilation) == (1, 1):
                    # depthwise: a dense pass over every value beats a scatter of one weight per spike-tap
                    taps = np.ascontiguousarray(wr[:, :, :, 0].transpose(1, 2, 0))
                    self.depthwise[n] = (taps, np.any(taps != 0, axis=2),
                                         (tuple(op.stride), tuple(op.padding), tuple(op.dilation)))
                elif op.groups > 1 and cg * og <= GROUPED_PASS_MAX and tuple(op.input_dilation) == (1, 1):
                    # small groups (a max pool's comparisons: 1 -> 4 channels 3x3, 4 -> 1 1x1): a dense pass
                    # per output slot along the groups (its scatter: a weight per spike-tap)
                    slots = np.ascontiguousarray(w.reshape(op.groups, og, cg, kh, kw).transpose(3, 4, 1, 2, 0))
                    self.grouped[n] = (slots, np.any(slots != 0, axis=4),
                                       (tuple(op.stride), tuple(op.padding), tuple(op.dilation)))
                elif op.groups > 1 and dtype == np.int32 and tuple(op.input_dilation) == (1, 1):
                    self.float_conv[n] = (plan.weights[n], (tuple(op.stride), tuple(op.padding), tuple(op.dilation)),
                                          op.groups)  # (weights as torch's tensor at the first call)
                elif productive and op.groups == 1 and tuple(op.input_dilation) == (1, 1):
                    self._add_product(n, wr.transpose(1, 2, 0, 3).reshape(kh * kw * cg, og),
                                      (kh, kw, tuple(op.stride), tuple(op.padding), tuple(op.dilation)))
        # largest |value| each node emits where it is proved (Input, spikes, pools of them): picks
        # int32 or int64 for graded values and pool sums
        self.bound = {n: (value_range(g, n) or (None,))[0] for n in plan.ops}

    def _add_product(self, n, matrix, geometry):
        self.product[n] = (matrix, geometry)

    def product_parts(self, n):
        """``(int_gemm.int8_parts of op n's weight matrix, conv geometry or None)``, or None where it has no
        int8 product. Made at the first call (a batch whose layers all scatter, as a recurrent kernel's
        do, never pays for the split: 0.7 ms of each simulate call on an SHD-sized net)."""
        if n not in self.product_split:
            matrix, geometry = self.product.pop(n, (None, None))
            parts = None if matrix is None else int_gemm.int8_parts(matrix)
            self.product_split[n] = None if parts is None else (parts, geometry)
        return self.product_split[n]

    def int_dtype(self, n):
        b = self.bound[n]
        return np.int32 if b is not None and b <= INT32_MAX else np.int64

    def narrow_dtype(self, n):
        """The narrowest integer type that holds node ``n``'s proved values: int8 for 8-bit signed input
        levels and for a small pool's sums of spikes (a 2x2 pool: 0..4). The encoder or pool writes, and
        the next layer reads, a quarter of int32's bytes per value, and an int8 input lets that layer
        run as int8 products (:mod:`.int_gemm`)."""
        b = self.bound[n]
        for dtype in (np.int8, np.int16):
            if b is not None and b <= np.iinfo(dtype).max:
                return dtype
        return self.int_dtype(n)

    def input_dtype(self, n):
        """:meth:`narrow_dtype` of Input ``n``, or uint8 for unsigned levels up to 255 (8-bit inputs: half the
        bytes the encoder writes and the first layer reads)."""
        op = self.plan.ops[n]
        if not op.signed and self.bound[n] is not None and 127 < self.bound[n] <= 255:
            return np.uint8
        return self.narrow_dtype(n)


# A Dense whose input is busier than this (nonzero fraction) runs as one BLAS product instead of a
# scatter per spike (both exact: the plan's float dtype is proved exact). Measured on 8,192 frames of
# spikes at 1 and 2 threads: the scatter took 0.56-1.16x the product's time at 20% on 256 -> 20, and
# 0.23-0.8x up to 25-40% on 256 -> 256 and 1024 -> 100 (8% before the scatter's int16 blocks).
DENSE_GEMM_RATE = 0.25


# Values sampled (in whole frames, at least DENSITY_FRAMES of them) to estimate an input's density: which
# exact method runs is a matter of speed only, and counting every value of an event sequence cost a
# quarter of the input projection's own time.
DENSITY_SAMPLE = 1 << 16
DENSITY_FRAMES = 16


def _density(flat) -> float:
    """The frames' nonzero fraction, estimated on evenly spaced frames."""
    step = max(1, min(len(flat) // DENSITY_FRAMES, flat.size // DENSITY_SAMPLE))
    sample = flat[::step]
    return np.count_nonzero(sample) / max(1, sample.size)


# A grouped conv with at most this many weights per group and tap (cg x og) runs as the grouped pass
# rather than a scatter (SqueezeNet's max-pool comparisons: cg x og of 2 to 8); wider groups run as
# torch's float conv (:mod:`.float_conv`; ResNeXt's 4 x 4: 1.55 -> ~0.8 s of a 32-image run at T = 64).
GROUPED_PASS_MAX = 8


# Which exact method a weighted op runs where both can: "auto" (the cheaper, :func:`_product_pays`),
# "scatter" or "product" (the dense one: int8 product, or a depthwise conv's dense pass; tests run each,
# a benchmark compares them). Results are the same integers.
METHOD = "auto"


def _product_pays(fp, n, flat, density, out_hwc) -> bool:
    """The int8 product (:mod:`.int_gemm`) runs op ``n`` on these frames for less than the scatter."""
    if flat.dtype not in (np.int8, np.uint8) or METHOD == "scatter" or fp.product_parts(n) is None:
        return False
    if flat.dtype == np.uint8 and fp.bound[fp.plan.inputs[n][0]] > 127:
        return False  # (the product reads uint8 as int8: spikes and small sums, not 8-bit input levels)
    if METHOD == "product":
        return int_gemm.available()
    parts, geometry = fp.product_parts(n)
    k, n_out = parts[0][0].shape
    positions = int(np.prod(out_hwc[:-1])) if geometry else 1
    inputs = flat[0].size
    taps = positions * (k // flat.shape[-1]) / (inputs // flat.shape[-1]) if geometry else 1
    return (int_gemm.cheaper(density, taps, inputs, n_out, positions, k, n_out, geometry is not None, len(parts))
            and int_gemm.available())


def _count(fp, n, method):
    calls = fp.methods.setdefault(n, {})
    calls[method] = calls.get(method, 0) + 1


def _apply(fp, n, op, x, out_shape):
    """x: (T', F, *in_hwc) integers -> (T', F, *out_hwc) currents."""
    spec = fp.ops[n]
    t, f = x.shape[:2]
    flat = x.reshape((t * f,) + x.shape[2:])
    if n in fp.channel_scale:
        _count(fp, n, "channel scale")
        scale, out = fp.channel_scale[n], np.empty(x.shape, spec[2])
        K.scale_channels(np.ascontiguousarray(x).reshape(-1, len(scale)), scale, out.reshape(-1, len(scale)))
        return out
    # a depthwise conv always runs as the dense pass unless forced: its scatter adds one weight per nonzero
    # input and tap after scanning every value, and lost at every density measured (3x3 over 256 x 16 x 16
    # x 96 values, 1 thread: 23-52 ms against 7-9 ms from 1% to 20% nonzero)
    if n in fp.depthwise and flat.size and METHOD != "scatter":
        _count(fp, n, "depthwise pass")
        w, used, (stride, padding, dilation) = fp.depthwise[n]
        out = np.zeros((t * f,) + _hwc(out_shape), spec[2])
        K.depthwise_dense(np.ascontiguousarray(flat), w, used, out, stride[0], stride[1], padding[0], padding[1],
                          dilation[0], dilation[1])
        return out.reshape((t, f) + out.shape[1:])
    if n in fp.grouped and flat.size and METHOD != "scatter":
        _count(fp, n, "grouped pass")
        w, used, (stride, padding, dilation) = fp.grouped[n]
        out = np.empty((t * f,) + _hwc(out_shape), spec[2])  # (grouped_dense writes every value)
        K.grouped_dense(np.ascontiguousarray(flat), w, used, out, stride[0], stride[1], padding[0], padding[1],
                        dilation[0], dilation[1])
        return out.reshape((t, f) + out.shape[1:])
    if n in fp.float_conv and flat.size and METHOD != "scatter" and float_conv.available():
        _count(fp, n, "float conv")
        w, geometry, groups = fp.float_conv[n]
        if isinstance(w, np.ndarray):
            w = float_conv.weight(w)
            fp.float_conv[n] = (w, geometry, groups)
        out = float_conv.conv(flat, w, geometry, groups)
        return out.reshape((t, f) + out.shape[1:])
    density = _density(flat) if flat.size else 0.0
    if flat.size and _product_pays(fp, n, flat, density, _hwc(out_shape)):
        _count(fp, n, "int8 product")
        out = np.empty((t * f,) + _hwc(out_shape), np.int32)
        parts, geometry = fp.product_parts(n)
        if geometry is None:
            int_gemm.matmul(np.ascontiguousarray(flat.reshape(t * f, -1)), parts, out)
        else:
            int_gemm.conv(np.ascontiguousarray(flat), parts, out, geometry)
        return out.reshape((t, f) + out.shape[1:])
    if spec[0] == "dense" and density > DENSE_GEMM_RATE:
        _count(fp, n, "float product")
        w = fp.plan.weights[n]  # float32 or float64, exact for every partial sum (Plan._weights)
        y = flat.reshape(t * f, -1).astype(w.dtype) @ w.T
        return y.astype(spec[2]).reshape((t, f) + _hwc(out_shape))
    _count(fp, n, "scatter")
    out = (np.empty if spec[0] == "dense" else np.zeros)((t * f,) + _hwc(out_shape), spec[2])  # (dense_events writes)
    for s in range(0, t * f, FRAMES):
        if spec[0] == "dense":
            xs = flat[s:s + FRAMES].reshape(min(FRAMES, t * f - s), -1)
            (K.dense_events_serial if out[s:s + FRAMES].size < K.SERIAL_WORK else K.dense_events)(
                xs, spec[1], spec[3], out[s:s + FRAMES])
        else:
            K.conv_events(flat[s:s + FRAMES], spec[1], out[s:s + FRAMES], spec[4][0], spec[4][1], spec[3])
    return out.reshape((t, f) + out.shape[1:])


# A batch whose chunks would span fewer steps than this (STEP_VALUES over its widest layer) runs as
# several smaller batches: each layer's state is then read and written once per MIN_CHUNK_STEPS steps
# instead of every step or two (the MNIST CNN at batch 256: 2 steps a chunk, 16% slower).
MIN_CHUNK_STEPS = 16


def samples_per_batch(fp, batch_size: int, timesteps: int) -> int:
    """How many of a caller's ``batch_size`` samples the engine runs together. Samples are independent
    (each draws its own streams by its id), so any split gives the same results."""
    widest = max(int(np.prod(fp.plan.graph.nodes[n]["shape"])) for n in fp.plan.order)
    steps = max(1, min(timesteps, MIN_CHUNK_STEPS))
    return max(1, min(batch_size, STEP_VALUES // (steps * widest)))


def run_batch(fp, x, ids, timesteps, encoding, seed, readout, dec=None, on_chunk=None, steps_out=None):
    """One batch through the whole graph, a chunk of steps at a time (the schedule: :mod:`.fast_run`).
    Returns per neuron layer (v, counts, spiking), v and counts in torch's (N, *shape) layout.

    ``dec`` (a ``readout.Decisions``, latency read-outs): the read-out layer records each
    sample's decision (step, counts, membrane before reset); with ``dec.stop`` chunks double in
    length from one step, decided samples leave the batch after each chunk (the returned states
    hold ``dec.rows`` only; ``dec.totals`` counts every layer's spikes up to each sample's
    decision step exactly) and the run ends once all are decided. ``steps_out`` ({layer: (N, T,
    neurons) uint8}, no early stop) receives every step's spikes in torch's (C, H, W) order."""
    with _blas_beside_kernels(), int_gemm.threads(nb.get_num_threads() if nb is not None else 1):
        return _run_batch(fp, x, ids, timesteps, encoding, seed, readout, dec, on_chunk, steps_out)


def _blas_beside_kernels():
    """BLAS on one thread while the parallel kernels run (threadpoolctl, where installed): BLAS's
    threads spin after each product and take the cores the kernels' threads need (a recurrent CUBA
    net at 2 threads here: 151 ms with both pools at 2, 103 ms with BLAS at 1, 130 ms all at 1)."""
    if nb is None or nb.get_num_threads() < 2:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _run_batch(fp, x, ids, timesteps, encoding, seed, readout, dec, on_chunk, steps_out):
    from .fast_run import BatchRun
    run = BatchRun(fp, x, ids, timesteps, encoding, seed, readout, dec, steps_out)
    g, out_node, layers = fp.plan.graph, run.out_node, run.layers
    t0 = 0
    while t0 < timesteps and len(run.rows):
        fa = len(run.rows)
        c = run.chunk_length(t0, timesteps)
        sums = run.chunk(t0, c)
        if dec is not None:
            dec.sample_steps += c * fa
            out_shape = g.nodes[out_node]["shape"]
            d_step, d_counts, d_pre = run.decision
            new = (d_step >= 0) & (dec.step[run.rows] < 0)
            if new.any():
                dec.record(run.rows[new], d_step[new], _torch_layout(d_counts[new], out_shape),
                           _torch_layout(d_pre[new], out_shape))
            if run.stop:  # spikes up to each sample's decision step (a chunk runs on past it)
                last = np.where(d_step >= 0, d_step - t0, c - 1)
                upto = np.arange(c)[:, None] <= last[None, :]
                for n, sm in sums.items():
                    dec.add_total(n, np.sum(sm, where=upto))
                keep = d_step < 0
                if not keep.all():
                    for st in layers.values():
                        for key in ("v", "counts", "u"):
                            st[key] = np.ascontiguousarray(st[key][keep])
                    for n in run.cache:
                        run.cache[n] = np.ascontiguousarray(run.cache[n][:, keep])
                    for n in run.held:
                        run.held[n] = np.ascontiguousarray(run.held[n][:, keep])
                    run.decision = (d_step[keep], d_counts[keep], d_pre[keep])
                    run.rows = run.rows[keep]
                    dec.rows = run.rows
        if on_chunk is not None:  # sample-steps done (progress)
            on_chunk(fa * c)
        t0 += c
    if run.fold is not None:  # the read-out's membrane (simulate's scores)
        layers[out_node]["v"] = run.fold
    states = {n: (_torch_layout(st["v"], g.nodes[n]["shape"]), _torch_layout(st["counts"], g.nodes[n]["shape"]),
                  st["spiking"]) for n, st in layers.items()}
    if dec is not None:
        _, cn, _ = states[out_node]
        dec.finish(cn, states[out_node][0])
        if not run.stop:  # (with stop, the chunks' step sums counted them)
            for n, (_, cn, sp) in states.items():
                if sp:
                    dec.add_total(n, cn.sum())
    return states, out_node


def _torch_layout(a, shape):
    if len(shape) == 3:
        return a.reshape((len(a),) + _hwc(shape)).transpose(0, 3, 1, 2)
    return a.reshape((len(a),) + tuple(shape))
