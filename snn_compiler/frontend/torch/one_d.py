"""Conv1d and the 1-D pools as their 2-D forms on maps of height 1: a (C, L) activation is the IR's
(C, 1, L) map, a kernel k is (1, k), a stride s (1, s), a padding p (0, p). A model whose graph calls a
1-D op reads its (C, L) input as a (C, 1, L) Input (:func:`uses_1d`); the handlers rewrite the
arguments and call the 2-D handlers, so each 1-D op shares its 2-D op's checks and messages."""
from __future__ import annotations

import torch

from .pools import adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d, max_pool2d_with_indices

aten = torch.ops.aten


def _one(v, what):
    """A 1-D size argument (an int or a one-element list) as an int."""
    if isinstance(v, (list, tuple)):
        if len(v) != 1:
            raise ValueError(f"expected one value for {what}, got {v!r}")
        v = v[0]
    return int(v)


def _row(ctx, a):
    """The activation, checked to be a (C, L) tensor (an IR (C, 1, L) map)."""
    shape = ctx.shape(ctx.act(a["self"] if "self" in a else a["input"]))
    if len(shape) != 3 or shape[1] != 1:
        ctx.fail(f"a 1-D op needs a (C, L) input, got {shape}")


def _as_2d(a):
    """A 1-D op's size arguments as 2-D pairs: 1 on the height axis for kernel, stride, dilation and
    output size, 0 for padding (an empty stride stays empty: the kernel's)."""
    out = dict(a)
    for key in ("kernel_size", "stride", "padding", "dilation", "output_size"):
        if key in a and not (key == "stride" and not a[key]):
            out[key] = [0 if key == "padding" else 1, _one(a[key], key)]
    return out


def conv1d(ctx, a):
    from .handlers import conv2d  # (handlers imports this module for its table)
    _row(ctx, a)
    w = a["weight"]
    if not isinstance(w, torch.Tensor) or w.ndim != 3:
        ctx.fail("Conv1d needs a constant weight of shape (out, in / groups, k)")
    b = dict(a, weight=w.unsqueeze(2), stride=[1, _one(a["stride"], "stride")],
             dilation=[1, _one(a["dilation"], "dilation")])
    if not isinstance(a["padding"], str):
        b["padding"] = [0, _one(a["padding"], "padding")]
    return conv2d(ctx, b)


def avg_pool1d(ctx, a):
    _row(ctx, a)
    return avg_pool2d(ctx, dict(_as_2d(a), divisor_override=None))


def max_pool1d(ctx, a):
    _row(ctx, a)
    return max_pool2d(ctx, _as_2d(a))


def max_pool1d_with_indices(ctx, a):
    _row(ctx, a)
    return max_pool2d_with_indices(ctx, _as_2d(a))


def adaptive_avg_pool1d(ctx, a):
    _row(ctx, a)
    return adaptive_avg_pool2d(ctx, _as_2d(a))


def adaptive_max_pool1d(ctx, a):
    _row(ctx, a)
    return adaptive_max_pool2d(ctx, _as_2d(a))


ONE_D = {
    aten.conv1d.default: conv1d,
    aten.conv1d.padding: conv1d,
    aten.avg_pool1d.default: avg_pool1d,
    aten.max_pool1d.default: max_pool1d,
    aten.max_pool1d_with_indices.default: max_pool1d_with_indices,
    aten.adaptive_avg_pool1d.default: adaptive_avg_pool1d,
    aten.adaptive_max_pool1d.default: adaptive_max_pool1d,
}


def uses_1d(ep) -> bool:
    """Whether the program calls a 1-D op: its (C, L) input is then read as a (C, 1, L) map."""
    return any(n.op == "call_function" and n.target in ONE_D for n in ep.graph.nodes)
