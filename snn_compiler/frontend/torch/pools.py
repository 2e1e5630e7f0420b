"""Handlers for the pools (average, max, adaptive, the mean over H and W) of the torch frontend's
table (``handlers.HANDLERS``)."""
from __future__ import annotations

from ...ir import ops as O
from ..lowering import Unavailable, ceil_mode_rows, ceil_out_hw
from ..pool_windows import average_pool, torch_windows
from .context import _pair


def _map_input(ctx, a):
    """The op's activation input and its shape, which must be a (C, H, W) map."""
    x = ctx.act(a["self"])
    shape = ctx.shape(x)
    if len(shape) != 3:
        ctx.fail(f"needs a (C, H, W) input, got {shape}")
    return x, shape


def avg_pool2d(ctx, a):
    """nn.AvgPool2d / F.avg_pool2d: an AvgPool2d, or a WindowAvgPool2d where ceil_mode or
    count_include_pad=False divides border windows by fewer values (folded into the Linear after it)."""
    x, shape = _map_input(ctx, a)
    k = _pair(a["kernel_size"], "kernel_size")
    s = _pair(a["stride"], "stride") if a["stride"] else k
    p = _pair(a["padding"], "padding")
    if a["divisor_override"] is not None:
        ctx.fail("divisor_override is not supported")
    rows, cols = (torch_windows(shape[1 + i], k[i], s[i], p[i], bool(a["ceil_mode"]), bool(a["count_include_pad"]))
                  for i in range(2))
    return ctx.emit(average_pool(rows, cols, k, s, p), [x])


def _max_pool(ctx, a):
    x, shape = _map_input(ctx, a)
    k = _pair(a["kernel_size"], "kernel_size")
    s = _pair(a["stride"], "stride") if a["stride"] else k
    p = _pair(a["padding"], "padding")
    d = _pair(a["dilation"], "dilation")
    if a["ceil_mode"]:
        floor = O.conv_out_hw(shape[1:], k, s, p, d)
        ceil = ceil_out_hw(shape[1:], k, s, p, d)
        if ceil != floor:
            x = ceil_mode_rows(ctx, x, shape, ceil, k, s, p, d)
    return ctx.emit(O.MaxPool2d(kernel_size=k, stride=s, padding=p, dilation=d), [x])


def max_pool2d(ctx, a):
    """nn.MaxPool2d / F.max_pool2d: a MaxPool2d op, lowered into IF layers by the lower_maxpool pass."""
    return _max_pool(ctx, a)


def max_pool2d_with_indices(ctx, a):
    """The same as decomposed programs record it; the indices are not computed (using them is refused)."""
    return (_max_pool(ctx, a), Unavailable("the indices of a max pool (return_indices=True)"))


def _adaptive_window(ctx, a, op_name):
    """The map input and the window (= stride) of an adaptive pool whose output size divides its input."""
    x, shape = _map_input(ctx, a)
    out = _pair(a["output_size"], "output_size")
    h, w = shape[1:]
    if h % out[0] or w % out[1]:
        ctx.fail(f"output size {out} does not divide the input size {(h, w)}: the pooling windows "
                 f"would overlap unevenly, which {op_name} cannot express")
    return x, (h // out[0], w // out[1])


def adaptive_max_pool2d(ctx, a):
    x, k = _adaptive_window(ctx, a, "MaxPool2d")
    y = ctx.emit(O.MaxPool2d(kernel_size=k, stride=k), [x])
    return (y, Unavailable("the indices of an adaptive max pool"))


def adaptive_avg_pool2d(ctx, a):
    """An AvgPool2d where the output size divides the input; else the uneven (or repeating) windows
    as they are, which fold_adaptive_pools composes into the Linear that reads them."""
    x, shape = _map_input(ctx, a)
    out = _pair(a["output_size"], "output_size")
    h, w = shape[1:]
    if h % out[0] or w % out[1]:
        return ctx.emit(O.AdaptiveAvgPool2d(output_size=out), [x])
    k = (h // out[0], w // out[1])
    return ctx.emit(O.AvgPool2d(kernel_size=k, stride=k), [x])


def mean_dim(ctx, a):
    """``x.mean((2, 3))`` (global average pool), keepdim or not."""
    x = ctx.act(a["self"])
    shape = ctx.shape(x)
    rank = len(shape) + 1
    dims = a["dim"] if isinstance(a["dim"], (list, tuple)) else [a["dim"]]
    if len(shape) != 3 or sorted(int(d) % rank for d in dims) != [2, 3] or a["dtype"] is not None:
        ctx.fail(f"only the mean over both spatial axes of a (C, H, W) map is supported "
                 f"(dims {list(dims)} on {shape})")
    y = ctx.emit(O.AvgPool2d(kernel_size=shape[1:], stride=shape[1:]), [x])
    return y if a["keepdim"] else ctx.emit(O.Flatten(), [y], suffix=".flatten")
