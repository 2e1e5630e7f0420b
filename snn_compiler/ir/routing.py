"""Routing ops of the IR: ops that move, copy or join values without weights (concatenation and
the like). They exist in the graph as a frontend lowers it; passes compose them into the synaptic
connections around them, so none reaches SNN form (each op's docstring says which pass).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import kernels


@dataclass
class Concat:
    """``y = cat(x_0, x_1, ..., axis 0 of a sample)``: the channels of (C, H, W) maps (torch's
    ``torch.cat(xs, dim=1)``), or the features of vectors, in input order; every input has the same
    rank and the same sizes on the other axes.

    Never in SNN form: the split_concat pass pushes what reads it into its parts (per-channel ops
    are applied per part, a weighted op reading it becomes one op per part summed by an Add).
    """

    def infer_shape(self, in_shapes):
        first = in_shapes[0]
        for s in in_shapes[1:]:
            if len(s) != len(first) or s[1:] != first[1:]:
                raise ValueError(f"Concat inputs {in_shapes} differ beyond their first (channel) axis")
        return (sum(s[0] for s in in_shapes),) + tuple(first[1:])

    def ann(self, xs, k=kernels):
        return k.concat(xs)


ROUTING_KINDS = (Concat,)
JOIN_KINDS = (Concat,)  # routing ops reading two or more inputs (verify's arity rule, as Add)
