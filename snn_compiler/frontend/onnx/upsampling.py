"""ONNX ConvTranspose and Resize (nearest, whole factors) for the ONNX frontend's table
(``handlers.HANDLERS``): both become the IR's Conv2d with input dilation (frontend/lowering.py)."""
from __future__ import annotations

import math

import numpy as np

from ..lowering import transposed_conv, upsample_nearest


def conv_transpose(ctx):
    vals = ctx.inputs() + [None]
    x, w, b = ctx.act(vals[0]), ctx.const(vals[1], "weight W"), vals[2]
    if w.ndim != 4 or len(ctx.shape(x)) != 3:
        ctx.fail(f"only 2-D transposed convolutions on (C, H, W) maps are supported (weight {w.shape}, "
                 f"input {ctx.shape(x)})")
    if ctx.attr("output_shape") is not None or ctx.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        ctx.fail("ConvTranspose with output_shape or auto_pad SAME pads by what the output must be; export it with "
                 "explicit pads")
    pads = [int(p) for p in ctx.attr("pads", [0, 0, 0, 0])]
    if len(pads) != 4 or pads[:2] != pads[2:]:
        ctx.fail(f"asymmetric pads {pads}: the IR pads symmetrically")
    return ctx.emit(transposed_conv(ctx, w, ctx.const(b, "bias B", ndim=1), ctx.ints("strides", [1, 1]),
                                    (pads[0], pads[1]), ctx.ints("dilations", [1, 1]), int(ctx.attr("group", 1)),
                                    ctx.ints("output_padding", [0, 0])), [x])


def _source_index(y, scale, transform, rounding):
    """The input index ONNX's nearest Resize reads for output index ``y`` (the spec's formulas)."""
    if transform == "asymmetric":
        v = y / scale
    elif transform in ("half_pixel", "pytorch_half_pixel"):
        v = (y + 0.5) / scale - 0.5
    else:
        return None
    return {"floor": math.floor(v), "ceil": math.ceil(v), "round_prefer_floor": math.ceil(v - 0.5),
            "round_prefer_ceil": math.floor(v + 0.5)}.get(rounding)


def resize(ctx):
    vals = ctx.inputs() + [None, None, None]
    x = ctx.act(vals[0])
    shape = ctx.shape(x)
    if len(shape) != 3:
        ctx.fail(f"2-D resizing needs a (C, H, W) map, got {shape}")
    mode = ctx.attr("mode", "nearest")
    if mode != "nearest":
        ctx.fail(f"Resize mode {mode!r} interpolates with weights that change at the map's borders, which is not "
                 f"one convolution; use mode 'nearest' (then a conv), or a ConvTranspose, which snnc lowers")
    old = ctx.node.op_type == "Upsample"  # opset < 10: scales is the second input, coordinates asymmetric
    scales, sizes = (vals[1], None) if old else (vals[2], vals[3])
    if sizes is not None and np.size(ctx.const(sizes, "sizes", finite=False)):
        out = [int(v) for v in ctx.const(sizes, "sizes").reshape(-1)]
    elif scales is not None and np.size(ctx.const(scales, "scales", finite=False)):
        sc = ctx.const(scales, "scales").reshape(-1)
        out = [int(math.floor(d * s)) for d, s in zip((1,) + tuple(shape), sc)]
    else:
        ctx.fail("Resize without scales or sizes")
    if len(out) != 4 or out[:2] != [1, shape[0]]:
        ctx.fail(f"Resize to {out} changes the batch or channel axis; only H and W are resized")
    transform = "asymmetric" if old else ctx.attr("coordinate_transformation_mode", "half_pixel")
    rounding = "floor" if old else ctx.attr("nearest_mode", "round_prefer_floor")
    for a in range(2):
        n_in, n_out = shape[1 + a], out[2 + a]
        if n_out % n_in == 0 and any(_source_index(y, n_out / n_in, transform, rounding) != y // (n_out // n_in)
                                     for y in range(n_out)):
            ctx.fail(f"Resize with coordinate_transformation_mode {transform!r} and nearest_mode {rounding!r} does "
                     f"not copy each pixel a whole number of times; export with 'asymmetric' and 'floor' (torch's)")
    return upsample_nearest(ctx, x, out[2:])
