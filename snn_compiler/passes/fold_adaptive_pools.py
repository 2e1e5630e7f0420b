"""Fold an average pool with uneven windows into the Linear that reads it.

torchvision's AlexNet and VGG end their features with ``AdaptiveAvgPool2d((6, 6))`` or ``(7, 7)``;
on a small input (64 px) the map is smaller than that or does not divide it, so the windows are
uneven, overlap, or repeat input cells, which no AvgPool2d (one kernel, one stride) expresses; a
pool with partial windows (``ceil_mode``, ``count_include_pad=False``, Keras's ``padding='same'``:
a WindowAvgPool2d) divides each border window by its own count, which no convolution expresses.
But the pool is linear and a classifier reads it through a Flatten, so

    W flatten(P x) + b = (W P) flatten(x) + b

with ``P`` the pool's matrix ((C oh ow) x (C h w), read off by sending the unit vectors of the
input through the op's own ANN reading). The Dense then reads the pool's input through a Flatten
and the pool goes. A pool read by anything else stops the compile naming what reads it.
"""
from __future__ import annotations

import numpy as np

from ..ir import add_op, inputs_of, op_of, topo_order, unique_name
from ..ir import kernels
from ..ir import ops as O

MAX_PROBE = 1 << 16  # input values a pool may be folded over (the probe's batch)


def _spatial_matrix(op, shape) -> np.ndarray:
    """(oh ow, h w): one channel's pool, pool(x)[c] = S @ x[c] for every channel c (the pool never mixes
    channels): a window pool's from its two axis matrices, an adaptive pool's read off by sending the
    unit vectors of one channel through the op's own ANN reading."""
    if isinstance(op, O.WindowAvgPool2d):
        return np.kron(*kernels.window_matrices(op.rows, op.cols, *shape[1:]))
    size = int(np.prod(shape[1:]))
    if size > MAX_PROBE:
        raise ValueError(f"an adaptive average pool over {size} values is too large to fold (at most {MAX_PROBE})")
    eye = np.eye(size).reshape((size, 1) + tuple(shape[1:]))
    return op.ann([eye]).reshape(size, -1).T


def _fold(weight, S, channels) -> np.ndarray:
    """W P for the Dense weight W (out, C oh ow) and P = S on each channel's block, without building P
    ((C oh ow) x (C h w), mostly zeros: VGG-11's is 25088 x 2048 and W P then costs 4096 x 25088 x 2048
    multiply-adds where the per-channel product costs 4096 x 512 x 49 x 4)."""
    out = weight.shape[0]
    return (weight.reshape(out * channels, S.shape[0]) @ S).reshape(out, -1)


def fold_adaptive_pools(graph, config) -> bool:
    changed = False
    for n in topo_order(graph):
        if n not in graph:  # a node this pass removed
            continue
        op = op_of(graph, n)
        if not isinstance(op, (O.AdaptiveAvgPool2d, O.WindowAvgPool2d)):
            continue
        readers = list(graph.successors(n))
        flat = readers[0] if len(readers) == 1 and isinstance(op_of(graph, readers[0]), O.Flatten) else None
        dense = list(graph.successors(flat)) if flat is not None else []
        if flat is None or not dense or not all(isinstance(op_of(graph, d), O.Dense) for d in dense):
            what = ", ".join(f"{d!r} ({O.kind(op_of(graph, d))})" for d in (dense or readers)) or "nothing"
            hw = tuple(graph.nodes[inputs_of(graph, n)[0]]["shape"][1:])
            pool = (f"adaptive average pool {n!r} (output {tuple(op.output_size)} of a {hw} map: uneven windows)"
                    if isinstance(op, O.AdaptiveAvgPool2d) else
                    f"average pool {n!r} (on a {hw} map, with partial windows: border windows divided by their "
                    f"own counts, from ceil_mode, count_include_pad=False or Keras's padding='same')")
            fix = ("" if isinstance(op, O.AdaptiveAvgPool2d) else
                   "; with whole windows it would stay a pool (count_include_pad=True, ceil_mode=False, or Keras's "
                   "padding='valid')")
            raise ValueError(f"{pool} can only be folded into a Linear that reads it through a flatten; it feeds "
                             f"{what}{fix}")
        (src,) = inputs_of(graph, n)
        shape = graph.nodes[src]["shape"]
        S = _spatial_matrix(op, shape)
        new_flat = add_op(graph, unique_name(graph, f"{flat}.of.{src}"), O.Flatten(), [src])
        for d in dense:
            dop = op_of(graph, d)
            consumers = [(c, graph.edges[d, c]["port"]) for c in graph.successors(d)]
            graph.remove_node(d)
            add_op(graph, d, O.Dense(weight=_fold(dop.weight, S, shape[0]), bias=dop.bias), [new_flat])
            for c, port in consumers:
                graph.add_edge(d, c, port=port)
        graph.remove_node(flat)
        graph.remove_node(n)
        changed = True
    return changed
