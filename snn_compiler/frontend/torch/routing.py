"""Handlers of the aten ops that only route channels (``torch.cat`` on the channel axis): they
become the IR's routing ops (:mod:`snn_compiler.ir.routing`), which passes take apart before SNN
form (passes/split_concat.py)."""
from __future__ import annotations

import torch

from ...ir.routing import Concat
from ..lowering import Act

aten = torch.ops.aten


def _channel_axis(ctx, dim, what) -> None:
    """Refuse a ``dim`` other than the channel (feature) axis 1 of the op's batched output."""
    rank = len(ctx.out_shape())
    if not isinstance(dim, int) or isinstance(dim, bool) or not -rank <= dim < rank:
        ctx.fail(f"{what} dim must be an axis of a rank-{rank} tensor, got {dim!r}")
    if dim % rank != 1:
        ctx.fail(f"{what} along axis {dim} of a rank-{rank} tensor is not supported; snnc {what}s channels "
                 f"(or features): dim=1")


def cat(ctx, a):
    """``torch.cat(xs, dim=1)``: a Concat of the activations (one tensor: itself)."""
    xs = list(a["tensors"])
    _channel_axis(ctx, a["dim"], "concatenation")
    for i, x in enumerate(xs):
        if not isinstance(x, Act):
            ctx.act(x, f"tensor {i}")  # refuses a constant or an unavailable value, naming it
    if len(set(xs)) != len(xs):
        ctx.fail("concatenating a tensor with itself (torch.cat((x, x), 1)) is not supported")
    if len(xs) == 1:
        return xs[0]
    return ctx.emit(Concat(), xs)


ROUTING = {
    aten.cat.default: cat,
    aten.concat.default: cat,
    aten.concatenate.default: cat,
}
