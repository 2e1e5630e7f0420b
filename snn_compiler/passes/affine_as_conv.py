"""Turn a per-channel Affine that fold_batchnorm could not fold into a connection, where it is one.

A pre-activation BatchNorm (DenseNet: ``BN -> ReLU -> conv`` on a concatenation of earlier
layers' outputs) reads a neuron layer, the Input, or a convolution that other layers read too,
and feeds a ReLU: it folds into no neighbouring Dense/Conv2d (fold_batchnorm's rules), so it is
left as an ``Affine(scale s, shift t)``. But ``x * s + t`` per channel is itself a weighted op:

    (C, H, W):  depthwise 1x1 Conv2d, groups C, weight s (C, 1, 1, 1), bias t
    (F,):       Dense, weight diag(s), bias t

exactly. Reading a neuron layer or the Input, that is a connection into the neuron layer after
it (SNN form); reading a current (a Dense, Conv2d or Add: no activation between), it is a
pointwise op that compose_linear composes into the ops it reads. So the Affine becomes that op,
under its own name, wherever it reads one of those and feeds neuron layers only. Any other
Affine is left for check_snn_form to name.
"""
from __future__ import annotations

import numpy as np

from ..ir import inputs_of, op_of, topo_order
from ..ir import ops as O


def _as_weighted(op, shape):
    s, t = np.asarray(op.scale, np.float64), np.asarray(op.shift, np.float64)
    if len(shape) == 1:
        return O.Dense(weight=np.diag(s), bias=t.copy())
    return O.Conv2d(weight=s.reshape(-1, 1, 1, 1).copy(), bias=t.copy(), groups=len(s))


def affine_as_conv(graph, config) -> bool:
    changed = False
    for n in topo_order(graph):
        op = op_of(graph, n)
        if not isinstance(op, O.Affine):
            continue
        (src,) = inputs_of(graph, n)
        reads = op_of(graph, src)
        if not (isinstance(reads, (O.Neuron, O.Input, O.Dense, O.Conv2d, O.Add)) and not O.is_readout(reads)):
            continue
        if not all(isinstance(op_of(graph, d), O.Neuron) for d in graph.successors(n)):
            continue
        graph.nodes[n]["op"] = _as_weighted(op, graph.nodes[n]["shape"])
        changed = True
    return changed
