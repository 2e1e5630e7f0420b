"""Fold every BatchNorm into a neighbouring Dense/Conv2d; what cannot fold becomes an ``Affine``.

A BatchNorm (and an ``Affine``, the same map) is, per channel c (axis 0 of its shape),

    y = x * s + t,    s = gamma / sqrt(var + eps),    t = beta - mean * s

**Backward fold** (BN right after a Dense/Conv2d ``z = W x + b`` whose ONLY consumer is the BN):
scale the op's output channels,

    W'[o, ...] = W[o, ...] * s[o],    b'[o] = (b[o] - mean[o]) * s[o] + beta[o] = b[o] * s[o] + t[o]

which is exact for any stride, padding, dilation and groups (each output channel is one row of
W). If the op has another consumer, that consumer must keep seeing the unscaled ``z``, so the
BN does not fold backward.

**Forward fold** (BN whose ONLY consumer is a Dense, possibly through a single-consumer
Flatten, or a Conv2d with groups=1 and padding 0): ``W (x*s + t) + b = (W*s) x + (W t + b)``,

    Dense:   W'[o, i] = W[o, i] * s[i],            b' = b + W @ t
    Conv2d:  W'[o, c, i, j] = W[o, c, i, j] * s[c], b'[o] = b[o] + sum_{c,i,j} W[o, c, i, j] t[c]

For a Dense after Flatten of a (C, H, W) map, the flattened index is c*H*W + h*W + w (torch's
C,H,W order), so ``s`` and ``t`` are repeated H*W times per channel. A padded Conv2d cannot take a
forward fold: its padding zeros would have to become ``t`` (the BN's image of 0), but after the
fold they stay 0 and the border outputs would miss part of ``W t``; only padding 0 is exact. A
grouped Conv2d is left alone too (groups=1 only).

A backward fold also records on the op's node (attribute ``bn_stats``) what the BatchNorm's
training statistics say about the folded op's output, per channel: mean ``beta`` and standard
deviation ``|gamma| sqrt(var / (var + eps))`` (an Affine folded after it maps them by ``s``, ``t``);
normalize's data-free estimate (passes/datafree.py) reads them. The artifact does not store them.

Folding runs to a fixed point (so BN->BN->Dense folds both), backward folds first. A BatchNorm
that folds nowhere is replaced, under the same node name, by ``Affine(scale=s, shift=t)``; that
Affine stays in the graph and :func:`check_snn_form` rejects it with a message naming it (an
integer SNN has no per-channel affine stage between neuron layers).

Ops are replaced (``dataclasses.replace``), never mutated, so a shallow copy of the graph taken
before the pass keeps the original weights.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import inputs_of, op_of, splice_out, topo_order, verify
from ..ir import ops as O
from .datafree import BN_STATS
from ..row_blocks import for_row_blocks


def _scale_shift(op):
    if isinstance(op, O.BatchNorm):
        s = np.asarray(op.weight, np.float64) / np.sqrt(np.asarray(op.var, np.float64) + op.eps)
        t = np.asarray(op.bias, np.float64) - np.asarray(op.mean, np.float64) * s
    else:
        s, t = np.asarray(op.scale, np.float64), np.asarray(op.shift, np.float64)
    return s, t


def _like(arr, ref):
    """``arr`` in ``ref``'s float dtype (float64 when ``ref`` is not a float array)."""
    dt = ref.dtype if ref.dtype.kind == "f" else np.float64
    return np.asarray(arr, dtype=dt)


def _bias(op):
    n = op.weight.shape[0]
    return np.zeros(n) if op.bias is None else np.asarray(op.bias, np.float64)


def _output_stats(g, src, norm, s, t):
    """(mean, std) per channel of ``norm``'s output over the training data, or None when unknown."""
    if isinstance(norm, O.BatchNorm):
        var = np.asarray(norm.var, np.float64)
        return np.asarray(norm.bias, np.float64), np.abs(np.asarray(norm.weight, np.float64)) * np.sqrt(var / (var + norm.eps))
    before = g.nodes[src].get(BN_STATS)
    return None if before is None else (before[0] * s + t, before[1] * np.abs(s))


def _fold_backward(g, n, s, t) -> bool:
    (src,) = inputs_of(g, n)
    op = op_of(g, src)
    if not isinstance(op, O.WEIGHTED) or g.out_degree(src) != 1:
        return False
    stats = _output_stats(g, src, op_of(g, n), s, t)
    g.nodes[src].pop(BN_STATS, None)
    if stats is not None:
        g.nodes[src][BN_STATS] = stats
    w = np.asarray(op.weight)
    s_rows = s.reshape((-1,) + (1,) * (w.ndim - 1))
    w2 = np.empty(w.shape, w.dtype if w.dtype.kind == "f" else np.float64)

    def block(lo, hi):  # each product in float64, stored in the weights' float type, no float64 copy
        rows = s_rows if len(s_rows) == 1 else s_rows[lo:hi]
        np.multiply(w[lo:hi], rows, dtype=np.float64, out=w2[lo:hi], casting="same_kind")

    for_row_blocks(block, len(w), w.size)
    b2 = _bias(op) * s + t
    g.nodes[src]["op"] = dataclasses.replace(op, weight=w2, bias=_like(b2, op.weight), weight_int=None)
    splice_out(g, n)
    return True


def _fold_forward(g, n, s, t) -> bool:
    if g.out_degree(n) != 1:
        return False
    (dst,) = g.successors(n)
    through_flatten = isinstance(op_of(g, dst), O.Flatten)
    if through_flatten:
        if g.out_degree(dst) != 1:
            return False
        (dst,) = g.successors(dst)
    op = op_of(g, dst)
    w = np.asarray(op.weight, np.float64) if isinstance(op, O.WEIGHTED) else None
    if isinstance(op, O.Dense):
        reps = int(np.prod(g.nodes[n]["shape"][1:], dtype=np.int64))
        s_in, t_in = np.repeat(s, reps), np.repeat(t, reps)
        w2 = w * s_in[None, :]
        b2 = _bias(op) + w @ t_in
    elif (isinstance(op, O.Conv2d) and not through_flatten and op.groups == 1
          and tuple(op.padding) == (0, 0) and not op.dilates_input):  # inserted zeros would need the shift
        w2 = w * s[None, :, None, None]
        b2 = _bias(op) + w.sum(axis=(2, 3)) @ t
    else:
        return False
    g.nodes[dst]["op"] = dataclasses.replace(op, weight=_like(w2, op.weight), bias=_like(b2, op.weight),
                                             weight_int=None)
    splice_out(g, n)
    return True


def fold_batchnorm(graph, config) -> bool:
    """Fold BatchNorm/Affine nodes into Dense/Conv2d neighbours; turn the rest into Affine."""
    verify(graph)  # shapes (needed to expand a scale over Flatten)
    changed, progress = False, True
    while progress:
        progress = False
        for n in topo_order(graph):
            if n not in graph or not isinstance(op_of(graph, n), (O.BatchNorm, O.Affine)):
                continue
            s, t = _scale_shift(op_of(graph, n))
            if _fold_backward(graph, n, s, t) or _fold_forward(graph, n, s, t):
                progress = changed = True
    for n in topo_order(graph):
        op = op_of(graph, n)
        if isinstance(op, O.BatchNorm):
            s, t = _scale_shift(op)
            graph.nodes[n]["op"] = O.Affine(scale=s, shift=t)
            changed = True
    return changed
