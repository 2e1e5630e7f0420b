"""Handlers of the aten ops that only route channels: ``torch.cat`` on the channel axis, channel
slices (``chunk``, ``split``, ``x[:, a:b]``, ``narrow``, ``index_select``) and ShuffleNet's channel
shuffle (``view(b, g, c/g, h, w) -> transpose(1, 2) -> view(b, c, h, w)``, or ``nn.ChannelShuffle``).
They become the IR's routing ops (:mod:`snn_compiler.ir.routing`), which passes take apart before
SNN form (passes/split_concat.py)."""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from ...ir.routing import Concat
from ..lowering import Act, GroupedChannels, grouping_order, zero_pad
from .refusals import why_not

aten = torch.ops.aten


def _input_shape(ctx) -> tuple:
    """The shape (batch axis included) of the op's first tensor argument, as export recorded it."""
    first = ctx.node.args[0]
    first = first[0] if isinstance(first, (list, tuple)) else first
    val = first.meta.get("val") if isinstance(first, torch.fx.Node) else None
    if not isinstance(val, torch.Tensor):
        ctx.fail("export recorded no shape for this op's input")
    return tuple(val.shape)


def _rank(ctx) -> int:
    return len(_input_shape(ctx))


def _dim(ctx, dim, rank, what) -> int:
    if not isinstance(dim, int) or isinstance(dim, bool) or not -rank <= dim < rank:
        ctx.fail(f"{what} dim must be an axis of a rank-{rank} tensor, got {dim!r}")
    return dim % rank


def _channel_axis(ctx, dim, what) -> None:
    """Refuse a ``dim`` other than the channel (feature) axis 1 of the (batched) input."""
    rank = _rank(ctx)
    if _dim(ctx, dim, rank, what) != 1:
        ctx.fail(f"{what} along axis {dim} of a rank-{rank} tensor is not supported; snnc routes channels "
                 f"(or features) only: dim=1")


def cat(ctx, a):
    """``torch.cat(xs, dim=1)``: a Concat of the activations (one tensor: itself)."""
    xs = list(a["tensors"])
    for i, x in enumerate(xs):
        ctx.act(x, f"tensor {i}")  # refuses a constant or an unavailable value, naming it
    _channel_axis(ctx, a["dim"], "concatenation")
    if len(set(xs)) != len(xs):
        ctx.fail("concatenating a tensor with itself (torch.cat((x, x), 1)) is not supported")
    return xs[0] if len(xs) == 1 else ctx.emit(Concat(), xs)


def _pieces(ctx, a, sizes):
    """Consecutive channel ranges of ``sizes`` (what chunk and split return)."""
    x = ctx.act(a["self"])
    _channel_axis(ctx, a["dim"], "splitting")
    starts = np.cumsum([0] + list(sizes))
    if starts[-1] != ctx.shape(x)[0]:
        ctx.fail(f"split sizes {list(sizes)} do not add up to the {ctx.shape(x)[0]} channels")
    return [ctx.select_channels(x, np.arange(lo, hi), suffix=f".{i}") for i, (lo, hi) in enumerate(zip(starts, starts[1:]))]


def chunk(ctx, a):
    c, n = ctx.shape(ctx.act(a["self"]))[0], int(a["chunks"])
    size = -(-c // n)  # torch's rule: chunks of ceil(C / n), the last one smaller
    return _pieces(ctx, a, [min(size, c - lo) for lo in range(0, c, size)])


def split(ctx, a):
    c, size = ctx.shape(ctx.act(a["self"]))[0], a["split_size"]
    if isinstance(size, (list, tuple)):
        return _pieces(ctx, a, [int(s) for s in size])
    return _pieces(ctx, a, [min(int(size), c - lo) for lo in range(0, c, int(size))])


def split_with_sizes(ctx, a):
    return _pieces(ctx, a, [int(s) for s in a["split_sizes"]])


def slice_(ctx, a):
    """``x[:, start:end:step]``; a slice of the whole batch axis (what ``x[:, ...]`` records) is ``x``."""
    x = ctx.act(a["self"])
    rank = _rank(ctx)
    dim = _dim(ctx, a["dim"], rank, "slice")
    start, end, step = a["start"], a["end"], a["step"]
    size = _input_shape(ctx)[dim]
    if start in (None, 0) and (end is None or end >= size) and step == 1:  # x[:, ...], x[:, :, :]: all of it
        return x
    if dim != 1:
        ctx.fail(f"slicing axis {a['dim']} of a rank-{rank} tensor is not supported; snnc slices channels "
                 f"(or features) only: x[:, a:b]")
    index = np.arange(ctx.shape(x)[0])[slice(start, end, step)]
    if not len(index):
        ctx.fail("the slice selects no channel")
    return ctx.select_channels(x, index)


def narrow(ctx, a):
    x = ctx.act(a["self"])
    _channel_axis(ctx, a["dim"], "narrowing")
    start, length = int(a["start"]), int(a["length"])
    start = start % ctx.shape(x)[0]
    return ctx.select_channels(x, np.arange(start, start + length))


def index_select(ctx, a):
    x = ctx.act(a["self"])
    _channel_axis(ctx, a["dim"], "index_select")
    index = ctx.const(a["index"], "index", ndim=1)
    return ctx.select_channels(x, index.astype(np.int64) % ctx.shape(x)[0])


def channel_shuffle(ctx, a):
    """``nn.ChannelShuffle(g)``: the channels as (g, C/g) read back (C/g, g)-major."""
    x = ctx.act(a["self"])
    c, g = ctx.shape(x)[0], int(a["groups"])
    if g < 1 or c % g:
        ctx.fail(f"channel shuffle with {g} groups of {c} channels")
    return ctx.select_channels(x, grouping_order(GroupedChannels(what="", groups=(g, c // g), swapped=True)))


def view(ctx, a, reshape):
    """A view that groups channels, ``(b, g, c/g, h, w)``, or reads such a grouping back as channels
    (a channel shuffle); every other view is ``reshape``'s (flatten-like)."""
    x = a["self"]
    out = ctx.out_shape()
    if isinstance(x, GroupedChannels):
        c, hw = ctx.shape(x.act)[0], ctx.shape(x.act)[1:]
        if tuple(int(d) for d in out[1:]) != (c,) + tuple(hw):
            ctx.fail(f"a channel grouping {x.groups} is read back as {tuple(out[1:])}; only (C, H, W) is supported")
        return ctx.select_channels(x.act, grouping_order(x))
    if isinstance(x, Act) and len(out) == 5 and len(ctx.shape(x)) == 3:
        c, hw = ctx.shape(x)[0], ctx.shape(x)[1:]
        g1, g2, h, w = (int(d) for d in out[1:])
        if g1 * g2 == c and (h, w) == tuple(hw):
            return GroupedChannels(what=f"a {ctx.shape(x)} map viewed as ({g1}, {g2}, {h}, {w})", act=x,
                                   groups=(g1, g2))
    return reshape(ctx, a)


def _refuse(ctx, msg):
    """Refuse with why the layer holding the op is not converted (attention's transposes are attention),
    else with ``msg``."""
    why = why_not(ctx.node)
    ctx.fail(f"unsupported op: {why}" if why else msg)


def transpose(ctx, a):
    """Swapping the two channel axes of a grouping (the middle step of a channel shuffle)."""
    x = a["self"]
    if isinstance(x, GroupedChannels) and sorted(_dim(ctx, d, 5, "transpose") for d in (a["dim0"], a["dim1"])) == [1, 2]:
        return GroupedChannels(what=x.what, act=x.act, groups=x.groups, swapped=not x.swapped)
    _refuse(ctx, "transposing activations is not supported, except the channel axes of a channel shuffle "
                 "(x.view(b, g, c // g, h, w).transpose(1, 2))")


def permute(ctx, a):
    x = a["self"]
    dims = [_dim(ctx, d, 5, "permute") for d in a["dims"]] if isinstance(x, GroupedChannels) else None
    if dims == [0, 2, 1, 3, 4]:
        return GroupedChannels(what=x.what, act=x.act, groups=x.groups, swapped=not x.swapped)
    if dims == [0, 1, 2, 3, 4]:
        return x
    _refuse(ctx, "permuting the axes of activations is not supported, except the channel axes of a channel "
                 "shuffle (x.view(b, g, c // g, h, w).permute(0, 2, 1, 3, 4))")


def keep_grouping(ctx, a, identity):
    """contiguous / clone: a channel grouping stays one; anything else is ``identity``'s."""
    return a["self"] if isinstance(a["self"], GroupedChannels) else identity(ctx, a)


def flatten(ctx, a, flatten_all):
    """``flatten(1, 2)`` of a channel grouping reads it back as channels; anything else is ``flatten_all``'s."""
    x = a["self"]
    if isinstance(x, GroupedChannels) and (int(a["start_dim"]) % 5, int(a["end_dim"]) % 5) == (1, 2):
        return ctx.select_channels(x.act, grouping_order(x))
    return flatten_all(ctx, a)


def pad(ctx, a):
    """``F.pad(x, (left, right, top, bottom))`` with zeros (constant mode, value 0) on a map."""
    x = ctx.act(a["self"])
    p = [int(v) for v in a["pad"]]
    mode, value = a.get("mode", "constant"), a.get("value")
    if mode != "constant" or value not in (None, 0):
        ctx.fail(f"padding with mode={mode!r}, value={value!r}; only zero padding is supported")
    if len(p) not in (2, 4):
        ctx.fail(f"padding {p} pads more than the last two axes; only the height and width are supported")
    left, right, top, bottom = p + [0, 0] * (len(p) == 2)
    return zero_pad(ctx, x, (top, bottom, left, right))


def routing_handlers(reshape, identity, flatten_all) -> dict:
    """The handler table's routing entries; views, clones and flattens of anything but a channel
    grouping go to the given handlers."""
    views = partial(view, reshape=reshape)
    views.__name__ = "reshape"  # what the refusals' list of lowered layers calls it
    keep = partial(keep_grouping, identity=identity)
    keep.__name__ = "identity"
    flat = partial(flatten, flatten_all=flatten_all)
    flat.__name__ = "flatten"
    return {
        aten.cat.default: cat, aten.concat.default: cat, aten.concatenate.default: cat,
        aten.chunk.default: chunk, aten.unsafe_chunk.default: chunk,
        aten.split.Tensor: split, aten.unsafe_split.Tensor: split, aten.split.sizes: split,
        aten.split_with_sizes.default: split_with_sizes, aten.unsafe_split_with_sizes.default: split_with_sizes,
        aten.slice.Tensor: slice_, aten.narrow.default: narrow, aten.index_select.default: index_select,
        aten.channel_shuffle.default: channel_shuffle, aten.native_channel_shuffle.default: channel_shuffle,
        aten.view.default: views, aten.reshape.default: views, aten._unsafe_view.default: views,
        aten.transpose.int: transpose, aten.permute.default: permute,
        aten.contiguous.default: keep, aten.clone.default: keep, aten.flatten.using_ints: flat,
        aten.pad.default: pad, aten.constant_pad_nd.default: pad,
    }
