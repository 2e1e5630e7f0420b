"""ONNX ops that only route channels (Concat on the channel axis): the IR's routing ops
(:mod:`snn_compiler.ir.routing`), which passes take apart before SNN form."""
from __future__ import annotations

from ...ir.routing import Concat


def concat(ctx):
    """``Concat(axis=1)`` of activations: a Concat (one input: itself)."""
    xs = [ctx.act(v, f"input {i}") for i, v in enumerate(ctx.inputs())]
    rank = len(ctx.shape(xs[0])) + 1
    given = ctx.attr("axis")
    if given is None:
        ctx.fail("Concat has no axis attribute (it is required)")
    axis = int(given) + rank if int(given) < 0 else int(given)
    if axis != 1:
        ctx.fail(f"Concat along axis {given} of a rank-{rank} tensor is not supported; snnc concatenates channels "
                 f"(or features): axis=1")
    if len(set(xs)) != len(xs):
        ctx.fail("concatenating a tensor with itself is not supported")
    return xs[0] if len(xs) == 1 else ctx.emit(Concat(), xs)


ROUTING = {"Concat": concat}
