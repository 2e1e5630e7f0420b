"""Routing ops of the IR: ops that move, copy or join values without weights (concatenation and
the like). They exist in the graph as a frontend lowers it; passes compose them into the synaptic
connections around them, so none reaches SNN form (each op's docstring says which pass).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


@dataclass
class SelectChannels:
    """``y = x[index]`` along axis 0 of a sample: the channels of a (C, H, W) map (or the features of a
    vector) in the order ``index`` gives (integers in ``0..C-1``, repeats allowed). One op for channel
    slices (``x.chunk(2, 1)``, ``x[:, a:b]``, ShuffleNetV2's split) and permutations (its channel
    shuffle: view, transpose, view).

    Never in SNN form: split_concat composes it into the weights of the conv or Linear that reads it,
    or moves it past per-channel ops (passes/channel_routing.py).
    """
    index: np.ndarray

    def infer_shape(self, in_shapes):
        (shape,) = in_shapes
        idx = np.asarray(self.index)
        if idx.ndim != 1 or idx.size < 1 or idx.dtype.kind not in "iu":
            raise ValueError(f"SelectChannels index must be a non-empty 1-D integer array, got {idx.dtype} "
                             f"of shape {idx.shape}")
        if idx.min() < 0 or idx.max() >= shape[0]:
            raise ValueError(f"SelectChannels index {int(idx.min())}..{int(idx.max())} is outside the input's "
                             f"{shape[0]} channels")
        return (idx.size,) + tuple(shape[1:])

    def ann(self, xs, k=kernels):
        return k.take_channels(xs[0], self.index)


ROUTING_KINDS = (Concat, SelectChannels)
JOIN_KINDS = (Concat,)  # routing ops reading two or more inputs (verify's arity rule, as Add)
