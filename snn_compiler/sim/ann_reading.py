"""The graph read as the ANN (numpy, float64): calibration, the ``ann`` backend, the report's ANN line.
The torch reading (float32, what normalize prefers) is :mod:`.torch_ann`."""
from __future__ import annotations

import numpy as np

from ..ir import input_node, inputs_of, is_recurrent, op_of, topo_order
from ..ir import ops as O


def iter_ann(graph, x, keep=(), batch_size=256, clip=()):
    """Yield, per batch, ``{node: activation}`` for the nodes in ``keep`` plus the Output node.

    Activations are in the graph's current (possibly normalised) units; the input is divided by
    Input.scale once normalisation has set it. Nodes in ``clip`` are clipped at 1 (an IF
    layer's threshold in normalised units: what a rate can reach).
    """
    check_ann_reading(graph)
    order = topo_order(graph)
    keep, clip = set(keep), set(clip)
    for start in range(0, len(x), batch_size):
        vals = {}
        for n in order:
            op = op_of(graph, n)
            if isinstance(op, O.Input):
                xb = np.asarray(x[start:start + batch_size], np.float64)
                vals[n] = xb / op.scale if op.scale else xb
            else:
                vals[n] = op.ann([vals[p] for p in inputs_of(graph, n)])
                if n in clip:
                    vals[n] = np.minimum(vals[n], 1.0)
        yield {n: vals[n] for n in vals if n in keep or O.is_readout(op_of(graph, n))}


def check_ann_reading(graph) -> None:
    """A recurrent graph has no ANN reading (its cycle is a state over time): a one-line ValueError."""
    if is_recurrent(graph):
        raise ValueError("the network is recurrent (a layer reads its own or a later layer's spikes of the previous "
                         "step): it has no ANN reading; run it as an SNN (int or float), and give its layers their "
                         "scale (a trained SNN's thresholds) instead of calibrating them")


def run_ann(graph, x, batch_size=256) -> np.ndarray:
    """The graph read as the ANN; output in the original network's units (times Output.scale)."""
    from ..data import check_values
    out = next(n for n in graph if O.is_readout(op_of(graph, n)))
    scale = op_of(graph, out).scale
    x = np.asarray(x)
    if x.ndim == len(graph.nodes[input_node(graph)]["shape"]) + 2:
        raise ValueError(f"input data has shape {x.shape}, a sequence (N, T, ...): the ANN reading takes static "
                         f"samples; run a sequence as an SNN (int or float)")
    if x.dtype.kind == "f":
        check_values("input data", x)
    parts = [acts[out] for acts in iter_ann(graph, x, batch_size=batch_size)]
    scale = 1.0 if scale is None else scale  # None: not normalised yet, already the network's units
    return np.concatenate(parts) * scale if parts else np.zeros((0,) + graph.nodes[out]["shape"])
