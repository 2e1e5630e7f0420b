"""How a compiled snnc graph maps onto Lava, in numpy and scipy.sparse (importable without Lava).

Lava lays maps out as (W, H, C) where snnc (torch) uses (C, H, W); Lava's Conv is a true
convolution (kernel flipped) with weights (O, kW, kH, I) and (W, H)-ordered stride/padding;
a Dense reading a map sees it flattened in Lava's order, so its columns are permuted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from snn_compiler.ir import inputs_of, op_of, topo_order, verify
from snn_compiler.ir import ops as O
from snn_compiler.ir.layers import incoming, input_range, signed_row_sums, weight_bounds
from snn_compiler.ir.neuron import decays_of
from snn_compiler.ir.registers import REFERENCE, Registers


def lava_shape(shape) -> Tuple[int, ...]:
    """torch (C, H, W) -> Lava (W, H, C); vectors unchanged."""
    return tuple(int(s) for s in shape[::-1]) if len(shape) == 3 else tuple(int(s) for s in shape)


def to_lava(a: np.ndarray, ndim: int) -> np.ndarray:
    """Reverse the last ``ndim`` == 3 axes of ``a`` ((..., C, H, W) -> (..., W, H, C))."""
    if ndim != 3:
        return a
    lead = tuple(range(a.ndim - 3))
    return a.transpose(lead + (a.ndim - 1, a.ndim - 2, a.ndim - 3))


def from_lava(a: np.ndarray, ndim: int) -> np.ndarray:
    return to_lava(a, ndim)  # the permutation is its own inverse


def dense_weight(w: np.ndarray, src_shape) -> np.ndarray:
    """Dense (out, in) with columns in torch's flatten order of ``src_shape`` -> Lava's order."""
    if len(src_shape) != 3:
        return w
    c, h, wd = src_shape
    return w.reshape(w.shape[0], c, h, wd).transpose(0, 3, 2, 1).reshape(w.shape[0], -1)


def conv_weight(w: np.ndarray) -> np.ndarray:
    """torch (O, I, kH, kW) correlation kernel -> Lava (O, kW, kH, I) convolution kernel."""
    return np.ascontiguousarray(w.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])


# Lava's Conv process keeps kernel size, stride, padding, dilation and groups in int8 Vars: a
# larger value would wrap (a 128-channel depthwise skip would become groups -128).
LAVA_CONV_INT8_MAX = 127


def conv_geometry(op) -> Dict[str, int]:
    """The values of a conv op that Lava's Conv keeps in its int8 Vars (largest of each pair)."""
    return {"groups": int(op.groups), "kernel size": int(max(op.weight.shape[2:])), "stride": int(max(op.stride)),
            "padding": int(max(op.padding)), "dilation": int(max(op.dilation))}


def why_sparse(op) -> Optional[str]:
    """None when Lava's Conv process can run conv ``op`` exactly, else why it becomes a Sparse matrix."""
    why = []
    if int(getattr(op, "weight_exp", 0) or 0):
        why.append("a weight exponent (Lava's Conv ignores it)")
    big = [f"{reg} {val}" for reg, val in conv_geometry(op).items() if val > LAVA_CONV_INT8_MAX]
    if big:
        why.append(f"{', '.join(big)} beyond Lava Conv's int8 registers (max {LAVA_CONV_INT8_MAX})")
    if tuple(getattr(op, "input_dilation", (1, 1))) != (1, 1):
        why.append("input dilation (a transposed conv or upsampling; Lava's Conv has none)")
    return "; ".join(why) or None


def conv_matrix(w, in_shape, out_shape, stride, padding, dilation, groups, input_dilation=(1, 1)):
    """torch's conv2d (weight ``w`` (O, I/g, kH, kW)) as a scipy CSR matrix (out, in) between maps
    flattened in Lava's (W, H, C) order. Built one kernel tap at a time from the non-zero weights,
    so memory follows the synapse count: never the dense (out x in) matrix (a 256-channel 8x8
    depthwise skip would be 16384 x 16384) nor a full index grid."""
    from scipy.sparse import coo_matrix
    C, H, W = in_shape
    O_, Ho, Wo = out_shape
    _, cg, kh, kw = w.shape
    og = O_ // groups
    w = np.asarray(w, np.int64)
    shape = (O_ * Ho * Wo, C * H * W)
    idx = np.int32 if max(shape) < (1 << 31) else np.int64
    rows, cols, vals = [], [], []
    oy, ox = np.arange(Ho), np.arange(Wo)
    (dy, dx) = input_dilation  # input row i sits at dy * i of the zero-inserted map the conv reads
    for ky in range(kh):
        y = oy * stride[0] - padding[0] + ky * dilation[0]
        ys = np.flatnonzero((y >= 0) & (y < dy * (H - 1) + 1) & (y % dy == 0))
        for kx in range(kw):
            x = ox * stride[1] - padding[1] + kx * dilation[1]
            xs = np.flatnonzero((x >= 0) & (x < dx * (W - 1) + 1) & (x % dx == 0))
            o, ci = np.nonzero(w[:, :, ky, kx])
            if not (o.size and xs.size and ys.size):
                continue
            c = (o // og) * cg + ci
            out_pos = (xs[:, None] * Ho + ys[None, :]).reshape(-1, 1)        # Lava flatten order of (W, H, C)
            in_pos = (x[xs][:, None] // dx * H + y[ys][None, :] // dy).reshape(-1, 1)
            rows.append((out_pos * O_ + o).astype(idx).reshape(-1))
            cols.append((in_pos * C + c).astype(idx).reshape(-1))
            vals.append(np.broadcast_to(w[o, ci, ky, kx].astype(np.int32), (len(out_pos), o.size)).reshape(-1))
    if not rows:
        return coo_matrix(shape, dtype=np.int32).tocsr()
    # every (row, col) pair is one synapse, so the conversion sums nothing
    return coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape).tocsr()


@dataclass
class LayerPlan:
    name: str
    kind: str                      # the op's label: IF, LIF, Output, Output LIF
    shape: Tuple[int, ...]         # torch order
    lshape: Tuple[int, ...]        # Lava order
    theta: int
    bias: np.ndarray               # int64, full lshape
    v_init: int
    depth: int
    spiking: bool
    reset: str = "subtract"
    vmax: int = REFERENCE.v_max
    decay_v: Optional[np.ndarray] = None   # int64, full lshape; None: no leak
    decay_u: int = 4096


@dataclass
class ConnPlan:
    name: str                      # the weighted op's node
    src: str                       # source neuron layer or Input
    dst: str                       # target neuron layer
    kind: str                      # "dense", "conv", or "sparse" (a conv Lava's Conv cannot run: see why_sparse)
    weight: object                 # int64 array, Lava form; sparse: scipy CSR (int32), Lava's flatten orders
    graded: bool                   # source is the (graded) Input
    delay: int                     # extra hardware steps (relay) so the connection delivers the logical step it reads
    steps: int = 0                 # the IR's Delay (logical steps late, 0: within the step); see lava_depths
    flatten: bool = False          # a Dense reading a map (port flattened in Lava's order)
    stride: Tuple[int, int] = (1, 1)     # (W, H) order
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    weight_exp: int = 0            # a = (W @ s) << weight_exp (Lava Dense/Sparse; Lava's Conv ignores it)
    why: Optional[str] = None      # sparse: why the conv is not a Lava Conv
    bounds: Tuple[int, int] = (0, 0)     # worst-case (low, high) per-step sum over its output neurons


@dataclass
class NetPlan:
    input: str
    input_op: O.Input
    input_shape: Tuple[int, ...]
    input_lshape: Tuple[int, ...]
    layers: Dict[str, LayerPlan]   # topological order
    conns: List[ConnPlan]
    output: str
    depth: int                     # depth of the Output: a run of T steps takes T + depth hardware steps
    meta: dict = field(default_factory=dict)


def _source(graph, name):
    """(source, flat, steps): what weighted op ``name`` reads through Flatten and Delays, whether it
    reads it flattened, and how many logical steps late (the Delays' sum)."""
    (src,) = inputs_of(graph, name)
    flat, steps = False, 0
    while isinstance(op_of(graph, src), (O.Flatten, O.Delay)):
        flat = flat or isinstance(op_of(graph, src), O.Flatten)
        steps += int(op_of(graph, src).steps) if isinstance(op_of(graph, src), O.Delay) else 0
        (src,) = inputs_of(graph, src)
    return src, flat, steps


class DelayError(ValueError):
    """A recurrent or delayed connection that Lava cannot deliver on time (it would arrive late)."""


def lava_depths(graph) -> Dict[str, int]:
    """``{node: depth}`` for the Input (0) and every neuron layer: the hardware step (after a sample
    window starts) at which the layer runs its logical step 0, the smallest depths such that every
    connection can be delivered on time.

    Every Lava connection takes one hardware step, so a connection from ``s`` into ``t`` that reads
    ``D`` steps late (D = 0: within the step) needs ``depth[t] + D >= depth[s] + 1``; the rest,
    ``D + depth[t] - depth[s] - 1`` steps, a relay adds (``ConnPlan.delay``). Longest paths over
    these constraints (Bellman-Ford: weights 1 - D) give the depths. A loop whose connections
    outnumber its Delays' steps (a feedback from a deeper layer through too short a Delay) has no
    depths: DelayError names its layers and both counts. Feed-forward graphs get the depths of
    :func:`snn_compiler.ir.layers.layer_depths` (one step per connection on the longest path).
    """
    order = topo_order(graph)
    inp = next(n for n in order if isinstance(op_of(graph, n), O.Input))
    layers = [n for n in order if isinstance(op_of(graph, n), O.NEURONS)]
    edges = []  # (source, target, weight 1 - D, op)
    for n in layers:
        for k in _incoming(graph, n):
            src, _, steps = _source(graph, k)
            if src != inp and src not in layers:
                raise ValueError(f"layer {n!r}: op {k!r} reads {src!r}, which is not a neuron layer or the Input")
            edges.append((src, n, 1 - steps, k))
    depth = {n: 1 for n in layers}  # a layer never runs before the input it may read
    depth[inp] = 0
    pred = {}
    for _ in range(len(layers) + 1):
        changed = None
        for s, t, w, k in edges:
            if depth[s] + w > depth[t]:
                depth[t], pred[t], changed = depth[s] + w, (s, k), t
        if changed is None:
            return depth
    # still growing after |layers| rounds: a loop with more connections than steps of delay
    seen, n = [], changed
    while n not in seen:
        seen.append(n)
        n = pred[n][0]
    loop = seen[seen.index(n):][::-1]  # in data-flow order
    ops = [pred[loop[(i + 1) % len(loop)]][1] for i in range(len(loop))]  # the op into each next layer
    steps = sum(1 - w for s, t, w, k in edges if k in ops)
    raise DelayError(
        f"the loop {' -> '.join(loop + [loop[0]])} (through {', '.join(repr(k) for k in ops)}) takes {len(ops)} "
        f"hardware steps on Lava (every connection adds one) but its Delays give {steps} step{'s' * (steps != 1)}: "
        f"a feedback into an earlier layer needs a Delay of at least 1 + the layers it spans ({len(ops)} here)")


def _incoming(graph, layer):
    try:
        return incoming(graph, layer)
    except ValueError as e:
        raise ValueError(f"{e}; the Lava backend needs a compiled (SNN-form) graph") from None


def make_plan(graph, readout: str = "membrane") -> NetPlan:
    """The Lava mapping of a quantized SNN-form graph (raises ValueError when it is not one)."""
    state = graph.graph.get("snnc", {})
    if not state.get("quantized"):
        raise ValueError("the Lava backend needs a quantized graph (compile it first)")
    from snn_compiler.passes.compose_pools import without_pools
    graph = without_pools(graph)  # Lava has no pooling synapse: a pool joins the next connection
    verify(graph)  # fills in shapes
    order = topo_order(graph)
    inp = next(n for n in order if isinstance(op_of(graph, n), O.Input))
    out = next(n for n in order if O.is_readout(op_of(graph, n)))
    depth = lava_depths(graph)
    layers, conns = {}, []
    for n in order:
        op = op_of(graph, n)
        if not isinstance(op, O.NEURONS):
            continue
        shape = tuple(graph.nodes[n]["shape"])
        feeds = [(k,) + _source(graph, k) for k in _incoming(graph, n)]
        spiking = not (n == out and readout == "membrane")
        layers[n] = LayerPlan(
            name=n, kind=O.kind(op), shape=shape, lshape=lava_shape(shape), theta=int(op.threshold),
            bias=to_lava(np.broadcast_to(np.asarray(op.bias, np.int64), shape), len(shape)).copy(),
            v_init=int(op.v_init) if spiking else 0, depth=depth[n], spiking=spiking, reset=op.reset, vmax=op.v_max,
            decay_v=to_lava(decays_of(op, shape), len(shape)).copy() if op.leaky else None, decay_u=int(op.decay_u))
        for k, src, flat, steps in feeds:
            kop = op_of(graph, k)
            src_shape = tuple(graph.nodes[src]["shape"])
            w = np.asarray(kop.weight_int, np.int64)
            c = ConnPlan(name=k, src=src, dst=n, kind="dense" if isinstance(kop, O.Dense) else "conv",
                         weight=None, graded=isinstance(op_of(graph, src), O.Input),
                         delay=steps + depth[n] - depth[src] - 1, steps=steps,
                         weight_exp=int(getattr(kop, "weight_exp", 0) or 0))
            lo, hi = weight_bounds(signed_row_sums(O.effective_weights(kop)), *input_range(graph, k))
            c.bounds = (int(lo.min(initial=0)), int(hi.max(initial=0)))
            c.why = why_sparse(kop) if c.kind == "conv" else None
            if c.why:
                # A weight exponent (which Lava's Conv ignores) or a geometry beyond its int8 Vars:
                # the conv becomes a Sparse matrix, which holds any geometry and applies the exponent.
                c.kind = "sparse"
                c.weight = conv_matrix(w, src_shape, shape, kop.stride, kop.padding, kop.dilation, kop.groups,
                                       tuple(kop.input_dilation))
                c.flatten = True
            elif c.kind == "dense":
                c.weight = dense_weight(w, src_shape)
                c.flatten = len(src_shape) != 1
            else:
                c.weight = conv_weight(w)
                c.stride, c.padding, c.dilation = (tuple(int(v) for v in p[::-1])
                                                   for p in (kop.stride, kop.padding, kop.dilation))
                c.groups = int(kop.groups)
            conns.append(c)
    inp_op = op_of(graph, inp)
    ishape = tuple(graph.nodes[inp]["shape"])
    return NetPlan(input=inp, input_op=inp_op, input_shape=ishape, input_lshape=lava_shape(ishape), layers=layers,
                   conns=conns, output=out, depth=depth[out])


# ---- stock LIF as integrate-and-fire (reset to zero) -----------------------------------------
# Lava's bit-accurate LIF with du=4095, dv=0 and bias_exp = 6 + e computes, in units of 1/64:
#   u = wrap24(a << 6),  v = clip(v + u + (bias << 6), +-(2**23 - 1)),  spike when v > vth << 6
# so with vth = theta - 1 it is the snnc IF with reset to zero exactly while a << 6 does not wrap
# and 64 * v stays inside the clip: |a| and |v| <= 2**17 - 1 (the synaptic input a includes
# v_init on each window's first step, where it is injected through a unit-weight Dense).
LIF_LIMIT = (1 << 17) - 1
STOCK_LIF_BIAS = Registers(bias_mantissa_bits=13, bias_exponent_bits=3)  # LIF's bias_mant (13 bits) << bias_exp (3)


def lif_fit(plan: NetPlan, layer: str, timesteps: int) -> Optional[str]:
    """None if stock LIF reproduces ``layer`` exactly over ``timesteps``, else the reason why not."""
    lp = plan.layers[layer]
    if lp.reset != "zero":
        return "stock LIF only resets to zero"
    if lp.kind != "IF" or not lp.spiking:
        return f"{lp.kind} layers run on the snnc neuron (stock LIF: hidden IF layers only)"
    if not 1 <= lp.theta <= LIF_LIMIT + 1:
        return f"threshold {lp.theta} - 1 does not fit vth (17 bits)"
    try:
        STOCK_LIF_BIAS.split_bias(lp.bias)
    except ValueError as e:
        return str(e)
    lo = hi = 0
    for c in plan.conns:
        if c.dst == layer:  # each op bounded alone (its worst neuron), then summed
            lo, hi = lo + c.bounds[0], hi + c.bounds[1]
    a_max = max(-lo, hi) + lp.v_init
    if a_max > LIF_LIMIT:
        return f"synaptic input up to {a_max} would wrap LIF's u register (a << 6 in 24 bits)"
    b = lp.bias.reshape(-1)
    cur_lo, cur_hi = lo + b.min(initial=0), hi + b.max(initial=0)
    v_lo = min(lp.v_init, lp.v_init + timesteps * min(cur_lo, 0))
    v_hi = max(lp.theta - 1, lp.v_init) + max(cur_hi, 0)
    if max(-v_lo, v_hi) > LIF_LIMIT:
        return f"membrane range [{v_lo}, {v_hi}] would be clipped by LIF's v register (v << 6 in 24 bits)"
    return None
