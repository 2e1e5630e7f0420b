"""Fewer, larger convolutions for the calibration's ANN reading (:func:`.torch_ann.iter_ann`).

Splitting concatenations and composing linear chains (split_concat, compose_linear) leave a
pre-activation net (DenseNet: every layer applies its own BatchNorm and ReLU to all earlier
features) with one conv per (part, reader): the 58 3x3 convs of DenseNet-121 become 535, each
an earlier layer's conv scaled channel by channel by a later layer's BatchNorm, and the sums over
parts become dozens of small convs. The hardware needs those synapses; the ANN reading does not
need to compute them one by one:

- an Add of groups-1 convs of one geometry, read by nothing else, is one conv over its sources
  stacked on the channel axis (:class:`Unit` with several ``reads``);
- a unit whose weight is another's of the same reads and geometry scaled per output channel,
  ``W_c[o] = f[o] W_b[o]``, is ``f * raw_b + bias_c`` from that unit's bias-free output ``raw_b``.

The values are the ops' own ANN readings up to float rounding and summation order (a sum
over stacked channels, a product moved after the conv): within the calibration's tolerance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..ir import ops as O

PROPORTIONAL_RTOL = 1e-9  # rows equal to a factor times the base's, up to float64 rounding of the composition


@dataclass
class Unit:
    """One convolution the reading runs: ``conv`` over its ``reads`` stacked on the channel axis,
    or (``base`` set) ``factor * raw[base] + conv.bias``."""
    reads: Tuple[str, ...]
    conv: O.Conv2d
    base: Optional[str] = None
    factor: Optional[np.ndarray] = None  # (out,)


def _geometry(c):
    return (c.weight.shape[0],) + tuple(c.weight.shape[2:]) + (tuple(c.stride), tuple(c.padding), tuple(c.dilation),
                                                               tuple(c.input_dilation))


def _fused(graph, ops, srcs, needed, n):
    """The one conv of Add ``n``'s conv terms, or None where the sum is not one conv."""
    convs = srcs[n]
    first = ops[convs[0]]
    if (len(convs) < 2 or not isinstance(first, O.Conv2d)
            or any(not isinstance(ops[c], O.Conv2d) or ops[c].groups != 1 or _geometry(ops[c]) != _geometry(first)
                   or graph.out_degree(c) != 1 or c in needed for c in convs)
            or len({tuple(graph.nodes[srcs[c][0]]["shape"][1:]) for c in convs}) != 1):
        return None
    biases = [ops[c].bias for c in convs if ops[c].bias is not None]
    return O.Conv2d(weight=np.concatenate([np.asarray(ops[c].weight, np.float64) for c in convs], axis=1),
                    bias=np.sum(biases, axis=0) if biases else None, stride=first.stride, padding=first.padding,
                    dilation=first.dilation, input_dilation=first.input_dilation)


def _factor(w, base) -> Optional[np.ndarray]:
    """f with ``w[o] == f[o] * base[o]`` for every row (to rounding), else None."""
    w, base = w.reshape(len(w), -1), base.reshape(len(base), -1)
    norm = np.einsum("ij,ij->i", base, base)
    f = np.divide(np.einsum("ij,ij->i", w, base), norm, out=np.zeros(len(w)), where=norm > 0)
    scale = max(float(np.abs(w).max(initial=0.0)), 1e-300)
    return f if np.abs(w - f[:, None] * base).max(initial=0.0) <= PROPORTIONAL_RTOL * scale else None


def plan(graph, order, ops, srcs, needed) -> Tuple[dict, set]:
    """({node: Unit} for every Conv2d and fused Add, the convs a fused Add computes)."""
    units, inside = {}, set()
    for n in order:
        op = ops[n]
        if isinstance(op, O.Add) and n not in needed:
            conv = _fused(graph, ops, srcs, needed, n)
            if conv is not None:
                units[n] = Unit(tuple(p for c in srcs[n] for p in srcs[c]), conv)
                inside.update(srcs[n])
        elif isinstance(op, O.Conv2d) and op.groups == 1:
            units[n] = Unit(tuple(srcs[n]), op)
    bases = {}
    for n, u in units.items():
        if n in inside:
            continue
        key = (u.reads, _geometry(u.conv), u.conv.weight.shape[1])
        for b in bases.get(key, ()):
            f = _factor(np.asarray(u.conv.weight, np.float64), np.asarray(units[b].conv.weight, np.float64))
            if f is not None:
                u.base, u.factor = b, f
                break
        else:
            bases.setdefault(key, []).append(n)
    for c in inside:
        units.pop(c, None)
    return units, inside
