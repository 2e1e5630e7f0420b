"""One handler per aten op: ``HANDLERS`` maps each supported op to the function that lowers it."""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ... import nn as _snnc_nn  # noqa: F401  (registers the snnc::lif, snnc::cubalif and snnc::qcfs ops)
from ...ir import ops as O
from ...ir import neuron as N
from ...ir.neuron import QCFS, RESETS

from ..lowering import Act, Unavailable, describe, transposed_conv
from .activations import ACTIVATIONS
from .one_d import ONE_D
from .recurrent import RECURRENT
from .routing import routing_handlers
from .pools import (adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, max_pool2d,
                    max_pool2d_with_indices, mean_dim)
from .upsampling import UPSAMPLING
from .context import _pair

aten = torch.ops.aten


# ---- handlers: one per aten op -------------------------------------------------------------------
# Each takes (ctx, a) with a = arguments by schema name (values already mapped: Act for
# activations, torch.Tensor for constants) and returns the node's value.

def _conv(ctx, a, padding, transposed=False):
    x = ctx.act(a["input"])
    w = ctx.const(a["weight"], "weight")
    if transposed:
        if len(ctx.shape(x)) != 3:
            ctx.fail(f"only 2-D transposed convolutions on (C, H, W) maps are supported (input {ctx.shape(x)})")
        return ctx.emit(transposed_conv(ctx, w, ctx.const(a["bias"], "bias", ndim=1), _pair(a["stride"], "stride"),
                                        padding, _pair(a["dilation"], "dilation"), int(a["groups"]),
                                        _pair(a["output_padding"], "output_padding")), [x])
    if w.ndim != 4 or len(ctx.shape(x)) != 3:
        ctx.fail(f"only 2-D convolutions on (C, H, W) maps are supported (weight {w.shape}, "
                 f"input {ctx.shape(x)})")
    op = O.Conv2d(weight=w, bias=ctx.const(a["bias"], "bias", ndim=1), stride=_pair(a["stride"], "stride"),
                  padding=padding, dilation=_pair(a["dilation"], "dilation"), groups=int(a["groups"]))
    return ctx.emit(op, [x])


def conv2d(ctx, a):
    pad = a["padding"]
    if isinstance(pad, str):
        w = a["weight"]
        if pad == "valid":
            pad = (0, 0)
        elif pad == "same":
            dil = _pair(a["dilation"], "dilation")
            total = [dil[i] * (int(w.shape[2 + i]) - 1) for i in range(2)] if isinstance(w, torch.Tensor) else [0, 0]
            if any(t % 2 for t in total):
                ctx.fail(f"padding='same' with kernel {tuple(w.shape[2:])} and dilation {dil} pads unevenly "
                         f"(torch adds the extra row/column at the bottom/right); the IR has symmetric "
                         f"padding only: use an odd kernel or explicit padding")
            pad = (total[0] // 2, total[1] // 2)
        else:
            ctx.fail(f"unknown padding {pad!r}")
    return _conv(ctx, a, _pair(pad, "padding"))


def convolution(ctx, a):
    return _conv(ctx, a, _pair(a["padding"], "padding"), transposed=bool(a["transposed"]))


def conv_transpose2d(ctx, a):
    return _conv(ctx, a, _pair(a["padding"], "padding"), transposed=True)


def linear(ctx, a):
    x = ctx.act(a["input"])
    if len(ctx.shape(x)) != 1:
        ctx.fail(f"Linear on an input of shape {ctx.shape(x)} acts on its last axis only; the IR's "
                 f"Dense takes vectors: flatten first (nn.Flatten / torch.flatten(x, 1))")
    return ctx.emit(O.Dense(weight=ctx.const(a["weight"], "weight", ndim=2),
                            bias=ctx.const(a["bias"], "bias", ndim=1)), [x])


def addmm(ctx, a):
    """``beta * bias + alpha * (x @ w_t)`` as decomposed from Linear."""
    if a["beta"] != 1 or a["alpha"] != 1:
        ctx.fail("addmm with beta or alpha other than 1 is not supported")
    x = ctx.act(a["mat1"], "mat1")
    if len(ctx.shape(x)) != 1:
        ctx.fail(f"matrix product on an input of shape {ctx.shape(x)}; flatten first")
    w_t = ctx.const(a["mat2"], "mat2", ndim=2)
    bias = ctx.const(a["self"], "bias")
    bias = np.broadcast_to(bias, (w_t.shape[1],)).copy()
    return ctx.emit(O.Dense(weight=w_t.T.copy(), bias=bias), [x])


def mm(ctx, a):
    x = ctx.act(a["self"])
    if len(ctx.shape(x)) != 1:
        ctx.fail(f"matrix product on an input of shape {ctx.shape(x)}; flatten first")
    return ctx.emit(O.Dense(weight=ctx.const(a["mat2"], "mat2", ndim=2).T.copy()), [x])


def _bn(ctx, a, training):
    x = ctx.act(a["input"])
    if a["running_mean"] is None or a["running_var"] is None:
        ctx.fail("BatchNorm without running statistics (track_running_stats=False) normalises with "
                 "batch statistics, which a per-sample network cannot do")
    if training:
        ctx.fail("BatchNorm in training mode normalises with batch statistics: call model.eval() "
                 "before exporting or saving")
    mean = ctx.const(a["running_mean"], "running_mean", ndim=1)
    n = mean.shape[0]
    weight = ctx.const(a["weight"], "weight", ndim=1)
    bias = ctx.const(a["bias"], "bias", ndim=1)
    op = O.BatchNorm(mean=mean, var=ctx.const(a["running_var"], "running_var", ndim=1),
                     weight=np.ones(n) if weight is None else weight,
                     bias=np.zeros(n) if bias is None else bias, eps=float(a["eps"]))
    return ctx.emit(op, [x])


def batch_norm(ctx, a):
    return _bn(ctx, a, bool(a["training"]))


def native_batch_norm_no_training(ctx, a):
    return (_bn(ctx, a, False), None, None)  # (output, save_mean, save_invstd)


def _lif_fields(ctx, a):
    """The checked input, beta, threshold and reset of an snnc::lif or snnc::cubalif op."""
    x = ctx.act(a["x"])
    beta = ctx.const(a["beta"], "beta").reshape(-1)
    threshold, reset = a["threshold"], a["reset"]
    if reset not in RESETS:
        ctx.fail(f"reset must be one of {RESETS}, got {reset!r}")
    if not (np.isfinite(threshold) and threshold > 0):
        ctx.fail(f"threshold must be a finite number > 0, got {threshold!r}")
    if not np.all((beta >= 0) & (beta <= 1)):
        ctx.fail("beta must lie in 0..1 (clamp a learned beta before exporting)")
    return x, beta, float(threshold), reset


def lif(ctx, a):
    """A trained LIF layer (snn_compiler.nn.LIF, exported as one snnc::lif op)."""
    x, beta, threshold, reset = _lif_fields(ctx, a)
    return ctx.emit(O.LIF(beta, threshold=threshold, reset=reset), [x])


def cubalif(ctx, a):
    """A trained CubaLIF layer (snn_compiler.nn.CubaLIF, one snnc::cubalif op): a LIF layer with
    current memory ``decay_u = round((1 - alpha) * 4096)`` (ir.neuron.round_decay, Loihi's 12 bits;
    a rounding that moves alpha is warned about with the layer, both decays and the error)."""
    x, beta, threshold, reset = _lif_fields(ctx, a)
    alpha = a["alpha"]
    if not (np.isfinite(alpha) and 0 <= alpha <= 1):
        ctx.fail(f"alpha must lie in 0..1, got {alpha!r}")
    du = int(N.round_decay(1.0 - alpha))
    if du == 0:
        ctx.fail(f"alpha {alpha!r} rounds to 1 (decay_u 0 of 4096: a current that never decays); the largest "
                 "12-bit alpha below 1 is 1 - 1/4096")
    d, r, err = N.decay_rounding(1.0 - alpha)
    if err > 0:
        warnings.warn(f"{ctx.label()}: its current decay 1 - alpha = {d:.6g} rounds to {du}/4096 = {r:.6g} "
                      f"(relative error {err:.2%}; Loihi's decays have 12 bits)", UserWarning, stacklevel=2)
    out = ctx.emit(O.LIF(beta, threshold=threshold, reset=reset, decay_u=du), [x])
    ctx.g.graph["snnc"].setdefault("current_decays", {})[out.name] = {"decay": d, "rounded": r, "error": err}
    return out


def qcfs(ctx, a):
    """A QCFS activation (snn_compiler.nn.QCFS, exported as one snnc::qcfs op): an IF layer whose
    activation scale is the trained theta (no calibration for it) and whose ANN reading is the
    staircase; the quantize pass starts it at half its threshold."""
    x = ctx.act(a["x"])
    theta = ctx.const(a["theta"], "theta").reshape(-1)
    levels = a["levels"]
    if theta.size != 1:
        ctx.fail(f"QCFS theta must be one value, got {theta.size}")
    if not (np.isfinite(theta[0]) and theta[0] > 0):
        ctx.fail(f"QCFS theta must be a finite number > 0, got {float(theta[0])!r} (clamp it before exporting)")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        ctx.fail(f"QCFS levels must be an integer >= 1, got {levels!r}")
    return ctx.emit(QCFS(levels, float(theta[0])), [x])


def flatten(ctx, a):
    x = ctx.act(a["self"])
    rank = len(ctx.shape(x)) + 1
    start, end = int(a["start_dim"]) % rank, int(a["end_dim"]) % rank
    if start == 0:
        ctx.fail("flattening from axis 0 merges the batch axis into the features: use "
                 "torch.flatten(x, 1) / nn.Flatten()")
    if start != 1 or end != rank - 1:
        ctx.fail(f"only flattening every axis after the batch axis is supported (start_dim=1, "
                 f"end_dim=-1), got start_dim={a['start_dim']}, end_dim={a['end_dim']}")
    return x if rank == 2 else ctx.emit(O.Flatten(), [x])


def reshape(ctx, a):
    """view / reshape: only the flatten-like ``x.view(x.size(0), -1)`` (or no-op reshapes)."""
    x = ctx.act(a["self"])
    shape = ctx.shape(x)
    out = ctx.out_shape()
    try:
        features = tuple(int(d) for d in out[1:])
    except (TypeError, ValueError):
        features = None
    if features == shape:
        return x
    if features == (int(np.prod(shape)),):
        return ctx.emit(O.Flatten(), [x])
    ctx.fail(f"reshape of a {shape} sample to {features if features is not None else out[1:]} is not "
             f"flatten-like; only x.view(x.size(0), -1) / x.reshape(x.size(0), -1) (or a no-op "
             f"reshape) is supported, and the batch axis must stay first")


def dropout(ctx, a):
    x = ctx.act(a["input"] if "input" in a else a["self"])  # the in-place forms name it self
    if a["train"]:
        ctx.fail("dropout in training mode: call model.eval() before exporting or saving")
    return x


def identity(ctx, a):
    return ctx.act(a["self"])


def cast(ctx, a):
    """x.float() / x.to(dtype): the IR computes in float64, so a float-to-float cast is a no-op."""
    x = ctx.act(a["self"])
    dtype = a.get("dtype")
    if dtype is not None and not dtype.is_floating_point:
        ctx.fail(f"casting activations to {dtype} is not supported")
    return x


def assert_metadata(ctx, a):
    """export's check that a tensor has the dtype/device the code expects: nothing to compute."""
    return None


def add(ctx, a):
    x, y = a["self"], a["other"]
    if not isinstance(x, Act) or not isinstance(y, Act):
        const = y if isinstance(x, Act) else x
        ctx.fail(f"adding a constant ({describe(const)}) to an activation is not supported; only "
                 f"residual sums of two activations (a + b) are")
    if a["alpha"] != 1:
        ctx.fail(f"add with alpha={a['alpha']} is not supported")
    return ctx.residual_add(x, y)


def shape_query(ctx, a):
    """x.dim() / x.size(i) / x.numel(): a Python number, read from the recorded sizes."""
    val = ctx.node.meta.get("val")
    if val is None and ctx.node.target is aten.dim.default:
        val = len(ctx.shape(ctx.act(a["self"]))) + 1
    if val is None:
        ctx.fail("export recorded no value for this size query")
    return val


HANDLERS = {
    # weighted ops
    aten.conv2d.default: conv2d,
    aten.conv2d.padding: conv2d,                 # padding="same" / "valid"
    aten._convolution_mode.default: conv2d,      # the same, as traced TorchScript records it
    aten.convolution.default: convolution,
    aten._convolution.default: convolution,
    aten.conv_transpose2d.input: conv_transpose2d,
    aten.linear.default: linear,
    aten.addmm.default: addmm,                   # Linear in decomposed (core aten) programs
    aten.addmm_.default: addmm,
    aten.mm.default: mm,
    # normalisation, neurons, pooling
    aten.batch_norm.default: batch_norm,
    aten._native_batch_norm_legit_no_training.default: native_batch_norm_no_training,
    **ONE_D,                                     # Conv1d and the 1-D pools as 2-D (one_d.py)
    **ACTIVATIONS,                               # ReLU and the clipped ReLUs (activations.py)
    torch.ops.snnc.lif.default: lif,
    torch.ops.snnc.cubalif.default: cubalif,
    **RECURRENT,                                 # CubaLIF(recurrent=N): the layer and its cycle (recurrent.py)
    torch.ops.snnc.qcfs.default: qcfs,
    aten.avg_pool2d.default: avg_pool2d,
    aten.adaptive_avg_pool2d.default: adaptive_avg_pool2d,
    aten._adaptive_avg_pool2d.default: adaptive_avg_pool2d,
    aten.mean.dim: mean_dim,
    aten.max_pool2d.default: max_pool2d,
    aten.max_pool2d_with_indices.default: max_pool2d_with_indices,
    aten.adaptive_max_pool2d.default: adaptive_max_pool2d,
    **UPSAMPLING,                                # nearest by whole factors (upsampling.py)
    # shape
    aten.flatten.using_ints: flatten,
    aten.view.default: reshape,
    aten.reshape.default: reshape,
    aten._unsafe_view.default: reshape,
    # residual join
    aten.add.Tensor: add,
    aten.add_.Tensor: add,
    # no computation in eval mode
    aten.dropout.default: dropout,
    aten.dropout_.default: dropout,
    aten.feature_dropout.default: dropout,
    aten.feature_dropout_.default: dropout,
    aten.alpha_dropout.default: dropout,
    aten.alpha_dropout_.default: dropout,
    aten.feature_alpha_dropout.default: dropout,
    aten.feature_alpha_dropout_.default: dropout,
    aten.clone.default: identity,
    aten.contiguous.default: identity,
    aten.detach.default: identity,
    aten.detach_.default: identity,
    aten.alias.default: identity,
    aten.to.dtype: cast,
    aten.to.dtype_layout: cast,
    aten.to.device: cast,
    aten._to_copy.default: cast,
    aten._assert_tensor_metadata.default: assert_metadata,
    # Python numbers read off an activation's sizes
    aten.sym_size.int: shape_query,
    aten.size.int: shape_query,
    aten.dim.default: shape_query,
    aten.sym_numel.default: shape_query,
    aten.numel.default: shape_query,
}
# concatenation, channel slices and shuffles (routing.py); views, clones and flattens of anything but a
# channel grouping stay the handlers above
HANDLERS.update(routing_handlers(reshape, identity, flatten))


def _getitem(ctx, node, seq, idx):
    v = seq[idx]
    # e.g. BatchNorm's saved mean: fine while unused (decomposed programs keep such getitems)
    return Unavailable(f"output {idx} of {node.args[0].name}") if v is None else v

