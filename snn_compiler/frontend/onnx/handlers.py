"""The ONNX op handlers: ``HANDLERS`` maps each supported ``op_type`` to the one function that
lowers it into the IR's existing ops (:mod:`snn_compiler.ir.ops`, which own every op's
semantics): a handler only reads attributes and checks that they mean what the IR op computes.
Each takes the context (``ctx.node`` is the ONNX node) and returns its output value, or a tuple of
values for a node with several outputs."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ... import ir
from ...ir import ops as O
from ..lowering import Act, Unavailable, ceil_mode_rows, ceil_out_hw, describe
from ..pool_windows import average_pool as average_pool_op, torch_windows
from .context import FLOAT_TYPES
from .folding import BATCH, reshape_dims
from .routing import routing_handlers
from .upsampling import conv_transpose, resize


def _vector_input(ctx, x, what="input"):
    x = ctx.act(x, what)
    if len(ctx.shape(x)) != 1:
        ctx.fail(f"a matrix product on an input of shape {ctx.shape(x)} acts on its last axis only; the IR's "
                 f"Dense takes vectors: flatten first (Flatten with axis=1)")
    return x


def _per_output(ctx, c, n, what) -> np.ndarray:
    """A constant that broadcasts to one value per output feature/channel of an (n, ...) result."""
    arr = ctx.const(c, what)
    if arr.size == 1:
        return np.full(n, float(arr.reshape(-1)[0]))
    if arr.shape in ((n,), (1, n)):
        return arr.reshape(n).copy()
    ctx.fail(f"{what} of shape {tuple(arr.shape)} does not give one value per output ({n})")


def gemm(ctx):
    """``Y = alpha * A' @ B' + beta * C`` (A' = A, B' = B or B^T by transB): a Dense."""
    a, b, c = (ctx.inputs() + [None])[:3]
    if ctx.attr("transA", 0):
        ctx.fail("transA=1 multiplies by the transposed input (the batch axis would be mixed in); only "
                 "transA=0 is supported")
    x = _vector_input(ctx, a, "input A")
    w = ctx.const(b, "B", ndim=2)
    w = w if ctx.attr("transB", 0) else w.T  # Dense's weight is (out, in)
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    bias = None if c is None else beta * _per_output(ctx, c, w.shape[0], "C")
    return ctx.emit(O.Dense(weight=alpha * w, bias=bias), [x])


def matmul(ctx):
    """``Y = A @ B`` with B a constant (in, out) matrix: a Dense without bias (an Add may give it one)."""
    a, b = ctx.inputs()[:2]
    x = _vector_input(ctx, a, "input A")
    w = ctx.const(b, "B")
    if w.ndim != 2:
        ctx.fail(f"B has shape {tuple(w.shape)}; only a 2-D constant weight matrix is supported")
    return ctx.emit(O.Dense(weight=w.T.copy()), [x])


def _pads(ctx, hw, k, s, d) -> tuple:
    """Symmetric (top/bottom, left/right) padding from ``pads`` / ``auto_pad``; refuses uneven padding."""
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto == "VALID":
        return (0, 0)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [max(0, (math.ceil(hw[i] / s[i]) - 1) * s[i] + (k[i] - 1) * d[i] + 1 - hw[i]) for i in range(2)]
        if any(t % 2 for t in total):
            ctx.fail(f"auto_pad={auto} with kernel {k}, stride {s} and dilation {d} on a {tuple(hw)} input pads "
                     f"unevenly ({total} rows/columns in all, the extra one at the "
                     f"{'bottom/right' if auto == 'SAME_UPPER' else 'top/left'}); the IR has symmetric padding "
                     f"only: use an odd kernel or explicit symmetric padding")
        return (total[0] // 2, total[1] // 2)
    if auto != "NOTSET":
        ctx.fail(f"unknown auto_pad {auto!r}")
    pads = [int(p) for p in ctx.attr("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        ctx.fail(f"pads {pads} must have 4 values (only 2-D maps are supported)")
    if pads[:2] != pads[2:]:
        ctx.fail(f"asymmetric padding pads={pads} (begin {pads[:2]}, end {pads[2:]}); the IR has symmetric "
                 f"padding only (as for torch's padding='same' with an even kernel): pad equally on both sides")
    return (pads[0], pads[1])


def _map_input(ctx, x):
    x = ctx.act(x)
    shape = ctx.shape(x)
    if len(shape) != 3:
        ctx.fail(f"needs a (C, H, W) input, got {shape}")
    return x, shape


def _check_kernel(ctx, k):
    given = ctx.attr("kernel_shape")
    if given is not None and tuple(int(i) for i in given) != tuple(k):
        ctx.fail(f"kernel_shape {list(given)} does not match the weight's kernel {tuple(k)}")


def conv(ctx):
    vals = ctx.inputs() + [None]
    x, w, b = vals[0], vals[1], vals[2]
    x = ctx.act(x)
    w = ctx.const(w, "weight W")
    if w.ndim != 4 or len(ctx.shape(x)) != 3:
        ctx.fail(f"only 2-D convolutions on (C, H, W) maps are supported (weight {w.shape}, input {ctx.shape(x)})")
    k = w.shape[2:]
    _check_kernel(ctx, k)
    s, d = ctx.ints("strides", [1, 1]), ctx.ints("dilations", [1, 1])
    p = _pads(ctx, ctx.shape(x)[1:], k, s, d)
    groups = int(ctx.attr("group", 1))
    if groups < 1:
        ctx.fail(f"group must be a positive integer, got {groups}")
    op = O.Conv2d(weight=w, bias=ctx.const(b, "bias B", ndim=1), stride=s, padding=p, dilation=d, groups=groups)
    return ctx.emit(op, [x])


def batch_normalization(ctx):
    """The inference form: running mean and variance, one output."""
    if ctx.attr("training_mode", 0) or any(ctx.node.output[1:]):
        ctx.fail("BatchNormalization in training mode normalises with batch statistics: export the model "
                 "in eval mode (model.eval())")
    vals = ctx.inputs()
    if len(vals) != 5:
        ctx.fail(f"expected 5 inputs (X, scale, B, mean, var), got {len(vals)}")
    x, scale, bias, mean, var = vals
    x = ctx.act(x)
    op = O.BatchNorm(mean=ctx.const(mean, "input_mean", ndim=1), var=ctx.const(var, "input_var", ndim=1),
                     weight=ctx.const(scale, "scale", ndim=1), bias=ctx.const(bias, "B", ndim=1),
                     eps=float(ctx.attr("epsilon", 1e-5)))
    return ctx.emit(op, [x])


def relu(ctx):
    return ctx.emit(O.IF(), [ctx.act(ctx.input(0))])


def _bound(ctx, v, what, sign) -> Optional[float]:
    """A Clip bound as a float; None when absent or unbounded (``sign`` * inf; float32's largest value,
    the default of the old attribute form, counts as infinite)."""
    if v is None:
        return None
    arr = ctx.const(v, what, finite=False)
    if arr.size != 1 or np.isnan(arr).any():
        ctx.fail(f"{what} must be a number, got {describe(arr)}")
    f = float(arr.reshape(-1)[0])
    return None if sign * f >= float(np.finfo(np.float32).max) else f


def clip(ctx):
    """Clip(0, inf) is a ReLU (an IF layer), Clip(0, a) a clipped ReLU (an IF layer whose clip is a:
    ReLU6 is Clip(0, 6)); Clip with neither bound is an identity."""
    if ctx.opset < 11:
        lo, hi = ctx.attr("min"), ctx.attr("max")
    else:
        lo, hi = (ctx.inputs() + [None, None])[1:3]
    lo, hi = _bound(ctx, lo, "min", -1), _bound(ctx, hi, "max", 1)
    x = ctx.act(ctx.input(0))
    if hi is None and lo is None:
        return x
    if lo == 0.0 and (hi is None or (math.isfinite(hi) and hi > 0)):
        return ctx.emit(O.IF(clip=hi), [x])
    if lo == 0.0:
        ctx.fail(f"Clip(0, {hi:g}) is no clipped ReLU: its upper bound must be a finite number > 0")
    ctx.fail(f"Clip({'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}) is not a ReLU; "
             f"only Clip(0, inf) (ReLU) and Clip(0, a) (a clipped ReLU, e.g. ReLU6) are supported")


def _ceil_check(ctx, shape, k, s, p, d=(1, 1)):
    if not ctx.attr("ceil_mode", 0):
        return
    hw = shape[1:]
    floor = O.conv_out_hw(hw, k, s, p, d)
    ceil = tuple(math.ceil((hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) / s[i]) + 1 for i in range(2))
    if ceil != floor:
        ctx.fail(f"ceil_mode=1 adds partial windows on input {shape} (output {ceil} instead of {floor}); "
                 f"only ceil_mode=0 is supported")


def _pool_params(ctx, shape, ceil_ok=False):
    """kernel, strides, pads, dilations; ceil_mode refused with partial windows unless ``ceil_ok``."""
    kernel = ctx.attr("kernel_shape")
    if kernel is None:
        ctx.fail("kernel_shape is missing")
    k = ctx.ints("kernel_shape", None)
    s, d = ctx.ints("strides", [1, 1]), ctx.ints("dilations", [1, 1])
    p = _pads(ctx, shape[1:], k, s, d)
    if not ceil_ok:
        _ceil_check(ctx, shape, k, s, p, d)
    return k, s, p, d


def average_pool(ctx):
    """An AvgPool2d, or a WindowAvgPool2d where ceil_mode or count_include_pad=0 (ONNX's default) divides
    border windows by fewer values (folded into the Linear after it)."""
    x, shape = _map_input(ctx, ctx.input(0))
    k, s, p, d = _pool_params(ctx, shape, ceil_ok=True)
    if d != (1, 1):
        ctx.fail(f"dilations {list(d)}: dilated average pooling is not supported")
    rows, cols = (torch_windows(shape[1 + i], k[i], s[i], p[i], bool(ctx.attr("ceil_mode", 0)),
                                bool(ctx.attr("count_include_pad", 0))) for i in range(2))
    return ctx.emit(average_pool_op(rows, cols, k, s, p), [x])


def global_average_pool(ctx):
    x, shape = _map_input(ctx, ctx.input(0))
    return ctx.emit(O.AvgPool2d(kernel_size=shape[1:], stride=shape[1:]), [x])


def reduce_mean(ctx):
    """The mean over both spatial axes (torch's ``x.mean([2, 3])``, MnasNet's global pool): a global
    average pool, then a Flatten unless keepdims."""
    vals = ctx.inputs() + [None]
    x = ctx.act(vals[0])
    shape = ctx.shape(x)
    axes = ctx.attr("axes") if ctx.opset < 18 else vals[1]
    if axes is not None and ctx.opset >= 18:
        axes = ctx.const(axes, "axes").astype(np.int64).reshape(-1).tolist()
    if len(shape) != 3 or axes is None or sorted(int(a) % 4 for a in axes) != [2, 3]:
        ctx.fail(f"only the mean over both spatial axes of an (N, C, H, W) map is supported (axes {axes} on "
                 f"{shape})")
    y = ctx.emit(O.AvgPool2d(kernel_size=shape[1:], stride=shape[1:]), [x])
    return y if int(ctx.attr("keepdims", 1)) else ctx.emit(O.Flatten(), [y], suffix=".flatten")


def max_pool(ctx):
    """A MaxPool2d op (lowered into IF layers by the lower_maxpool pass); its indices are not computed."""
    x, shape = _map_input(ctx, ctx.input(0))
    k, s, p, d = _pool_params(ctx, shape, ceil_ok=True)
    if ctx.attr("ceil_mode", 0) and ceil_out_hw(shape[1:], k, s, p, d) != O.conv_out_hw(shape[1:], k, s, p, d):
        x = ceil_mode_rows(ctx, x, shape, ceil_out_hw(shape[1:], k, s, p, d), k, s, p, d)  # SqueezeNet, GoogLeNet
    y = ctx.emit(O.MaxPool2d(kernel_size=k, stride=s, padding=p, dilation=d), [x])
    return (y, Unavailable("the indices of a max pool"))


def global_max_pool(ctx):
    x, shape = _map_input(ctx, ctx.input(0))
    return ctx.emit(O.MaxPool2d(kernel_size=shape[1:], stride=shape[1:]), [x])


def flatten(ctx):
    x = ctx.act(ctx.input(0))
    rank = len(ctx.shape(x)) + 1
    given = int(ctx.attr("axis", 1))
    axis = given + rank if given < 0 else given
    if axis != 1:
        why = "merges the batch axis into the features" if axis in (0, rank) else "keeps feature axes apart"
        ctx.fail(f"Flatten with axis={given} on a rank-{rank} input {why}; only axis=1 (every axis after the "
                 f"batch axis) is supported")
    return x if rank == 2 else ctx.emit(O.Flatten(), [x])


def reshape(ctx):
    """Only flatten-like reshapes (``x.view(x.size(0), -1)``) or no-op ones; the batch axis stays first."""
    vals = ctx.inputs()
    x = ctx.act(vals[0])
    if len(vals) < 2 or vals[1] is None or isinstance(vals[1], (Act, Unavailable)):
        ctx.fail("the target shape must be a constant")
    shape = ctx.shape(x)
    out = reshape_dims((ctx.batch,) + shape, np.array(vals[1]).reshape(-1), bool(ctx.attr("allowzero", 0)))
    if out is not None and out[0] == ctx.batch:
        if tuple(out[1:]) == shape:
            return x
        if tuple(out[1:]) == (int(np.prod(shape)),):
            return ctx.emit(O.Flatten(), [x])
    target = [("batch" if int(v) == BATCH else int(v)) for v in np.array(vals[1]).reshape(-1)]
    ctx.fail(f"reshape of a {shape} sample to {target} is not flatten-like; only a reshape to (batch, -1) "
             f"(x.view(x.size(0), -1)) or a no-op reshape is supported, and the batch axis must stay first")


def add(ctx):
    """A residual sum of two activations, or a constant bias added straight after a MatMul/Gemm/Conv."""
    x, y = ctx.inputs()[:2]
    for v in (x, y):
        if isinstance(v, Unavailable):
            ctx.act(v)
    if isinstance(x, Act) and isinstance(y, Act):
        return ctx.residual_add(x, y)
    act, const, name = (x, y, ctx.node.input[0]) if isinstance(x, Act) else (y, x, ctx.node.input[1])
    return _add_bias(ctx, act, const, name)


def _add_bias(ctx, act, const, name):
    """``MatMul + Add`` (or ``Gemm/Conv + Add``): the constant becomes (or adds to) the weighted op's
    bias when that op's output feeds only this Add."""
    src = ctx.producer.get(name)
    op = ir.op_of(ctx.g, act.name)
    if src is None or src.op_type not in ("MatMul", "Gemm", "Conv") or ctx.uses.get(name) != 1 \
            or not isinstance(op, O.WEIGHTED):
        ctx.fail(f"adding a constant ({describe(np.asarray(const))}) to an activation is not supported; only "
                 f"residual sums of two activations and a bias added straight after MatMul/Gemm/Conv are")
    shape = ctx.shape(act)
    c = ctx.const(const, "the added constant")
    try:
        full = np.broadcast_to(c, (1,) + shape)[0] if c.ndim <= len(shape) + 1 else None
    except ValueError:
        full = None
    per = None if full is None else full.reshape(shape[0], -1)
    if per is None or not np.all(per == per[:, :1]):
        ctx.fail(f"the added constant of shape {tuple(c.shape)} is not one bias per output channel of the "
                 f"{shape} result")
    op.bias = per[:, 0].copy() if op.bias is None else op.bias + per[:, 0]
    return act


def dropout(ctx):
    vals = ctx.inputs() + [None, None]
    if vals[2] is not None and bool(np.asarray(ctx.const(vals[2], "training_mode")).reshape(-1)[0]):
        ctx.fail("dropout in training mode: export the model in eval mode (model.eval())")
    return (ctx.act(vals[0]), Unavailable("a dropout mask"))


def identity(ctx):
    return ctx.act(ctx.input(0))


def cast(ctx):
    """The IR computes in float64: a cast to a float type is a no-op, one to an integer type is refused."""
    to = int(ctx.attr("to", 0))
    if to not in FLOAT_TYPES:
        ctx.fail(f"casting activations to {ctx.onnx.TensorProto.DataType.Name(to) if to else '?'} is not supported")
    return ctx.act(ctx.input(0))


HANDLERS = {
    "Gemm": gemm,
    "MatMul": matmul,
    "Conv": conv,
    "BatchNormalization": batch_normalization,
    "Relu": relu,
    "Clip": clip,
    "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool,
    "ReduceMean": reduce_mean,
    "MaxPool": max_pool,
    "GlobalMaxPool": global_max_pool,
    "Flatten": flatten,
    "Reshape": reshape,
    "Add": add,
    "Dropout": dropout,
    "Identity": identity,
    "Cast": cast,
    "ConvTranspose": conv_transpose,
    "Resize": resize,
    "Upsample": resize,  # opset < 10's name (its scales input is Resize's third)
}
HANDLERS.update(routing_handlers(reshape))  # Concat, Split, Slice, Gather, channel shuffles (routing.py)
