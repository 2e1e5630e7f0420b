"""Walking an SNN-form graph by neuron layers: which weighted ops feed a layer, from where.

Shared by the passes, the emulator, the core mapper and the backends.
"""
from __future__ import annotations

import numpy as np

from .graph import inputs_of, op_of
from . import ops as O


def source_of(graph, name: str) -> str:
    """The neuron layer or Input a weighted op reads, looking through Flatten and synaptic pools."""
    return source_and_area(graph, name)[0]


def source_and_area(graph, name: str):
    """(source, pool area): the neuron layer or Input a weighted op reads (through Flatten,
    synaptic pools and a Delay), and how many source values each of its integer inputs sums (the
    product of the synaptic pools' window sizes)."""
    src, area, _ = _walk_back(graph, name)
    return src, area


def delay_steps(graph, name: str) -> int:
    """How many whole steps late weighted op ``name`` reads its source (the Delays on its way; 0
    for a connection within the step)."""
    return _walk_back(graph, name)[2]


def _walk_back(graph, name: str):
    """(source, pool area, delay steps) of weighted op ``name``, walking back through Flatten,
    synaptic pools and Delays."""
    (src,) = inputs_of(graph, name)
    area, steps = 1, 0
    while isinstance(op_of(graph, src), (O.Flatten, O.AvgPool2d, O.Delay)):
        op = op_of(graph, src)
        if isinstance(op, O.AvgPool2d):
            area *= op.kernel_size[0] * op.kernel_size[1]
        elif isinstance(op, O.Delay):
            steps += int(op.steps)
        (src,) = inputs_of(graph, src)
    return src, area, steps


def is_synaptic_pool(graph, name: str) -> bool:
    """An AvgPool2d that can stay a sum inside a connection (see ops.AvgPool2d)."""
    op = op_of(graph, name)
    if not isinstance(op, O.AvgPool2d) or tuple(op.kernel_size) != tuple(op.stride) or any(op.padding):
        return False
    (src,) = inputs_of(graph, name)
    if not O.is_hidden_neuron(op_of(graph, src)) and not isinstance(op_of(graph, src), O.Input):
        return False
    h, w = graph.nodes[src]["shape"][1:]
    if h % op.kernel_size[0] or w % op.kernel_size[1]:
        return False  # the pool drops edge rows a composed connection would read
    todo = list(graph.successors(name))
    while todo:
        d = todo.pop()
        if isinstance(op_of(graph, d), O.Flatten):
            todo.extend(graph.successors(d))
        elif not isinstance(op_of(graph, d), O.WEIGHTED):
            return False
    return True


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


def signed_row_sums(w, largest=None):
    """(sum of the positive, sum of the negative) weights of each output row of integer weights ``w``
    (out, ...), int64. Narrow integers are clipped in their own type and summed into int64 (no int64
    copy of a big layer's weights); exact while a row holds fewer than 2**32 int32 weights.
    ``largest``: a bound on ``|w|`` the caller knows (quantize's wmax); where a row's sum of absolute
    values stays below it times the row's length < 2**31, both sums accumulate in int32, exactly
    (a third of the time on VGG-11's 9 M weights), from the row's sum and its sum of absolute values."""
    w = np.asarray(w)
    w = w.reshape(len(w), -1)
    if w.dtype.kind not in "iu" or w.dtype.itemsize > 4:
        w = w.astype(np.int64)
    if largest is not None and w.dtype.kind == "i" and int(largest) * w.shape[1] < 2 ** 31:
        total = w.sum(1, dtype=np.int32).astype(np.int64)
        size = np.abs(w).sum(1, dtype=np.int32).astype(np.int64)
        return (size + total) // 2, (total - size) // 2
    return np.clip(w, 0, None).sum(1, dtype=np.int64), np.clip(w, None, 0).sum(1, dtype=np.int64)


def weight_bounds(sums, in_max, signed_in):
    """(low, high) worst-case per-step sums of one connection, per output channel or neuron, from the
    :func:`signed_row_sums` of its effective integer weights, reading inputs in ``0..in_max``
    (``±in_max`` when ``signed_in``)."""
    pos, neg = sums
    if signed_in:
        return -(pos - neg) * in_max, (pos - neg) * in_max
    return neg * in_max, pos * in_max


def sum_abs_bound(w, in_max) -> float:
    """The largest ``sum_i |w_i| * in_max`` over a connection's outputs (``w`` (out, ...) integer
    weights, inputs within ``±in_max``): no partial sum of one output, in any order, exceeds it
    (what makes float BLAS exact below 2**24 / 2**53). In float64, so hostile weights cannot wrap."""
    w = np.asarray(w)
    if not w.size:
        return 0.0
    if w.dtype.kind in "iu" and w.dtype.itemsize <= 4:  # int64 row sums of int32 weights cannot wrap
        pos, neg = signed_row_sums(w)
        return float((pos - neg).max()) * in_max
    return float(np.abs(w.reshape(len(w), -1).astype(np.float64)).sum(axis=1).max()) * in_max


def value_range(graph, name):
    """(largest |value|, signed) of what node ``name`` sends each step in the integer SNN: the
    graded Input's levels, 1 for a spike, times the window area of each synaptic pool on the way
    (a pool sums its window); None for any other node (a current: nothing is proved)."""
    op = op_of(graph, name)
    if isinstance(op, O.Input):
        return op.levels, op.signed
    if isinstance(op, O.NEURONS):
        return 1, False
    if isinstance(op, (O.Flatten, O.AvgPool2d, O.Delay)):
        (src,) = inputs_of(graph, name)
        r = value_range(graph, src)
        area = op.kernel_size[0] * op.kernel_size[1] if isinstance(op, O.AvgPool2d) else 1
        return None if r is None else (r[0] * area, r[1])
    return None


def input_range(graph, name):
    """(in_max, signed): the largest value weighted op ``name`` reads per input, and whether it may
    be negative (:func:`value_range` of its input); None when the op reads a current (not SNN form)."""
    (src,) = inputs_of(graph, name)
    return value_range(graph, src)


def layer_depths(graph) -> dict:
    """``{node: depth}`` for the Input (0) and every neuron layer (1 + its deepest source): the
    hardware step at which a pipelined layer (one step per connection) sees logical step 0; delayed
    (recurrent) connections do not count: their source runs ahead of them by their delay."""
    from .graph import input_node, topo_order
    depth = {input_node(graph): 0}
    for n in neuron_layers(graph, topo_order(graph)):
        depth[n] = 1 + max((depth[source_of(graph, k)] for k in incoming(graph, n) if not delay_steps(graph, k)),
                           default=0)
    return depth


def neuron_layers(graph, order) -> list:
    return [n for n in order if isinstance(op_of(graph, n), O.NEURONS)]
