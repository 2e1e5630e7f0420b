"""The rewrites split_concat applies to what reads a routing op: per-channel ops re-indexed onto the
channels they read, weights re-indexed by input channel, and the 0/1 embedding every other reader
gets. Shared by both routing ops (:mod:`snn_compiler.ir.routing`); the rules per op are in
:func:`push_select` here and :mod:`.split_concat` (Concat).

A channel selection ``x = P[idx]`` (SelectChannels) read by:

- a Conv2d with groups = 1, or a Dense (``x`` a vector): its weight's input columns move to the
  channels of P they read, summed where ``idx`` repeats a channel (zeros where it skips one):
  ``W x = W' P`` with ``W'[:, c] = sum_{i: idx[i] = c} W[:, i]``;
- a Flatten: the Flatten reads P and the selection picks the flattened blocks of its channels
  (channel-major order);
- an op acting on each channel alone (BatchNorm, Affine, pools, a depthwise Conv2d; a hidden neuron
  layer only where ``idx`` is a permutation, so no neuron is added) with ``idx`` never repeating a
  channel: the op runs on P's channels, its per-channel values moved with them (zeros: an output of
  0, for channels ``idx`` skips), and the selection follows it: ``R(P[idx]) = R'(P)[idx']``;
- anything else (an Add, the read-out, a grouped Conv2d, a repeated channel): the 0/1 embedding
  ``x = E P``, a 1x1 Conv2d (a Dense for vectors) with ``E[i, idx[i]] = 1``, which compose_linear
  composes into a current P or into a conv reading it.

All exact: per-channel values only move, weights only move or add up where channels repeat.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import add_op, inputs_of, op_of, unique_name
from ..ir import ops as O
from ..ir.routing import SelectChannels

PER_CHANNEL = (O.BatchNorm, O.Affine, O.AvgPool2d, O.MaxPool2d, O.AdaptiveAvgPool2d, O.WindowAvgPool2d)


def add(g, name, op, inputs) -> str:
    """Add ``op`` as ``name`` (made unique) and record its shape, so later rewrites can read it."""
    name = add_op(g, unique_name(g, name), op, inputs)
    g.nodes[name]["shape"] = O.infer_shape(op, [g.nodes[i]["shape"] for i in inputs])
    return name


def replace(g, n, op, inputs) -> None:
    """Make node ``n`` compute ``op`` on ``inputs``, its readers unchanged."""
    consumers = [(d, g.edges[n, d]["port"]) for d in g.successors(n)]
    g.remove_node(n)
    add(g, n, op, inputs)
    for d, port in consumers:
        g.add_edge(n, d, port=port)


def is_depthwise(op) -> bool:
    return isinstance(op, O.Conv2d) and op.groups > 1 and op.weight.shape[1] == 1


def _take(arr, take, neutral):
    """Per-channel values for new channels ``take`` (indices of the old ones; -1: ``neutral``)."""
    if arr is None:
        return None
    arr = np.asarray(arr)
    out = arr[np.maximum(take, 0)].copy()
    out[take < 0] = neutral
    return out


def reindexed(op, take):
    """Per-channel op ``op`` on new channels: new channel j does what old channel ``take[j]`` did;
    ``take[j] = -1`` gives a channel whose output is 0 (never read)."""
    take = np.asarray(take)
    if isinstance(op, O.BatchNorm):
        return O.BatchNorm(mean=_take(op.mean, take, 0.0), var=_take(op.var, take, 1.0),
                           weight=_take(op.weight, take, 0.0), bias=_take(op.bias, take, 0.0), eps=op.eps)
    if isinstance(op, O.Affine):
        return O.Affine(scale=_take(op.scale, take, 0.0), shift=_take(op.shift, take, 0.0))
    if isinstance(op, O.Neuron):
        if np.any(take < 0):  # pragma: no cover - push_select moves neurons by permutations only
            raise ValueError("a neuron layer is moved onto a permutation of its channels only")
        def per_channel(arr):  # a neuron's fields may hold one value for every channel
            return arr if arr is None or np.size(arr) == 1 else _take(arr, take, 0)
        return dataclasses.replace(op, beta=per_channel(op.beta), bias=per_channel(op.bias),
                                   decay_v=per_channel(op.decay_v))
    if is_depthwise(op):  # m output channels per input channel
        m = op.weight.shape[0] // op.groups
        rows = (np.repeat(take, m) * m + np.tile(np.arange(m), len(take)))
        rows[np.repeat(take, m) < 0] = -1
        return dataclasses.replace(op, weight=_take(op.weight, rows, 0.0), bias=_take(op.bias, rows, 0.0),
                                   groups=len(take), weight_int=None, weight_exp=0)
    return dataclasses.replace(op)  # pools: nothing per channel


def embedding(rows, n_in, shape):
    """The 0/1 weighted op ``y[i] = x[rows[i]]`` (``rows[i] = -1``: 0) from ``n_in`` channels to ``shape``."""
    rows = np.asarray(rows)
    hit = np.flatnonzero(rows >= 0)
    if len(shape) == 1:
        w = np.zeros((shape[0], n_in))
        w[hit, rows[hit]] = 1.0
        return O.Dense(weight=w)
    w = np.zeros((shape[0], n_in, 1, 1))
    w[hit, rows[hit], 0, 0] = 1.0
    return O.Conv2d(weight=w)


def _read(g, r, old, new) -> None:
    """``r`` reads ``new`` where it read ``old`` (same port)."""
    port = g.edges[old, r]["port"]
    g.remove_edge(old, r)
    g.add_edge(new, r, port=port)


def push_select(g, x, r) -> list:
    """Rewrite reader ``r`` of SelectChannels ``x`` (module docstring); returns the routing nodes the
    rewrite made (``r`` itself, when the selection moved past it), to be taken apart in turn."""
    op, (src,) = op_of(g, r), inputs_of(g, x)
    idx = np.asarray(op_of(g, x).index, np.int64)
    n_src = g.nodes[src]["shape"][0]
    shape = g.nodes[x]["shape"]
    unique = len(np.unique(idx)) == len(idx)
    if isinstance(op, O.Dense) and len(shape) == 1 or isinstance(op, O.Conv2d) and op.groups == 1:
        w = np.zeros((op.weight.shape[0], n_src) + op.weight.shape[2:])
        np.add.at(w, (slice(None), idx), op.weight)
        g.nodes[r]["op"] = dataclasses.replace(op, weight=w, weight_int=None, weight_exp=0)
        _read(g, r, x, src)
        return []
    if isinstance(op, O.Flatten) and len(shape) == 3:
        hw = int(np.prod(shape[1:]))
        flat = add(g, f"{r}.part0", O.Flatten(), [src])
        replace(g, r, SelectChannels(index=(idx[:, None] * hw + np.arange(hw)).ravel()), [flat])
        return [r]
    movable = isinstance(op, PER_CHANNEL) or is_depthwise(op) and op.groups == shape[0]
    if unique and (movable or O.is_hidden_neuron(op) and len(idx) == n_src):
        take = np.full(n_src, -1)
        take[idx] = np.arange(len(idx))
        moved = add(g, f"{r}.part0", reindexed(op, take), [src])
        out = idx
        if is_depthwise(op):
            m = op.weight.shape[0] // op.groups
            out = (idx[:, None] * m + np.arange(m)).ravel()
        replace(g, r, SelectChannels(index=out), [moved])
        return [r]
    _read(g, r, x, add(g, f"{x}.embed", embedding(idx, n_src, shape), [src]))
    return []
