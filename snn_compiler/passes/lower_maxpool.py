"""Lower every MaxPool2d into IF layers with fixed +1/-1/0 selection weights (SNN-form ops only).

Method. For non-negative a, b (spike rates, ReLU outputs)

    max(a, b) = relu(a - b) + b

so the max of a window of n values is a binary tree of such steps: at each level, pairs of the
previous level's values (u, v) become ``relu(u - v) + v``, an odd one out is carried up as it is.
Every ``relu`` is an IF layer (one per tree level, one neuron per pair, channels grouped per
input channel); every value in the tree is a *sum* of neuron layers (the leaves are the pool's
input X, the differences D_1..D_L), so no extra layer is needed to add the ``+ v`` terms: each
later layer simply gets one connection per neuron layer the value involves, summed by an Add.
The pool's output becomes one more IF layer M whose ANN reading ``relu(max) = max`` is exact:

    D_l  = IF( sum over sources S in {X, D_1..D_l-1} of conv_S(S) )     (pairs of level l)
    M    = IF( conv_X(X) + sum_l conv_l(D_l) )                          (the pool's output)

``conv_X`` is a depthwise Conv2d with the pool's kernel, stride, padding and dilation whose
one-hot-ish kernel (+1, -1, 0) picks window elements (padding reads 0, which is the max of
non-negative values wherever a window holds at least one element); ``conv_l`` are 1x1 grouped
Conv2d (+1, -1, 0) between the tree's layers. No biases. In the ANN the lowering is exact
(tests check it to 1e-9); normalize gives each new layer its own scale from the calibration data
and quantize its integer weights, like any layer (all connections are ±1 patterns, so 8 bits
hold them exactly up to the ratio of scales).

Cost for a k x k window (n = k^2 values, L = ceil(log2 n) tree levels): L + 1 more neuron layers
on the path (pipeline depth), and per pooled output n - 1 difference neurons plus M, i.e. n
neurons: as many as the pool's input has when kernel == stride. A 2x2 pool: 3 layers (D_1 with 2
neurons per output, D_2 with 1, M with 1) and 11 synapses per output (D_1: 2 x 2 from X; D_2: 2
from X and 2 from D_1; M: one each from X, D_1 and D_2).

Why this method: it needs nothing but IF neurons and fixed weights, so every engine (numpy and
numba emulators, Lava, the core mapper, the TrueNorth check) runs it unchanged and bit-exactly,
and the ANN it computes is exactly the trained one. Spike-count gating (Rueckauer et al. 2017)
routes the spikes of the neuron that has fired most so far: it needs a gate with state and
comparators that neither Lava's Dense/Conv nor a crossbar has. Max-pooling the spikes themselves
(SpikingJelly's default: a spike leaves the window when any input spiked) needs no new neurons
but overestimates the max of rates (the OR of several spike trains fires more often than the
fastest of them), more so the more the window's neurons fire out of step.

Accuracy cost: rate coding's usual one, once per extra layer. An IF difference neuron fires for
``a - b`` summed so far, so when ``b``'s spikes lag ``a``'s it can fire early and cannot take
those spikes back. On the digits CNN of tests/test_maxpool.py the pooled layer's spike count
differs from the (rescaled) max of its input's counts by 0.3-0.4 spikes on average (+0.1 bias,
99th percentile 1.5-2 spikes) at T = 16, 32 and 64 alike, so its share falls as 1/T; the int8 SNN
is at most 0.2 points below the ANN at T = 8..64 (98.15-99.07% against 98.33%). MNIST VGG
figures: benchmarks/README.md.

Sources. The input must be non-negative: the pool must read a (converted) IF layer, i.e. follow
a ReLU. ``maxpool -> ReLU`` (as in ``F.relu(F.max_pool2d(conv(x), 2))``) is rewritten first to
``ReLU -> maxpool``, exactly (relu is monotone, so it commutes with max), when the pool reads a
weighted op, a BatchNorm/Affine or an Add and the ReLU is its only consumer. A pool that already
feeds only a converted IF layer (``relu(maxpool(relu(x)))``) uses that layer as M. Anything else
(the Input, whose sign is unknown; a trained LIF layer, which has no ANN reading to calibrate the
new layers with; a pool followed by a BatchNorm) raises ValueError naming the pool's node, i.e.
its module path.
"""
from __future__ import annotations

import numpy as np

from ..ir import add_op, inputs_of, op_of, topo_order, unique_name, verify
from ..ir import ops as O


def _converted_if(op) -> bool:
    """A hidden IF layer converted from a ReLU (non-negative ANN output, scale from calibration)."""
    return O.is_hidden_neuron(op) and not op.leaky and op.spike_value is None


def _tree(n: int):
    """The max tree over leaves 0..n-1 as linear forms.

    Returns (levels, out): ``levels[l]`` lists level l+1's difference units, each a dict
    ``{term: coefficient}`` over terms ``("x", leaf)`` and ``("d", level, unit)``; ``out`` is the
    max as such a dict. ``max(u, v) = relu(u - v) + v`` at every pair, left to right.
    """
    items = [{("x", j): 1.0} for j in range(n)]
    levels = []
    while len(items) > 1:
        units, nxt = [], []
        for i in range(0, len(items) - 1, 2):
            u, v = items[i], items[i + 1]
            diff = dict(u)
            for t, c in v.items():
                diff[t] = diff.get(t, 0.0) - c
            units.append({t: c for t, c in diff.items() if c})
            val = dict(v)
            val[("d", len(levels) + 1, len(units) - 1)] = 1.0
            nxt.append(val)
        if len(items) % 2:
            nxt.append(items[-1])
        levels.append(units)
        items = nxt
    return levels, items[0]


def _connections(forms, channels, window, level_sizes):
    """{source key: weight} for a layer whose units (per channel) are ``forms``: ``"x"`` ->
    (C*p, 1, kh, kw) depthwise selection of window elements, level l -> (C*p, p_l, 1, 1)."""
    p = len(forms)
    kh, kw = window
    w_x = np.zeros((p, kh * kw))
    w_d = {}
    for u, form in enumerate(forms):
        for t, c in form.items():
            if t[0] == "x":
                w_x[u, t[1]] = c
            else:
                _, lvl, unit = t
                w_d.setdefault(lvl, np.zeros((p, level_sizes[lvl])))[u, unit] = c
    conns = {}
    if np.any(w_x):
        conns["x"] = np.tile(w_x.reshape(p, 1, kh, kw), (channels, 1, 1, 1))
    for lvl, w in sorted(w_d.items()):
        if np.any(w):
            conns[lvl] = np.tile(w.reshape(p, -1, 1, 1), (channels, 1, 1, 1))
    return conns


def _check_windows(graph, n, op, shape):
    """Every window must hold an input element (zero padding is then the -inf of max_pool2d)."""
    ones = np.ones((1, 1) + tuple(shape[1:]))
    covered = O.Conv2d(weight=np.ones((1, 1) + tuple(op.kernel_size)), stride=tuple(op.stride),
                       padding=tuple(op.padding), dilation=tuple(op.dilation)).ann([ones])
    if not np.all(covered > 0):
        raise ValueError(f"MaxPool2d {n}: some windows lie entirely in the padding (kernel {tuple(op.kernel_size)}, "
                         f"padding {tuple(op.padding)}, dilation {tuple(op.dilation)}); reduce the padding")


def _move_relu_before(graph, pool, src, relu) -> None:
    """``src -> pool -> relu -> consumers``  becomes  ``src -> relu -> pool -> consumers`` (exact)."""
    port = graph.edges[src, pool]["port"]
    consumers = [(d, graph.edges[relu, d]["port"]) for d in graph.successors(relu)]
    graph.remove_edge(src, pool)
    graph.remove_edge(pool, relu)
    for d, _ in consumers:
        graph.remove_edge(relu, d)
    graph.add_edge(src, relu, port=port)
    graph.add_edge(relu, pool, port=0)
    for d, dport in consumers:
        graph.add_edge(pool, d, port=dport)


def _source(graph, n):
    """The pool's non-negative source X (an IF layer), moving a following ReLU in front when exact."""
    (src,) = inputs_of(graph, n)
    sop = op_of(graph, src)
    if _converted_if(sop):
        return src
    outs = list(graph.successors(n))
    movable = isinstance(sop, (O.Dense, O.Conv2d, O.BatchNorm, O.Affine, O.Add))
    if movable and len(outs) == 1 and _converted_if(op_of(graph, outs[0])):
        _move_relu_before(graph, n, src, outs[0])
        return outs[0]
    if isinstance(sop, O.Neuron) and O.is_hidden_neuron(sop):
        why = "a trained spiking layer has no ANN reading to calibrate the max tree's layers with"
    else:
        why = ("its input may be negative; snnc computes max(a, b) = relu(a - b) + b with IF neurons, which "
               "needs non-negative (ReLU) inputs")
    raise ValueError(f"MaxPool2d {n} follows {O.kind(sop)} {src}, not a ReLU: {why}; put the pool after the "
                     "activation (ReLU then MaxPool2d)")


def _layer(graph, base, conns, sources, geometry, channels, neuron=None, keep_name=None):
    """Conv2d ops for ``conns`` ({key: weight}) reading ``sources[key]`` (named ``<base>.in_x``,
    ``<base>.in_max<l>``), an Add when there are several, and a new IF layer ``base`` (or
    ``neuron``, an existing IF node to feed). With ``keep_name`` the op summing into the layer
    (the Add, or the one Conv2d) takes that name and a new IF is ``<keep_name>.if``. Returns the IF."""
    ops = []
    for key, w in conns.items():
        src = sources[key]
        name = keep_name if keep_name and len(conns) == 1 else f"{base}.in_{'x' if key == 'x' else f'max{key}'}"
        conv = O.Conv2d(weight=w, bias=None, groups=channels, **(geometry if key == "x" else {}))  # per channel
        ops.append(add_op(graph, unique_name(graph, name), conv, [src]))
    if len(ops) > 1:
        ops = [add_op(graph, unique_name(graph, keep_name or f"{base}.sum"), O.Add(), ops)]
    if neuron is not None:
        graph.add_edge(ops[0], neuron, port=0)
        return neuron
    return add_op(graph, unique_name(graph, f"{keep_name}.if" if keep_name else base), O.IF(), ops)


def lower_maxpool(graph, config) -> bool:
    """Replace each MaxPool2d by the IF layers of its max tree (see the module docstring)."""
    verify(graph)
    pools = [n for n in topo_order(graph) if isinstance(op_of(graph, n), O.MaxPool2d)]
    if not pools:
        return False
    for n in pools:  # topological: a pool after a pool reads the IF made for the first one
        op = op_of(graph, n)
        x = _source(graph, n)
        verify(graph)  # shapes of the layers made for an earlier pool, or of a ReLU moved in front
        shape = graph.nodes[x]["shape"]
        _check_windows(graph, n, op, shape)
        c = shape[0]
        window = tuple(op.kernel_size)
        geometry = dict(stride=tuple(op.stride), padding=tuple(op.padding), dilation=tuple(op.dilation))
        levels, out = _tree(window[0] * window[1])
        sizes = {l + 1: len(units) for l, units in enumerate(levels)}
        sources = {"x": x}
        for l, units in enumerate(levels, start=1):
            conns = _connections(units, c, window, sizes)
            sources[l] = _layer(graph, f"{n}.max{l}", conns, sources, geometry, c)
        consumers = [(d, graph.edges[n, d]["port"]) for d in graph.successors(n)]
        reuse = consumers[0][0] if len(consumers) == 1 and _converted_if(op_of(graph, consumers[0][0])) else None
        graph.remove_node(n)
        conns = _connections([out], c, window, sizes)
        m = _layer(graph, n, conns, sources, geometry, c, neuron=reuse, keep_name=n)
        if reuse is None:
            for d, port in consumers:
                graph.add_edge(m, d, port=port)
    verify(graph)
    return True
