"""Give every identity (residual) input of an Add an explicit weighted identity connection.

In SNN form every input of an Add is a weighted op (or another Add): the Add is the sum of the
currents of a neuron layer's connections. A residual skip ``y = F(x) + x`` reads ``x`` straight
from a neuron layer (an IF, or the Input), possibly through Flatten. This pass puts an identity
connection on such an edge, named ``"<add>.skip<port>"`` (unique via ``ir.unique_name``):

    (C, H, W):  depthwise 1x1 Conv2d, groups=C, weight ones (C, 1, 1, 1), no bias:  y[c] = x[c]
    (F,):       Dense, weight eye(F), no bias:                                      y = I x = x

so every reading (ann, float, int) of the graph is unchanged, and the normalize/quantize passes
treat the skip like any other connection (it gets scaled by lambda_src / lambda_dst and
quantized; an identity has one weight per channel, so this is exact up to the weight rounding).
Adds fed by Adds are left alone (an Add of Adds is one sum).
"""
from __future__ import annotations

import numpy as np

from ..ir import add_op, inputs_of, op_of, topo_order, unique_name, verify
from ..ir import ops as O


def _neuronish(g, src) -> bool:
    """``src`` (walking back through Flatten) is an IF layer or the Input."""
    while isinstance(op_of(g, src), O.Flatten):
        (src,) = inputs_of(g, src)
    op = op_of(g, src)
    return O.is_hidden_neuron(op) or isinstance(op, O.Input)


def _identity(shape):
    if len(shape) == 3:
        c = shape[0]
        return O.Conv2d(weight=np.ones((c, 1, 1, 1)), bias=None, groups=c)
    if len(shape) == 1:
        return O.Dense(weight=np.eye(shape[0]), bias=None)
    raise ValueError(f"cannot build an identity connection for shape {shape}")


def materialize_skips(graph, config) -> bool:
    """Insert an identity Conv2d/Dense on each Add input that comes from an IF/Input (through Flatten)."""
    adds = [n for n in topo_order(graph) if isinstance(op_of(graph, n), O.Add)]
    todo = [(a, graph.edges[src, a]["port"], src) for a in adds for src in inputs_of(graph, a)
            if _neuronish(graph, src)]
    if not todo:
        return False
    verify(graph)  # shapes
    for a, port, src in todo:
        shape = graph.nodes[src]["shape"]
        name = unique_name(graph, f"{a}.skip{port}")
        graph.remove_edge(src, a)
        add_op(graph, name, _identity(shape), [src])
        graph.nodes[name]["shape"] = tuple(shape)
        graph.add_edge(name, a, port=port)
    return True
