"""Handlers for upsampling (``nn.Upsample``, ``F.interpolate``) of the torch frontend's table
(``handlers.HANDLERS``): nearest by whole factors becomes a depthwise Conv2d with input dilation
(:func:`..lowering.upsample_nearest`); bilinear and bicubic are refused with the reason."""
from __future__ import annotations

import torch

from ..lowering import upsample_nearest

aten = torch.ops.aten


def _out_hw(ctx, a, shape):
    """The (H, W) the op asks for: ``output_size``, or the input's times ``scale_factors`` /
    ``scales_h``/``scales_w`` (torch floors the product)."""
    if a.get("output_size") is not None:
        return tuple(int(v) for v in a["output_size"])
    scales = a.get("scale_factors")
    if scales is None:
        scales = (a.get("scales_h"), a.get("scales_w"))
    if any(v is None for v in scales):
        ctx.fail("upsampling without output_size or scale factors")
    return tuple(int(shape[1 + i] * float(scales[i])) for i in range(2))


def nearest(ctx, a):
    x = ctx.act(a["input"])
    shape = ctx.shape(x)
    if len(shape) != 3:
        ctx.fail(f"2-D upsampling needs a (C, H, W) map, got {shape}")
    return upsample_nearest(ctx, x, _out_hw(ctx, a, shape))


def interpolating(ctx, a):
    ctx.fail("bilinear/bicubic upsampling interpolates with weights that change at the map's borders (it "
             "clamps there), which is not one convolution; use mode='nearest' (then a conv), or a "
             "ConvTranspose2d, which snnc lowers")


UPSAMPLING = {
    aten.upsample_nearest2d.vec: nearest,
    aten.upsample_nearest2d.default: nearest,
    aten._upsample_nearest_exact2d.vec: nearest,      # the same for whole factors: floor((y + 0.5) / s) = y // s
    aten._upsample_nearest_exact2d.default: nearest,
    aten.upsample_bilinear2d.vec: interpolating,
    aten.upsample_bilinear2d.default: interpolating,
    aten._upsample_bilinear2d_aa.vec: interpolating,
    aten._upsample_bilinear2d_aa.default: interpolating,
    aten.upsample_bicubic2d.vec: interpolating,
    aten.upsample_bicubic2d.default: interpolating,
}
