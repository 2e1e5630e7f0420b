"""Eliminate every routing op (Concat, SelectChannels) by exact graph rewriting: DenseNet,
Inception/GoogLeNet, SqueezeNet (concatenation), ShuffleNetV2 (channel split and shuffle).

A concatenation moves no values: it only says which channels a reader sees from which part. So
each reader of ``x = cat(p_1, .., p_m)`` (channel ranges ``[lo_i, hi_i)``) is rewritten to read the
parts themselves, and the Concat goes once nothing reads it:

- an op acting on each channel alone (BatchNorm, Affine, a hidden neuron layer, Max/Avg/adaptive
  pools, a Flatten, a grouped Conv2d whose groups do not straddle a part boundary, depthwise
  included) is applied per part, with its per-channel values sliced, and the reader becomes a
  Concat of those (taken apart, in turn, for its own readers):
  ``R(cat(p_i)) = cat(R_i(p_i))``. A Flatten of maps is the Concat of the parts' flattens, as
  torch flattens channel-major;
- a Conv2d with groups = 1 (any kernel, stride, padding, dilation: zero padding of the whole is
  zero padding of each part) or a Dense reading a Concat of vectors is split by its weight's input
  columns into one op per part, summed by an Add (the bias goes with the first part):
  ``W cat(p_i) + b = sum_i W[:, lo_i:hi_i] p_i + b``;
- anything else (an Add, the read-out, a grouped Conv2d whose groups straddle parts) reads the sum
  of the parts embedded in the full width, ``cat(p_i) = sum_i E_i p_i`` with ``E_i`` a 1x1 Conv2d
  (a Dense for vectors) of 0/1 weights placing part i's channels at ``lo_i..hi_i``; when a part is
  a current (a weighted op, no activation between), or the reader a conv, compose_linear composes
  ``E_i`` into it.

A channel selection (SelectChannels) is composed into the weights that read it or moved past
per-channel ops the same way (:mod:`.channel_routing`). Routing ops are taken apart from the last
in topological order to the first, so what reads the one being taken apart is never a routing op;
a rewrite that moves a routing op onto its reader's place takes that one apart at once.

Every rewrite is exact: per-channel ops see the same values, and a split weighted op sums the
same products, grouped by part (float rounding differs by the summation order alone). Per-part
neuron layers are layers of their own, which normalize calibrates separately (each gets its own
scale). New nodes are named after the reader: ``<reader>.part<i>`` (``<x>.embed<i>`` for an
embedding, ``<x>.sum`` for the embeddings' Add), so reports find the user's module by prefix.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import inputs_of, op_of, topo_order
from ..ir import ops as O
from ..ir.routing import ROUTING_KINDS, Concat
from .channel_routing import PER_CHANNEL, add as _add, embedding, push_select, reindexed, replace as _replace


def _parts(g, x) -> list:
    """[(part, lo, hi)]: each input of Concat ``x`` and its channel range in ``x``."""
    out, lo = [], 0
    for p in inputs_of(g, x):
        hi = lo + g.nodes[p]["shape"][0]
        out.append((p, lo, hi))
        lo = hi
    return out


def _per_part(op, lo, hi):
    """A per-channel op restricted to channels ``lo..hi``."""
    if isinstance(op, O.Neuron):  # a neuron's fields may hold one value for every channel
        def part(arr):
            return arr if arr is None or np.size(arr) == 1 else np.asarray(arr)[lo:hi].copy()
        return dataclasses.replace(op, beta=part(op.beta), bias=part(op.bias), decay_v=part(op.decay_v))
    return reindexed(op, np.arange(lo, hi))


def _split_weight(op, lo, hi, first: bool):
    """A groups=1 Conv2d or a Dense reading only input channels ``lo..hi`` (the bias on the first part)."""
    bias = op.bias if first else None
    return dataclasses.replace(op, weight=op.weight[:, lo:hi].copy(), bias=None if bias is None else bias.copy(),
                               weight_int=None, weight_exp=0)


def _grouped_part(op, lo, hi):
    """The groups of grouped Conv2d ``op`` that read channels ``lo..hi``, as a Conv2d of its own; None
    when the range splits a group."""
    cg = op.weight.shape[1]
    og = op.weight.shape[0] // op.groups
    if lo % cg or hi % cg:
        return None
    rows = slice(lo // cg * og, hi // cg * og)
    return dataclasses.replace(op, weight=op.weight[rows].copy(), bias=None if op.bias is None else op.bias[rows].copy(),
                               groups=(hi - lo) // cg, weight_int=None, weight_exp=0)


def _push_concat(g, x, r) -> list:
    """Rewrite reader ``r`` of Concat ``x`` to read ``x``'s parts (module docstring); returns the
    routing nodes the rewrite made, to be taken apart in turn."""
    op, parts = op_of(g, r), _parts(g, x)
    grouped = ([_grouped_part(op, lo, hi) for _, lo, hi in parts]
               if isinstance(op, O.Conv2d) and op.groups > 1 else None)
    if isinstance(op, PER_CHANNEL + (O.Flatten,)) or O.is_hidden_neuron(op):
        _replace(g, r, Concat(), [_add(g, f"{r}.part{i}", _per_part(op, lo, hi), [p])
                                  for i, (p, lo, hi) in enumerate(parts)])
        return [r]
    if grouped is not None and all(c is not None for c in grouped):
        _replace(g, r, Concat(), [_add(g, f"{r}.part{i}", c, [p]) for i, (c, (p, _, _)) in enumerate(zip(grouped, parts))])
        return [r]
    if grouped is None and isinstance(op, (O.Conv2d, O.Dense)):
        _replace(g, r, O.Add(), [_add(g, f"{r}.part{i}", _split_weight(op, lo, hi, i == 0), [p])
                                 for i, (p, lo, hi) in enumerate(parts)])
        return []
    shape = g.nodes[x]["shape"]
    terms = []
    for i, (p, lo, hi) in enumerate(parts):
        rows = np.full(shape[0], -1)
        rows[lo:hi] = np.arange(hi - lo)
        terms.append(_add(g, f"{x}.embed{i}", embedding(rows, hi - lo, shape), [p]))
    port = g.edges[x, r]["port"]
    g.remove_edge(x, r)
    g.add_edge(_add(g, f"{x}.sum", O.Add(), terms), r, port=port)
    return []


def _take_apart(g, x) -> None:
    """Rewrite every reader of routing op ``x`` and remove it; routing ops a rewrite puts in a
    reader's place are taken apart at once (what reads them is no routing op either)."""
    for r in sorted(g.successors(x)):
        if isinstance(op_of(g, r), ROUTING_KINDS):  # pragma: no cover - the order rules it out
            raise ValueError(f"routing op {r} reads routing op {x} while {x} is taken apart")
        push = _push_concat if isinstance(op_of(g, x), Concat) else push_select
        for made in push(g, x, r):
            _take_apart(g, made)
    g.remove_node(x)


def split_concat(graph, config) -> bool:
    """Take every Concat and SelectChannels apart, last first (module docstring)."""
    routing = [n for n in topo_order(graph) if isinstance(op_of(graph, n), ROUTING_KINDS)]
    for x in reversed(routing):
        _take_apart(graph, x)
    return bool(routing)
