"""Handlers of recurrent layers: snn_compiler.nn.CubaLIF(recurrent=N), exported as one
snnc::rcubalif op carrying its recurrent weights, becomes the IR's cycle

    x -> Add -> CubaLIF neurons -> Delay(1) -> Dense(w_rec) -> (that Add)

(the layer reads its own spikes of the previous step; ir.ops.Delay is how the IR closes a cycle)."""
from __future__ import annotations

import torch

from ...ir import add_op, unique_name
from ...ir import ops as O


def rcubalif(ctx, a):
    from .handlers import cubalif  # (handlers imports this module for its table)
    w = ctx.const(a["w_rec"], "w_rec", ndim=2)
    layer = cubalif(ctx, a)
    g, name = ctx.g, layer.name
    n = ctx.shapes[name]
    if len(n) != 1 or w.shape != (n[0], n[0]):
        ctx.fail(f"recurrent weights of shape {tuple(w.shape)} do not fit a layer of shape {n}: a recurrent CubaLIF "
                 "takes vectors (B, N) and N x N weights")
    delay = ctx.emit(O.Delay(shape=n, steps=1), [layer], suffix=".delay")
    rec = ctx.emit(O.Dense(weight=w), [delay], suffix=".rec")
    (src,) = list(g.predecessors(name))
    g.remove_edge(src, name)
    total = unique_name(g, f"{name}.sum")
    add_op(g, total, O.Add(), [src, rec.name])
    ctx.shapes[total] = n
    g.add_edge(total, name, port=0)
    return layer


RECURRENT = {torch.ops.snnc.rcubalif.default: rcubalif}
