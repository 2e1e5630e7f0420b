"""Walking an SNN-form graph by neuron layers: which weighted ops feed a layer, from where."""
from __future__ import annotations

from ..ir import inputs_of, op_of
from ..ir import ops as O


def source_of(graph, name: str) -> str:
    """The neuron layer or Input a weighted op reads, looking through Flatten."""
    (src,) = inputs_of(graph, name)
    while isinstance(op_of(graph, src), O.Flatten):
        (src,) = inputs_of(graph, src)
    return src


def incoming(graph, layer: str) -> list:
    """The weighted ops whose sums reach neuron layer ``layer`` (through Add nodes)."""
    found, todo = [], list(inputs_of(graph, layer))
    while todo:
        n = todo.pop(0)
        op = op_of(graph, n)
        if isinstance(op, O.Add):
            todo.extend(inputs_of(graph, n))
        elif isinstance(op, O.WEIGHTED):
            found.append(n)
        else:
            raise ValueError(f"neuron layer {layer!r} is fed by {O.kind(op)} {n!r}, not a weighted op")
    return found


def neuron_layers(graph, order) -> list:
    return [n for n in order if isinstance(op_of(graph, n), O.NEURONS)]
