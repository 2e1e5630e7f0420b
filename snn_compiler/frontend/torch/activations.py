"""Handlers for ReLU and the clipped ReLUs (ReLU6, ``Hardtanh(0, a)``, ``clamp(0, a)``), in every
in-place form: each becomes an IF layer; a clip ``a`` is the layer's ``clip`` (its ANN reading
``min(relu(x), a)``), which is exactly a neuron's maximum rate once the normalize pass makes its
scale at most ``a``."""
from __future__ import annotations

import math

import torch

from ... import ir
from ...ir import ops as O

aten = torch.ops.aten


def _number(ctx, v, what):
    """A clamp bound as a float (None stays None); an activation or tensor bound is refused."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        ctx.fail(f"{what} must be a number, got {type(v).__name__}: only clamping to constants converts")
    return float(v)


def _clipped_if(ctx, x, lo, hi, form):
    """IF for ``clamp(x, lo, hi)``: ``lo`` must be 0 (a ReLU), ``hi`` None or a finite number > 0."""
    if lo != 0:
        ctx.fail(f"{form} with lower bound {lo:g} is not a ReLU: only a lower bound of 0 converts into "
                 f"integrate-and-fire neurons (ReLU, ReLU6, Hardtanh(0, a), clamp(x, 0, a))")
    if hi is not None and not (math.isfinite(hi) and hi > 0):
        ctx.fail(f"{form} with upper bound {hi:g}: a clipped ReLU needs an upper bound that is a finite "
                 f"number > 0")
    return ctx.emit(O.IF(clip=hi), [ctx.act(x)])


def relu(ctx, a):
    return ctx.emit(O.IF(), [ctx.act(a["self"])])


def relu6(ctx, a):
    return _clipped_if(ctx, a["self"], 0.0, 6.0, "relu6")


def hardtanh(ctx, a):
    lo, hi = _number(ctx, a["min_val"], "min_val"), _number(ctx, a["max_val"], "max_val")
    return _clipped_if(ctx, a["self"], lo, hi, "Hardtanh")


def clamp(ctx, a):
    lo, hi = _number(ctx, a["min"], "min"), _number(ctx, a["max"], "max")
    if lo is None:
        ctx.fail("clamp without a lower bound is not a ReLU: only clamp(x, 0, a) / clamp(x, min=0) converts")
    return _clipped_if(ctx, a["self"], lo, hi, "clamp")


def clamp_min(ctx, a):
    return _clipped_if(ctx, a["self"], _number(ctx, a["min"], "min"), None, "clamp_min")


def clamp_max(ctx, a):
    """``clamp_max(clamp_min(x, 0), a)`` (or ``clamp_max(relu(x), a)``): clip the IF layer of the ReLU
    it reads, which only this op may read (the unclipped values exist nowhere else)."""
    x = ctx.act(a["self"])
    hi = _number(ctx, a["max"], "max")
    src = ctx.node.args[0]
    op = ir.op_of(ctx.g, x.name)
    is_relu = isinstance(op, O.Neuron) and not op.readout and op.spike_value is None and op.levels is None
    if not is_relu or not isinstance(src, torch.fx.Node) or len(src.users) != 1:
        ctx.fail("clamp_max converts only right after a ReLU (relu or clamp_min(x, 0)) whose output nothing "
                 "else reads: use clamp(x, 0, a), ReLU6 or Hardtanh(0, a)")
    if not (math.isfinite(hi) and hi > 0):
        ctx.fail(f"clamp_max with upper bound {hi:g}: a clipped ReLU needs an upper bound that is a finite "
                 f"number > 0")
    op.clip = hi if op.clip is None else min(op.clip, hi)
    return x


ACTIVATIONS = {
    aten.relu.default: relu,
    aten.relu_.default: relu,
    aten.relu6.default: relu6,
    aten.relu6_.default: relu6,
    aten.hardtanh.default: hardtanh,
    aten.hardtanh_.default: hardtanh,
    aten.clamp.default: clamp,
    aten.clamp_.default: clamp,
    aten.clamp_min.default: clamp_min,
    aten.clamp_min_.default: clamp_min,
    aten.clamp_max.default: clamp_max,
    aten.clamp_max_.default: clamp_max,
}
