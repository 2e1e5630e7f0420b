"""How a compiled snnc graph maps onto Lava, in plain numpy (importable without Lava).

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


@dataclass
class LayerPlan:
    name: str
    kind: str                      # "IF" or "Output"
    shape: Tuple[int, ...]         # torch order
    lshape: Tuple[int, ...]        # Lava order
    theta: int
    bias: np.ndarray               # int64, full lshape
    v_init: int
    depth: int
    spiking: bool


@dataclass
class ConnPlan:
    name: str                      # the weighted op's node
    src: str                       # source neuron layer or Input
    dst: str                       # target neuron layer
    kind: str                      # "dense" or "conv"
    weight: np.ndarray             # int64, Lava form
    graded: bool                   # source is the (graded) Input
    delay: int                     # extra hardware steps so every branch delivers the same logical step
    flatten: bool = False          # a Dense reading a map (port flattened in Lava's order)
    stride: Tuple[int, int] = (1, 1)     # (W, H) order
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1


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
    reset: str
    vmax: int
    meta: dict = field(default_factory=dict)


def _source(graph, name):
    (src,) = inputs_of(graph, name)
    flat = False
    while isinstance(op_of(graph, src), O.Flatten):
        flat = True
        (src,) = inputs_of(graph, src)
    return src, flat


def _incoming(graph, layer):
    found, todo = [], list(inputs_of(graph, layer))
    while todo:
        n = todo.pop(0)
        op = op_of(graph, n)
        if isinstance(op, O.Add):
            todo.extend(inputs_of(graph, n))
        elif isinstance(op, O.WEIGHTED):
            found.append(n)
        else:
            raise ValueError(f"neuron layer {layer!r} is fed by {O.kind(op)} {n!r}, not a weighted op; "
                             "the Lava backend needs a compiled (SNN-form) graph")
    return found


def make_plan(graph, readout: str = "membrane") -> NetPlan:
    """The Lava mapping of a quantized SNN-form graph (raises ValueError when it is not one)."""
    state = graph.graph.get("snnc", {})
    if not state.get("quantized"):
        raise ValueError("the Lava backend needs a quantized graph (compile it first)")
    verify(graph)  # fills in shapes
    order = topo_order(graph)
    inp = next(n for n in order if isinstance(op_of(graph, n), O.Input))
    out = next(n for n in order if isinstance(op_of(graph, n), O.Output))
    depth = {inp: 0}
    layers, conns = {}, []
    for n in order:
        op = op_of(graph, n)
        if not isinstance(op, O.NEURONS):
            continue
        shape = tuple(graph.nodes[n]["shape"])
        feeds = []
        for k in _incoming(graph, n):
            src, flat = _source(graph, k)
            if src not in depth:
                raise ValueError(f"layer {n!r}: op {k!r} reads {src!r}, which is not a neuron layer or the Input")
            feeds.append((k, src, flat))
        depth[n] = 1 + max(depth[s] for _, s, _ in feeds)
        spiking = not (n == out and readout == "membrane")
        layers[n] = LayerPlan(
            name=n, kind=O.kind(op), shape=shape, lshape=lava_shape(shape), theta=int(op.threshold),
            bias=to_lava(np.broadcast_to(np.asarray(op.bias, np.int64), shape), len(shape)).copy(),
            v_init=int(op.v_init) if spiking else 0, depth=depth[n], spiking=spiking)
        for k, src, flat in feeds:
            kop = op_of(graph, k)
            src_shape = tuple(graph.nodes[src]["shape"])
            w = np.asarray(kop.weight_int, np.int64)
            c = ConnPlan(name=k, src=src, dst=n, kind="dense" if isinstance(kop, O.Dense) else "conv",
                         weight=None, graded=isinstance(op_of(graph, src), O.Input),
                         delay=depth[n] - depth[src] - 1)
            if c.kind == "dense":
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
                   conns=conns, output=out, depth=depth[out], reset=state.get("reset", "subtract"),
                   vmax=(1 << (int(state.get("membrane_bits", 24)) - 1)) - 1)
