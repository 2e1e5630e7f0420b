"""Eliminate every Concat (DenseNet, Inception/GoogLeNet, SqueezeNet) by exact graph rewriting.

A concatenation moves no values: it only says which channels a reader sees from which part. So
each reader of ``x = cat(p_1, .., p_m)`` (channel ranges ``[lo_i, hi_i)``) is rewritten to read the
parts themselves, and the Concat goes once nothing reads it:

- an op acting on each channel alone (BatchNorm, Affine, a hidden neuron layer, Max/Avg/adaptive
  pools, a Flatten, a grouped Conv2d whose groups do not straddle a part boundary, depthwise
  included) is applied per part, with its per-channel values sliced, and the reader becomes a
  Concat of those (pushed on, in turn, to its own readers):
  ``R(cat(p_i)) = cat(R_i(p_i))``. A Flatten of maps is the Concat of the parts' flattens, as
  torch flattens channel-major;
- a Conv2d with groups = 1 (any kernel, stride, padding, dilation: zero padding of the whole is
  zero padding of each part) or a Dense reading a Concat of vectors is split by its weight's input
  columns into one op per part, summed by an Add (the bias goes with the first part):
  ``W cat(p_i) + b = sum_i W[:, lo_i:hi_i] p_i + b``;
- a Concat reading a Concat takes the inner parts in its place;
- an Add or the read-out reading a Concat reads the sum of the parts embedded in the full width,
  ``cat(p_i) = sum_i E_i p_i`` with ``E_i`` a 1x1 Conv2d (a Dense for vectors) of 0/1 weights
  placing part i's channels at ``lo_i..hi_i``; when a part is itself a current (a weighted op,
  no activation between), compose_linear composes ``E_i`` into it.

Every rewrite is exact: per-channel ops see the same values, and a split weighted op sums the
same products, grouped by part (float rounding differs by the summation order alone). A grouped
Conv2d whose groups straddle a part boundary is refused naming both. Per-part neuron layers are
layers of their own, which normalize calibrates separately (each gets its own scale).

New nodes are named after the reader: ``<reader>.part<i>`` (``<reader>.embed<i>`` for an
embedding, ``<x>.sum`` for the embeddings' Add), so reports find the user's module by prefix.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import add_op, inputs_of, op_of, topo_order, unique_name
from ..ir import ops as O
from ..ir.routing import Concat

PER_CHANNEL = (O.BatchNorm, O.Affine, O.AvgPool2d, O.MaxPool2d, O.AdaptiveAvgPool2d, O.Flatten)


def _add(g, name, op, inputs) -> str:
    """Add ``op`` as ``name`` (made unique) and record its shape, so later rewrites can read it."""
    name = add_op(g, unique_name(g, name), op, inputs)
    g.nodes[name]["shape"] = O.infer_shape(op, [g.nodes[i]["shape"] for i in inputs])
    return name


def _replace(g, n, op, inputs) -> None:
    """Make node ``n`` compute ``op`` on ``inputs``, its readers unchanged."""
    consumers = [(d, g.edges[n, d]["port"]) for d in g.successors(n)]
    g.remove_node(n)
    _add(g, n, op, inputs)
    for d, port in consumers:
        g.add_edge(n, d, port=port)


def _parts(g, x) -> list:
    """[(part, lo, hi)]: each input of Concat ``x`` and its channel range in ``x``."""
    out, lo = [], 0
    for p in inputs_of(g, x):
        hi = lo + g.nodes[p]["shape"][0]
        out.append((p, lo, hi))
        lo = hi
    return out


def _channels(arr, lo, hi):
    """A per-channel array's channels ``lo..hi`` (one value for all channels stays as it is)."""
    if arr is None or np.size(arr) == 1:
        return arr
    return np.asarray(arr)[lo:hi].copy()


def _per_part(op, lo, hi):
    """A per-channel op restricted to channels ``lo..hi``."""
    if isinstance(op, O.BatchNorm):
        return O.BatchNorm(mean=op.mean[lo:hi].copy(), var=op.var[lo:hi].copy(), weight=op.weight[lo:hi].copy(),
                           bias=op.bias[lo:hi].copy(), eps=op.eps)
    if isinstance(op, O.Affine):
        return O.Affine(scale=op.scale[lo:hi].copy(), shift=op.shift[lo:hi].copy())
    if isinstance(op, O.Neuron):
        return dataclasses.replace(op, beta=_channels(op.beta, lo, hi), bias=_channels(op.bias, lo, hi),
                                   decay_v=_channels(op.decay_v, lo, hi))
    return dataclasses.replace(op)  # pools and Flatten: nothing per channel


def _split_weight(op, lo, hi, first: bool):
    """A groups=1 Conv2d or a Dense reading only input channels ``lo..hi`` (the bias on the first part)."""
    bias = op.bias if first else None
    return dataclasses.replace(op, weight=op.weight[:, lo:hi].copy(), bias=None if bias is None else bias.copy(),
                               weight_int=None, weight_exp=0)


def _grouped_part(g, x, r, op, lo, hi):
    """The groups of grouped Conv2d ``r`` that read channels ``lo..hi`` of ``x``, as a Conv2d of its own."""
    cg = op.weight.shape[1]
    og = op.weight.shape[0] // op.groups
    if lo % cg or hi % cg:
        raise ValueError(f"Conv2d {r} (groups {op.groups}, {cg} input channels each) reads Concat {x}, whose part "
                         f"at channels {lo}..{hi - 1} splits one of its groups; snnc splits a grouped convolution "
                         f"over a concatenation only where every part holds whole groups")
    rows = slice(lo // cg * og, hi // cg * og)
    return dataclasses.replace(op, weight=op.weight[rows].copy(), bias=None if op.bias is None else op.bias[rows].copy(),
                               groups=(hi - lo) // cg, weight_int=None, weight_exp=0)


def _embedding(shape, lo, hi):
    """The 0/1 map placing a part of ``hi - lo`` channels at ``lo..hi`` of a ``shape`` value."""
    total = shape[0]
    if len(shape) == 1:
        w = np.zeros((total, hi - lo))
        w[np.arange(lo, hi), np.arange(hi - lo)] = 1.0
        return O.Dense(weight=w)
    w = np.zeros((total, hi - lo, 1, 1))
    w[np.arange(lo, hi), np.arange(hi - lo), 0, 0] = 1.0
    return O.Conv2d(weight=w)


def _push(g, x, r) -> None:
    """Rewrite reader ``r`` of Concat ``x`` to read ``x``'s parts (module docstring)."""
    op, parts = op_of(g, r), _parts(g, x)
    if isinstance(op, Concat):
        ins = inputs_of(g, r)
        flat = [q for i in ins for q in ([p for p, _, _ in parts] if i == x else [i])]
        if len(set(flat)) != len(flat):
            raise ValueError(f"Concat {r} would read one value twice once Concat {x} is taken apart; "
                             f"concatenating a tensor with itself is not supported")
        _replace(g, r, Concat(), flat)
    elif isinstance(op, PER_CHANNEL) or O.is_hidden_neuron(op):
        _replace(g, r, Concat(), [_add(g, f"{r}.part{i}", _per_part(op, lo, hi), [p])
                                  for i, (p, lo, hi) in enumerate(parts)])
    elif isinstance(op, O.Conv2d) and op.groups > 1:
        _replace(g, r, Concat(), [_add(g, f"{r}.part{i}", _grouped_part(g, x, r, op, lo, hi), [p])
                                  for i, (p, lo, hi) in enumerate(parts)])
    elif isinstance(op, (O.Conv2d, O.Dense)):
        _replace(g, r, O.Add(), [_add(g, f"{r}.part{i}", _split_weight(op, lo, hi, i == 0), [p])
                                 for i, (p, lo, hi) in enumerate(parts)])
    elif isinstance(op, O.Add) or O.is_readout(op):
        shape = g.nodes[x]["shape"]
        port = g.edges[x, r]["port"]
        terms = [_add(g, f"{x}.embed{i}", _embedding(shape, lo, hi), [p]) for i, (p, lo, hi) in enumerate(parts)]
        total = _add(g, f"{x}.sum", O.Add(), terms)
        g.remove_edge(x, r)
        g.add_edge(total, r, port=port)
    else:
        raise ValueError(f"{O.kind(op)} {r} reads Concat {x}; snnc takes a concatenation apart into per-channel "
                         f"ops, convolutions, Linear layers, Adds and the read-out only")


def split_concat(graph, config) -> bool:
    """Push every Concat's readers into its parts until no Concat is left (module docstring).

    One sweep in topological order suffices: a rewrite only turns a reader of the Concat being taken
    apart (later in the order) into a Concat, whose parts hold no Concat any more."""
    changed = False
    for x in topo_order(graph):
        if x not in graph or not isinstance(op_of(graph, x), Concat):
            continue
        for r in sorted(graph.successors(x)):
            _push(graph, x, r)
        graph.remove_node(x)
        changed = True
    return changed
