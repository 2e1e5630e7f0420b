"""ONNX ops that only route channels: Concat, Split and Slice on the channel axis, Gather of constant
channel indices, and ShuffleNet's channel shuffle as exported (Reshape to (b, g, c/g, h, w),
Transpose perm [0, 2, 1, 3, 4], Reshape back). They become the IR's routing ops
(:mod:`snn_compiler.ir.routing`), which passes take apart before SNN form."""
from __future__ import annotations

from functools import partial

import numpy as np

from ...ir.routing import Concat
from ..lowering import Act, GroupedChannels, Unavailable, grouping_order, zero_pad
from .folding import reshape_dims


def _axis(ctx, x, given, what) -> None:
    """Refuse an axis other than the channel (feature) axis 1 of ``x`` (batched)."""
    rank = len(ctx.shape(x)) + 1
    if given is None:
        ctx.fail(f"{what} has no axis")
    axis = int(given) + rank if int(given) < 0 else int(given)
    if axis != 1:
        ctx.fail(f"{what} along axis {given} of a rank-{rank} tensor is not supported; snnc routes channels "
                 f"(or features) only: axis=1")


def _ints(ctx, v, what):
    if v is None or isinstance(v, (Act, Unavailable)):
        ctx.fail(f"{what} must be a constant")
    return [int(i) for i in np.asarray(v).reshape(-1)]


def concat(ctx):
    """``Concat(axis=1)`` of activations: a Concat (one input: itself)."""
    xs = [ctx.act(v, f"input {i}") for i, v in enumerate(ctx.inputs())]
    _axis(ctx, xs[0], ctx.attr("axis"), "Concat")
    if len(set(xs)) != len(xs):
        ctx.fail("concatenating a tensor with itself is not supported")
    return xs[0] if len(xs) == 1 else ctx.emit(Concat(), xs)


def split(ctx):
    """``Split(axis=1)``: consecutive channel ranges (sizes from the ``split`` input or attribute, else equal)."""
    vals = ctx.inputs() + [None]
    x = ctx.act(vals[0])
    _axis(ctx, x, ctx.attr("axis", 0), "Split")
    c, n = ctx.shape(x)[0], len(ctx.node.output)
    sizes = ctx.attr("split") if vals[1] is None else _ints(ctx, vals[1], "split")
    if sizes is None:
        size = -(-c // n)  # num_outputs: equal parts, the last one smaller
        sizes = [min(size, c - lo) for lo in range(0, c, size)]
    starts = np.cumsum([0] + [int(s) for s in sizes])
    if starts[-1] != c or len(sizes) != n:
        ctx.fail(f"split sizes {list(sizes)} do not give {n} parts of the {c} channels")
    return tuple(ctx.select_channels(x, np.arange(lo, hi), suffix=f".{i}") for i, (lo, hi) in enumerate(zip(starts, starts[1:])))


def slice_(ctx):
    """``Slice`` of the channel axis (constant starts, ends, steps); a slice of the batch axis keeping it whole is ``x``."""
    vals = ctx.inputs() + [None] * 4
    x = ctx.act(vals[0])
    starts, ends = _ints(ctx, vals[1], "starts"), _ints(ctx, vals[2], "ends")
    rank = len(ctx.shape(x)) + 1
    axes = list(range(len(starts))) if vals[3] is None else _ints(ctx, vals[3], "axes")
    steps = [1] * len(starts) if vals[4] is None else _ints(ctx, vals[4], "steps")
    index = np.arange(ctx.shape(x)[0])
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = ax + rank if ax < 0 else ax
        if ax == 0 and st == 0 and en >= ctx.batch and sp == 1:
            continue
        if ax != 1 or sp == 0:
            ctx.fail(f"Slice of axis {ax} (step {sp}) of a rank-{rank} tensor is not supported; snnc slices "
                     f"channels (or features) only")
        index = index[slice(st, en, sp)]  # numpy clamps like ONNX
    if not len(index):
        ctx.fail("the slice selects no channel")
    return ctx.select_channels(x, index)


def gather(ctx):
    """``Gather(axis=1)`` of constant channel indices (``x[:, [2, 0, 1]]``, ``index_select``)."""
    x, idx = (ctx.inputs() + [None])[:2]
    x = ctx.act(x)
    _axis(ctx, x, ctx.attr("axis", 0), "Gather")
    index = np.asarray(_ints(ctx, idx, "indices"))
    if np.asarray(idx).ndim != 1:
        ctx.fail("Gather with scalar indices drops the channel axis; only a list of channels is supported")
    return ctx.select_channels(x, index % ctx.shape(x)[0])


def reshape(ctx, flatten_like):
    """A Reshape that groups channels, (b, g, c/g, h, w), or reads such a grouping back as (b, c, h, w)
    (a channel shuffle); every other reshape is ``flatten_like``'s."""
    vals = ctx.inputs()
    x = vals[0]
    if not isinstance(x, (Act, GroupedChannels)) or len(vals) < 2 or isinstance(vals[1], (Act, Unavailable)):
        return flatten_like(ctx)
    base = x.act if isinstance(x, GroupedChannels) else x
    shape = ctx.shape(base)
    in_shape = (ctx.batch,) + (x.groups + shape[1:] if isinstance(x, GroupedChannels) else shape)
    out = reshape_dims(in_shape, np.asarray(vals[1]).reshape(-1), bool(ctx.attr("allowzero", 0)))
    if isinstance(x, GroupedChannels):
        if out is None or tuple(out[1:]) != shape:
            ctx.fail(f"a channel grouping {x.groups} is read back as {out}; only (batch, C, H, W) is supported")
        return ctx.select_channels(base, grouping_order(x))
    if out is not None and len(out) == 5 and len(shape) == 3 and out[0] == ctx.batch \
            and out[1] * out[2] == shape[0] and tuple(out[3:]) == shape[1:]:
        return GroupedChannels(what=f"a {shape} map reshaped to {out[1:]}", act=x, groups=(out[1], out[2]))
    return flatten_like(ctx)


def transpose(ctx):
    """Swapping the two channel axes of a grouping (the middle step of a channel shuffle)."""
    x = ctx.input(0)
    perm = [int(p) for p in ctx.attr("perm", [])]
    if isinstance(x, GroupedChannels) and perm == [0, 2, 1, 3, 4]:
        return GroupedChannels(what=x.what, act=x.act, groups=x.groups, swapped=not x.swapped)
    ctx.fail(f"Transpose (perm {perm}) of activations is not supported, except the channel axes of a channel "
             f"shuffle (Reshape to (b, g, c/g, h, w), Transpose perm [0, 2, 1, 3, 4], Reshape back)")


def pad(ctx):
    """``Pad`` with zeros (mode constant, value 0) of the height and width of a map (pads as an input,
    opset >= 11, or as an attribute)."""
    vals = ctx.inputs() + [None] * 3
    x = ctx.act(vals[0])
    mode = ctx.attr("mode", "constant")
    value = 0.0 if vals[2] is None else float(np.asarray(vals[2]).reshape(-1)[0])
    if mode != "constant" or value != 0.0:
        ctx.fail(f"Pad with mode={mode!r}, value {value}; only zero padding is supported")
    pads = ctx.attr("pads") if vals[1] is None else _ints(ctx, vals[1], "pads")
    rank = len(ctx.shape(x)) + 1
    if vals[3] is not None or pads is None or len(pads) != 2 * rank or rank != 4 \
            or any(pads[i] or pads[i + rank] for i in (0, 1)):
        ctx.fail(f"Pad {pads} of a rank-{rank} tensor; only padding the height and width of a map is supported")
    return zero_pad(ctx, x, (int(pads[2]), int(pads[6]), int(pads[3]), int(pads[7])))


def routing_handlers(reshape_flatten_like) -> dict:
    """The handler table's routing entries; a Reshape of anything but a channel grouping goes to the
    given handler."""
    return {"Concat": concat, "Split": split, "Slice": slice_, "Gather": gather, "Transpose": transpose, "Pad": pad,
            "Reshape": partial(reshape, flatten_like=reshape_flatten_like)}
