"""Compose each synaptic pool into the weighted ops that read it, for hardware without pooling.

A synaptic AvgPool2d (kernel k = stride, no padding, map size divisible by k) followed by a
weighted op is one linear map; in the integer SNN the pool sums its window, so

    conv(sumpool_k(s), W_int, stride, padding, dilation)
        == conv(s, W'_int, stride * k, padding * k, dilation 1),
    W'_int[o, c, ky*d*k + i, kx*d*k + j] = W_int[o, c, ky, kx]        (0 <= i, j < k)

    dense(flatten(sumpool_k(s)), W_int) == dense(flatten(s), W'_int),
    W'_int[:, c, y, x] = W_int[:, c, y // k, x // k]

exactly, bit for bit (float weights: the same with W / k^2). Artifacts keep their pools (the
simulator is faster with them); Lava, the partitioner and the TrueNorth exporter see only neuron
layers and weighted connections, so they call ``without_pools`` first.
"""
from __future__ import annotations

import copy

import numpy as np

from ..ir import inputs_of, op_of, topo_order
from ..ir import ops as O


def _compose_conv(op, kh, kw):
    o, cg, ch, cw = op.weight.shape
    (dh, dw), area = op.dilation, kh * kw
    size = ((ch - 1) * dh * kh + kh, (cw - 1) * dw * kw + kw)

    def spread(w, scale):
        out = np.zeros((o, cg) + size, w.dtype)
        for ky in range(ch):
            for kx in range(cw):
                out[:, :, ky * dh * kh:ky * dh * kh + kh, kx * dw * kw:kx * dw * kw + kw] = w[:, :, ky:ky + 1, kx:kx + 1] / scale if scale != 1 else w[:, :, ky:ky + 1, kx:kx + 1]
        return out

    return O.Conv2d(weight=spread(op.weight, area), bias=op.bias, stride=(op.stride[0] * kh, op.stride[1] * kw),
                    padding=(op.padding[0] * kh, op.padding[1] * kw), dilation=(1, 1), groups=op.groups,
                    weight_int=None if op.weight_int is None else spread(op.weight_int, 1), weight_exp=op.weight_exp)


def _compose_dense(op, pooled_shape, kh, kw):
    c, hp, wp = pooled_shape

    def spread(w, scale):
        w4 = w.reshape(w.shape[0], c, hp, wp).repeat(kh, axis=2).repeat(kw, axis=3)
        return (w4 / scale if scale != 1 else w4).reshape(w.shape[0], -1)

    return O.Dense(weight=spread(op.weight, kh * kw), bias=op.bias,
                   weight_int=None if op.weight_int is None else spread(op.weight_int, 1), weight_exp=op.weight_exp)


def compose_pools(graph, config=None) -> bool:
    pools = [n for n in topo_order(graph) if isinstance(op_of(graph, n), O.AvgPool2d)]
    for p in pools:
        op, (src,) = op_of(graph, p), inputs_of(graph, p)
        (kh, kw), pooled = op.kernel_size, graph.nodes[p]["shape"]
        if tuple(op.kernel_size) != tuple(op.stride) or any(op.padding):
            raise ValueError(f"AvgPool2d {p} is not a synaptic pool (kernel == stride, no padding); "
                             "lower_avgpool should have made it a spiking layer")
        for d in list(graph.successors(p)):
            dop = op_of(graph, d)
            if isinstance(dop, O.Conv2d) and dop.dilates_input:
                raise ValueError(f"AvgPool2d {p} feeds Conv2d {d}, which dilates its input (a transposed conv or "
                                 f"upsampling): a pool's window sum does not compose into it")
            if isinstance(dop, O.Conv2d):
                graph.nodes[d]["op"] = _compose_conv(dop, kh, kw)
            elif isinstance(dop, O.Flatten):
                for e in graph.successors(d):
                    graph.nodes[e]["op"] = _compose_dense(op_of(graph, e), pooled, kh, kw)
            else:
                raise ValueError(f"AvgPool2d {p} feeds {O.kind(dop)} {d}; a synaptic pool feeds Dense/Conv2d only")
            graph.add_edge(src, d, port=graph.edges[p, d]["port"])
        graph.remove_node(p)
    return bool(pools)


def without_pools(graph):
    """``graph`` itself when it has no AvgPool2d, else a composed copy (the input is not changed)."""
    if not any(isinstance(op_of(graph, n), O.AvgPool2d) for n in graph):
        return graph
    g = copy.deepcopy(graph)
    compose_pools(g)
    from ..ir import verify
    verify(g)
    return g
