"""An Add's terms that are convs of one geometry over spikes, run as one int8 product.

A conv reading a concatenation becomes one conv per part, summed by an Add (passes/split_concat.py):
DenseNet's dense layers read every earlier layer's features that way, Inception's and GoogLeNet's
blocks their branches. Run one by one, each part is a narrow product (32 input channels in DenseNet)
whose int32 output is written, scaled by its weights' power of two and summed: DenseNet-121 ran
1,929 products a call. Stacked, the parts' spikes are copied side by side (a byte a value, where each
part's output was four per output channel) and one product with the parts' weights stacked gives the
Add's sum.

Exact: each part's weights are ``m_j * 2**s_j`` with ``m_j`` int8 (:func:`.int_gemm.int8_parts`, one
part); with ``s`` the least ``s_j``, part j's spikes enter the product as ``2**(s_j - s)`` (at most
:data:`MAX_SHIFT`: int8), so the product's int32 sums are ``sum_j conv_j / 2**s`` exactly while ``K *
2**MAX_SHIFT * 128 < 2**31``; times ``2**s`` that is the terms' sum, whose int32 bound the Add proves
(each term below 2**24, fewer than 128 terms) or which is widened to int64 first.
"""
from __future__ import annotations

import numpy as np

from ..ir import ops as O
from . import fast, int_gemm

MAX_SHIFT = 6            # a part's spikes scaled by at most 2**6 = 64 (int8)


def find(fp, cyclic) -> dict:
    """``{add: convs}``: for each Add outside a cycle, its terms that can share one product (the largest
    set, at least two): groups-1 convs of one geometry and output, each an int8 product the plan made,
    read by the Add alone and reading a neuron layer's spikes."""
    plan, g = fp.plan, fp.plan.graph
    out = {}
    for a in plan.order:
        if not isinstance(plan.ops[a], O.Add) or a in cyclic:
            continue
        by_geometry = {}
        for c in plan.inputs[a]:
            op = plan.ops[c]
            if (isinstance(op, O.Conv2d) and op.groups == 1 and g.out_degree(c) == 1 and c not in cyclic
                    and (c in fp.product or fp.product_split.get(c) is not None)
                    and isinstance(plan.ops[plan.inputs[c][0]], O.NEURONS)):
                geometry = fp.product.get(c, fp.product_split.get(c))[1]
                by_geometry.setdefault((geometry, tuple(g.nodes[plan.inputs[c][0]]["shape"][1:])), []).append(c)
        best = max(by_geometry.values(), key=len, default=[])
        if len(best) >= 2:
            out[a] = tuple(best)
    return out


def stacked_parts(fp, convs):
    """``(int8 parts of the stacked weights, each part's shift, geometry)``, or None where a part's weights
    are not one int8 matrix times a power of two or the shifts or the sums leave the proved range."""
    split = [fp.product_parts(c) for c in convs]
    if any(s is None or len(s[0]) != 1 for s in split):
        return None
    shifts = [int(mult).bit_length() - 1 for (((_, mult),), _) in split]
    low = min(shifts)
    if max(shifts) - low > MAX_SHIFT:
        return None
    geometry = split[0][1]
    taps = geometry[0] * geometry[1]
    blocks = [m.reshape(taps, -1, m.shape[1]) for (((m, _),), _) in split]   # rows in (ky, kx, c) order
    matrix = np.ascontiguousarray(np.concatenate(blocks, axis=1).reshape(-1, blocks[0].shape[2]))
    if matrix.shape[0] * (128 << MAX_SHIFT) >= 1 << 31:
        return None
    return [(matrix, 1 << low)], [s - low for s in shifts], geometry


def stacked_spikes(slabs, shifts) -> np.ndarray:
    """The parts' spikes (each (F, H, W, C_j) 0/1) side by side along the channels, part j times
    ``2**shifts[j]``, as int8 (one parallel copy: numpy's concatenate along the last axis took a third of
    DenseNet's run)."""
    from numba.typed import List
    from .numba_kernels import stack_channels
    rows = int(np.prod(slabs[0].shape[:-1]))
    out = np.empty(slabs[0].shape[:-1] + (sum(s.shape[-1] for s in slabs),), np.int8)
    stack_channels(List([np.ascontiguousarray(s).reshape(rows, -1) for s in slabs]), np.asarray(shifts, np.int64),
                   out.reshape(rows, -1))
    return out


def run(fp, sched, add, convs, slabs, out_hwc, n_terms):
    """The sum of Add ``add``'s terms ``convs`` over their sources' spikes ``slabs`` (each (T', F, H, W, C_j)),
    (T', F, *out_hwc), as one product; None where it does not run (the scatter asked for, no int8 product
    here, the parts not stackable, or, under "auto", the cost model preferring the scatter): the Add then
    runs its terms one by one."""
    if fast.METHOD == "scatter" or not int_gemm.available() or any(s.dtype != np.uint8 for s in slabs):
        return None
    if add not in sched.stacked_parts:
        sched.stacked_parts[add] = stacked_parts(fp, convs)
    made = sched.stacked_parts[add]
    if made is None:
        return None
    parts, shifts, geometry = made
    t, f, h, w = slabs[0].shape[:4]
    flat = [s.reshape((t * f, h, w, s.shape[-1])) for s in slabs]
    k, n_out = parts[0][0].shape
    channels = sum(s.shape[-1] for s in flat)
    if fast.METHOD == "auto":
        density = sum(fast._density(s) * s.shape[-1] for s in flat) / channels
        positions = out_hwc[0] * out_hwc[1]
        if not int_gemm.cheaper(density, positions * (k // channels) / (h * w), h * w * channels, n_out, positions,
                                k, n_out, True):
            return None
    for c in convs:
        fast._count(fp, c, "stacked int8 product")
    out = np.empty((t * f,) + tuple(out_hwc), np.int32)
    int_gemm.conv(stacked_spikes(flat, shifts), parts, out, geometry)
    # int32 holds the sum where every term is an int32 current (below 2**24) and the Add has < 128 terms
    if not (n_terms < 128 and all(fp.ops[c][2] == np.int32 for c in convs)):
        out = out.astype(np.int64)
    return out.reshape((t, f) + out.shape[1:])
