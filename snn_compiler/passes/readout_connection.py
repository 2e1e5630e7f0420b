"""Give a read-out that reads spikes (a neuron layer or the Input, through pools and Flatten) a
weighted connection of its own.

A network may end on its last activation, pooled: SqueezeNet's classifier is ``conv 1x1 -> ReLU
-> global average pool -> flatten``, so the read-out reads a Flatten of a pool of an IF layer, and
in SNN form a neuron layer is fed by weighted ops only. The read-out's value is unchanged by an
identity connection placed right before it, named ``"<output>.in"``:

    (F,):       Dense, weight eye(F), no bias
    (C, H, W):  depthwise 1x1 Conv2d, groups C, weight ones, no bias

after which the pool reads an IF layer and feeds a Dense through a Flatten: a synaptic pool
(its window sum stays inside the connection) where it tiles the map, or lower_avgpool's spiking
pool otherwise. Runs after lower_maxpool (a max pool becomes an IF layer) and before
lower_avgpool (which decides which pools stay synaptic).
"""
from __future__ import annotations

import numpy as np

from ..ir import add_op, inputs_of, op_of, output_node, unique_name
from ..ir import ops as O


def _reads_spikes(g, src) -> bool:
    while isinstance(op_of(g, src), (O.Flatten, O.AvgPool2d)):
        (src,) = inputs_of(g, src)
    return O.is_hidden_neuron(op_of(g, src)) or isinstance(op_of(g, src), O.Input)


def readout_connection(graph, config) -> bool:
    out = output_node(graph)
    (src,) = inputs_of(graph, out)
    if not _reads_spikes(graph, src):
        return False
    shape = tuple(graph.nodes[src]["shape"])
    if len(shape) == 1:
        op = O.Dense(weight=np.eye(shape[0]))
    elif len(shape) == 3:
        op = O.Conv2d(weight=np.ones((shape[0], 1, 1, 1)), groups=shape[0])
    else:
        raise ValueError(f"the read-out {out} reads a value of shape {shape}; it needs features or (C, H, W) maps")
    graph.remove_edge(src, out)
    conn = add_op(graph, unique_name(graph, f"{out}.in"), op, [src])
    graph.nodes[conn]["shape"] = shape
    graph.add_edge(conn, out, port=0)
    return True
