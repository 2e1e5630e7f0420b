"""ONNX frontend: an ONNX model (a ``.onnx`` file, its bytes or a ``ModelProto``) -> IR graph.

**Loading runs no code.** An ONNX file is one protobuf message; it is parsed as data
(``onnx.load_model_from_string``), never executed, and no other file is read: tensors kept in
external data files (a path the model names) are refused, as are ops outside the default ONNX
domain and model-local functions. torch is not needed.

The graph is walked in its (topological) order. ``HANDLERS`` maps each supported ``op_type`` to
the one function that lowers it into the IR's existing ops (:mod:`snn_compiler.ir.ops`), which
own every op's semantics: this module only reads attributes and checks that they mean what the
IR op computes. Nodes whose inputs are all constants (initializers, ``Constant`` nodes, and
anything computed from them, e.g. a transposed weight or a shape) are evaluated with numpy by
``FOLDERS`` and stay constants. Errors name the ONNX node (name and op_type).

Supported: Gemm, MatMul (+ Add of a constant bias), Conv, BatchNormalization (inference form),
Relu, Clip(0, inf), AveragePool, GlobalAveragePool, MaxPool, GlobalMaxPool, Flatten (axis 1),
flatten-like Reshape, Add (residual), Dropout, Identity and float Casts.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

import networkx as nx
import numpy as np

from ... import ir
from ...ir import ops as O
from ..errors import FrontendError, NeedsInputShape, check_input_shape

_MIN_OPSET = 9
_FOLD_LIMIT = 1 << 26  # elements a folded constant may have beyond its inputs (a broadcast bomb guard)
_FLOAT_TYPES = (1, 10, 11, 16)  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _onnx():
    try:
        import onnx
    except ImportError:
        raise FrontendError("reading ONNX models needs the onnx package: pip install onnx "
                            "(or snnc's extra: pip install 'snnc[interop]')") from None
    return onnx


# ---- values ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Act:
    """An activation tensor of the network: the IR node that computes it (shape without batch)."""
    name: str


@dataclass(frozen=True)
class Unavailable:
    """An output of a node that the IR does not compute (a max pool's indices, a dropout mask)."""
    what: str


class _Lowering:
    """State of one lowering: the IR graph being built and the ONNX value -> value map."""

    def __init__(self, onnx, opset: int, batch: int):
        self.onnx = onnx
        self.opset = opset
        self.batch = batch  # what Shape() reads as the batch size (see _BATCH)
        self.g = ir.new_graph()
        self.env = {}       # ONNX value name -> Act | Unavailable | np.ndarray
        self.shapes = {}    # IR node name -> shape without batch
        self.producer = {}  # ONNX value name -> the node that produced it
        self.uses = {}      # ONNX value name -> number of readers (graph outputs count)
        self.node = None
        self.index = 0

    # -- messages
    def label(self) -> str:
        node = self.node
        if node.name:
            return f"ONNX node {node.name!r} ({node.op_type})"
        out = f", output {node.output[0]!r}" if node.output and node.output[0] else ""
        return f"ONNX node #{self.index} ({node.op_type}{out})"

    def fail(self, msg: str):
        raise FrontendError(f"{self.label()}: {msg}")

    # -- inputs and attributes
    def inputs(self) -> list:
        """The node's input values in order (None for an omitted optional input)."""
        out = []
        for name in self.node.input:
            if not name:
                out.append(None)
            elif name not in self.env:
                self.fail(f"input {name!r} is not a graph input, an initializer or an output of an earlier node")
            else:
                out.append(self.env[name])
        return out

    def input(self, i: int):
        vals = self.inputs()
        return vals[i] if i < len(vals) else None

    def attr(self, name: str, default=None):
        for a in self.node.attribute:
            if a.name == name:
                v = self.onnx.helper.get_attribute_value(a)
                if isinstance(v, bytes):
                    return v.decode("utf-8", "replace")
                if isinstance(v, self.onnx.TensorProto):
                    return _tensor(self, v, f"{self.label()}: attribute {name}")
                return v
        return default

    def act(self, v, what="input") -> Act:
        if isinstance(v, Unavailable):
            self.fail(f"{what} is {v.what}, which is not supported")
        if not isinstance(v, Act):
            self.fail(f"{what} must be an activation of the network, got a constant {_describe(v)}")
        return v

    def const(self, v, what, ndim=None, finite=True) -> Optional[np.ndarray]:
        """A constant input as a float64 numpy copy (None stays None)."""
        if v is None:
            return None
        if isinstance(v, (Act, Unavailable)):
            self.fail(f"{what} must be a constant (an initializer or Constant), but it is computed from the "
                      f"network's input; weights that depend on the input are not supported")
        arr = np.array(v, dtype=np.float64)
        if finite and not np.all(np.isfinite(arr)):
            self.fail(f"{what} has non-finite values (inf or nan)")
        if ndim is not None and arr.ndim != ndim:
            self.fail(f"{what} has shape {tuple(arr.shape)}, expected {ndim} dimensions")
        return arr

    def ints(self, name, default, n=2) -> tuple:
        v = self.attr(name, default)
        if len(v) != n:
            self.fail(f"{name} {list(v)} must have {n} values (only 2-D maps are supported)")
        return tuple(int(i) for i in v)

    def shape(self, a: Act) -> tuple:
        return self.shapes[a.name]

    # -- building
    def emit(self, op, inputs, suffix: str = "") -> Act:
        name = ir.unique_name(self.g, _base_name(self.node, self.index) + suffix)
        in_names = [self.act(i).name for i in inputs]
        try:
            shape = O.infer_shape(op, [self.shapes[n] for n in in_names])
        except ValueError as e:
            self.fail(str(e))
        ir.add_op(self.g, name, op, in_names)
        self.shapes[name] = tuple(int(s) for s in shape)
        return Act(name)


def _describe(v) -> str:
    if isinstance(v, np.ndarray):
        return f"tensor of shape {tuple(v.shape)}"
    return repr(v)


def _base_name(node, index) -> str:
    """A readable IR node name from the node's scope path: torch's exporter names a node
    ``/layers/layers.0/conv1/Conv``; that becomes ``layers.0.conv1``, the module path the torch
    frontend uses (a part that extends the path so far replaces it, any other part is appended)."""
    parts = [p for p in node.name.split("/") if p]
    if len(parts) > 1 and parts[-1] == node.op_type:
        parts = parts[:-1]
    path = ""
    for part in parts:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    path = "".join(c for c in path if c.isprintable())[:120]
    return path or f"{node.op_type.lower()}_{index}"


def _tensor(ctx, t, what) -> np.ndarray:
    if t.data_type == ctx.onnx.TensorProto.STRING:
        raise FrontendError(f"{what}: string tensors are not supported")
    try:
        arr = ctx.onnx.numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 - a malformed tensor
        raise FrontendError(f"{what}: tensor {t.name!r} cannot be read: {e}") from None
    if arr.dtype.kind not in "biuf":  # float16 / bfloat16 / float8 come as ml_dtypes types
        arr = arr.astype(np.float32)
    return arr


# ---- handlers: one per op_type, for nodes that read an activation --------------------------------
# Each takes the context (ctx.node is the ONNX node) and returns its output value, or a tuple of
# values for a node with several outputs.

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
    op = O.Conv2d(weight=w, bias=ctx.const(b, "bias B", ndim=1), stride=s, padding=p, dilation=d,
                  groups=int(ctx.attr("group", 1)))
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
        ctx.fail(f"{what} must be a number, got {_describe(arr)}")
    f = float(arr.reshape(-1)[0])
    return None if sign * f >= float(np.finfo(np.float32).max) else f


def clip(ctx):
    """Clip(0, inf) is a ReLU (an IF layer); Clip with neither bound is an identity."""
    if ctx.opset < 11:
        lo, hi = ctx.attr("min"), ctx.attr("max")
    else:
        lo, hi = (ctx.inputs() + [None, None])[1:3]
    lo, hi = _bound(ctx, lo, "min", -1), _bound(ctx, hi, "max", 1)
    x = ctx.act(ctx.input(0))
    if hi is None and lo is None:
        return x
    if hi is None and lo == 0.0:
        return ctx.emit(O.IF(), [x])
    if lo == 0.0:
        ctx.fail(f"Clip(0, {hi:g}) saturates at {hi:g} (ReLU{hi:g}), which an IF neuron (a ReLU) does not; only "
                 f"Clip(0, inf) (ReLU) is supported: train with ReLU instead")
    ctx.fail(f"Clip({'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}) is not a ReLU; "
             f"only Clip(0, inf) (ReLU) is supported")


def _ceil_check(ctx, shape, k, s, p, d=(1, 1)):
    if not ctx.attr("ceil_mode", 0):
        return
    hw = shape[1:]
    floor = O.conv_out_hw(hw, k, s, p, d)
    ceil = tuple(math.ceil((hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) / s[i]) + 1 for i in range(2))
    if ceil != floor:
        ctx.fail(f"ceil_mode=1 adds partial windows on input {shape} (output {ceil} instead of {floor}); "
                 f"only ceil_mode=0 is supported")


def _pool_params(ctx, shape):
    kernel = ctx.attr("kernel_shape")
    if kernel is None:
        ctx.fail("kernel_shape is missing")
    k = ctx.ints("kernel_shape", None)
    s, d = ctx.ints("strides", [1, 1]), ctx.ints("dilations", [1, 1])
    p = _pads(ctx, shape[1:], k, s, d)
    _ceil_check(ctx, shape, k, s, p, d)
    return k, s, p, d


def average_pool(ctx):
    x, shape = _map_input(ctx, ctx.input(0))
    k, s, p, d = _pool_params(ctx, shape)
    if d != (1, 1):
        ctx.fail(f"dilations {list(d)}: dilated average pooling is not supported")
    if any(p) and not ctx.attr("count_include_pad", 0):
        ctx.fail("count_include_pad=0 with padding divides border windows by fewer elements; the IR's "
                 "AvgPool2d counts the padding (count_include_pad=1, torch's default)")
    return ctx.emit(O.AvgPool2d(kernel_size=k, stride=s, padding=p), [x])


def global_average_pool(ctx):
    x, shape = _map_input(ctx, ctx.input(0))
    return ctx.emit(O.AvgPool2d(kernel_size=shape[1:], stride=shape[1:]), [x])


def max_pool(ctx):
    """A MaxPool2d op (lowered into IF layers by the lower_maxpool pass); its indices are not computed."""
    x, shape = _map_input(ctx, ctx.input(0))
    k, s, p, d = _pool_params(ctx, shape)
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
    out = _reshape_dims((ctx.batch,) + shape, np.array(vals[1]).reshape(-1), bool(ctx.attr("allowzero", 0)))
    if out is not None and out[0] == ctx.batch:
        if tuple(out[1:]) == shape:
            return x
        if tuple(out[1:]) == (int(np.prod(shape)),):
            return ctx.emit(O.Flatten(), [x])
    target = [("batch" if int(v) == _BATCH else int(v)) for v in np.array(vals[1]).reshape(-1)]
    ctx.fail(f"reshape of a {shape} sample to {target} is not flatten-like; only a reshape to (batch, -1) "
             f"(x.view(x.size(0), -1)) or a no-op reshape is supported, and the batch axis must stay first")


def _reshape_dims(in_shape, target, allowzero) -> Optional[tuple]:
    """Reshape's output dims (ONNX rules: 0 copies the input's dim unless allowzero, -1 is inferred)."""
    total = int(np.prod(in_shape, dtype=np.int64))
    dims, unknown = [], None
    for i, v in enumerate(int(t) for t in target):
        if v == 0 and not allowzero:
            if i >= len(in_shape):
                return None
            v = in_shape[i]
        if v == -1:
            if unknown is not None:
                return None
            unknown = i
            v = 1
        elif v < 0:
            return None
        dims.append(v)
    known = int(np.prod(dims, dtype=np.int64))
    if unknown is not None:
        if known == 0 or total % known:
            return None
        dims[unknown] = total // known
    elif known != total:
        return None
    return tuple(dims)


def add(ctx):
    """A residual sum of two activations, or a constant bias added straight after a MatMul/Gemm/Conv."""
    x, y = ctx.inputs()[:2]
    for v in (x, y):
        if isinstance(v, Unavailable):
            ctx.act(v)
    if isinstance(x, Act) and isinstance(y, Act):
        if x == y:
            ctx.fail("adding a tensor to itself (x + x) is not supported")
        if ctx.shape(x) != ctx.shape(y):
            ctx.fail(f"residual add of different shapes {ctx.shape(x)} and {ctx.shape(y)} (broadcasting) "
                     f"is not supported")
        return ctx.emit(O.Add(), [x, y])
    act, const, name = (x, y, ctx.node.input[0]) if isinstance(x, Act) else (y, x, ctx.node.input[1])
    return _add_bias(ctx, act, const, name)


def _add_bias(ctx, act, const, name):
    """``MatMul + Add`` (or ``Gemm/Conv + Add``): the constant becomes (or adds to) the weighted op's
    bias when that op's output feeds only this Add."""
    src = ctx.producer.get(name)
    op = ir.op_of(ctx.g, act.name)
    if src is None or src.op_type not in ("MatMul", "Gemm", "Conv") or ctx.uses.get(name) != 1 \
            or not isinstance(op, O.WEIGHTED):
        ctx.fail(f"adding a constant ({_describe(np.asarray(const))}) to an activation is not supported; only "
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
    if to not in _FLOAT_TYPES:
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
    "MaxPool": max_pool,
    "GlobalMaxPool": global_max_pool,
    "Flatten": flatten,
    "Reshape": reshape,
    "Add": add,
    "Dropout": dropout,
    "Identity": identity,
    "Cast": cast,
}


# ---- constant folding: one numpy function per op_type, for nodes whose inputs are all constants --

# Shape() of an activation reads the batch size as this stand-in when the graph's batch axis is
# symbolic, so a Reshape can tell ``(batch, -1)`` (kept) from a literal ``(1, -1)`` (refused:
# it would merge the batch into the features).
_BATCH = 1_000_003


def _check_size(ctx, shape, inputs):
    n = int(np.prod(shape, dtype=np.float64))
    if n > _FOLD_LIMIT + sum(np.asarray(v).size for v in inputs):
        ctx.fail(f"folding these constants would make a tensor of shape {tuple(shape)}")


def _elementwise(fn):
    def fold(ctx, vals):
        arrs = [np.asarray(v) for v in vals]
        try:
            shape = np.broadcast_shapes(*(a.shape for a in arrs))
        except ValueError:
            ctx.fail(f"inputs of shapes {[a.shape for a in arrs]} do not broadcast")
        _check_size(ctx, shape, arrs)
        return np.asarray(fn(*arrs))
    return fold


def _div(a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(np.result_type(a, b))  # truncates
    return a / b


def _fold_cast(ctx, vals):
    to = int(ctx.attr("to", 0))
    try:
        dtype = ctx.onnx.helper.tensor_dtype_to_np_dtype(to)
    except Exception:  # noqa: BLE001
        ctx.fail(f"cannot cast a constant to type {to}")
    if np.dtype(dtype).kind not in "biuf":
        dtype = np.float32
    return np.asarray(vals[0]).astype(dtype)


def _fold_transpose(ctx, vals):
    a = np.asarray(vals[0])
    perm = ctx.attr("perm")
    return np.transpose(a, None if perm is None else [int(p) for p in perm]).copy()


def _fold_reshape(ctx, vals):
    a = np.asarray(vals[0])
    out = _reshape_dims(a.shape, np.asarray(vals[1]).reshape(-1), bool(ctx.attr("allowzero", 0)))
    if out is None:
        ctx.fail(f"cannot reshape a constant of shape {a.shape} to {np.asarray(vals[1]).tolist()}")
    return a.reshape(out)


def _fold_flatten(ctx, vals):
    a = np.asarray(vals[0])
    axis = int(ctx.attr("axis", 1)) % (a.ndim + 1) if a.ndim else 0
    return a.reshape(int(np.prod(a.shape[:axis], dtype=np.int64)), -1)


def _axes(ctx, vals, i):
    """Axes from the attribute (before opset 13) or from input ``i``."""
    if ctx.opset < 13:
        v = ctx.attr("axes")
        return None if v is None else [int(a) for a in v]
    return None if len(vals) <= i or vals[i] is None else [int(a) for a in np.asarray(vals[i]).reshape(-1)]


def _fold_squeeze(ctx, vals):
    a = np.asarray(vals[0])
    axes = _axes(ctx, vals, 1)
    return np.squeeze(a, axis=None if axes is None else tuple(ax % a.ndim for ax in axes))


def _fold_unsqueeze(ctx, vals):
    a = np.asarray(vals[0])
    axes = _axes(ctx, vals, 1)
    if axes is None:
        ctx.fail("axes are missing")
    rank = a.ndim + len(axes)
    return a.reshape(a.shape) if not axes else np.expand_dims(a, tuple(sorted(ax % rank for ax in axes)))


def _fold_concat(ctx, vals):
    arrs = [np.asarray(v) for v in vals if v is not None]
    axis = int(ctx.attr("axis", 0))
    try:
        return np.concatenate(arrs, axis=axis)
    except ValueError as e:
        ctx.fail(str(e))


def _fold_gather(ctx, vals):
    a, idx = np.asarray(vals[0]), np.asarray(vals[1]).astype(np.int64)
    axis = int(ctx.attr("axis", 0)) % max(a.ndim, 1)
    _check_size(ctx, a.shape[:axis] + idx.shape + a.shape[axis + 1:], [a])
    try:
        return np.take(a, idx, axis=axis)
    except IndexError as e:
        ctx.fail(str(e))


def _fold_slice(ctx, vals):
    a = np.asarray(vals[0])
    if ctx.opset < 10:
        starts, ends, axes, steps = ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes"), None
    else:
        vals = vals + [None] * 5
        starts, ends, axes, steps = (None if v is None else np.asarray(v).reshape(-1).tolist() for v in vals[1:5])
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * a.ndim
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        if int(sp) == 0:
            ctx.fail("a slice step of 0")
        index[int(ax) % a.ndim] = slice(int(st), int(en), int(sp))  # numpy clamps like ONNX
    return a[tuple(index)].copy()


def _fold_constant(ctx, vals):
    for name in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        v = ctx.attr(name)
        if v is not None:
            return np.asarray(v, dtype=np.float32 if name.startswith("value_float") else
                              np.int64 if name.startswith("value_int") else None)
    ctx.fail("a Constant without a numeric value (sparse or string constants are not supported)")


def _fold_shape(ctx, vals):
    a = np.asarray(vals[0])
    return _shape_slice(ctx, np.array(a.shape, dtype=np.int64))


def _shape_slice(ctx, dims):
    start, end = int(ctx.attr("start", 0)), ctx.attr("end")
    return dims[start:None if end is None else int(end)].copy()


FOLDERS = {
    "Constant": _fold_constant,
    "Identity": lambda ctx, vals: np.asarray(vals[0]),
    "Cast": _fold_cast,
    "Transpose": _fold_transpose,
    "Reshape": _fold_reshape,
    "Flatten": _fold_flatten,
    "Squeeze": _fold_squeeze,
    "Unsqueeze": _fold_unsqueeze,
    "Concat": _fold_concat,
    "Gather": _fold_gather,
    "Slice": _fold_slice,
    "Shape": _fold_shape,
    "Add": _elementwise(np.add),
    "Sub": _elementwise(np.subtract),
    "Mul": _elementwise(np.multiply),
    "Div": _elementwise(_div),
    "Neg": _elementwise(np.negative),
    "Sqrt": _elementwise(np.sqrt),
    "Reciprocal": _elementwise(np.reciprocal),
}


def _shape_of_act(ctx, vals):
    """Shape() of an activation: its recorded sizes (the batch size as ``ctx.batch``), a constant."""
    a = ctx.act(vals[0])
    return _shape_slice(ctx, np.array((ctx.batch,) + ctx.shape(a), dtype=np.int64))


# ---- the driver --------------------------------------------------------------------------------------

def _external_tensors(onnx, model) -> list:
    """Names of tensors anywhere in the model whose data lives in another file."""
    found = []
    ext = onnx.TensorProto.EXTERNAL

    def tensors_of(graph):
        yield from graph.initializer
        for s in graph.sparse_initializer:
            yield s.values
            yield s.indices
        for node in graph.node:
            yield from attr_tensors(node.attribute)

    def attr_tensors(attrs):
        for a in attrs:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("sparse_tensor"):
                yield a.sparse_tensor.values
            if a.HasField("g"):
                yield from tensors_of(a.g)
            for sub in a.graphs:
                yield from tensors_of(sub)

    for t in tensors_of(model.graph):
        if t.data_location == ext or t.external_data:
            loc = next((e.value for e in t.external_data if e.key == "location"), "?")
            found.append(f"{t.name!r} (in {loc!r})")
    for f in model.functions:
        for node in f.node:
            for t in attr_tensors(node.attribute):
                if t.data_location == ext or t.external_data:
                    found.append(repr(t.name))
    return found


def _parse(onnx, data: bytes, where: str):
    """The ModelProto in ``data``; refuses non-ONNX content naming what it looks like."""
    what = _not_onnx(data)
    if what:
        raise FrontendError(f"{where} is not an ONNX model: {what}")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - google.protobuf DecodeError and friends
        raise FrontendError(f"{where} is not an ONNX model: the protobuf cannot be parsed ({e})") from None
    if model.ir_version < 3 or not model.HasField("graph") or not model.opset_import:
        raise FrontendError(f"{where} is not an ONNX model: it parses as protobuf but has no ONNX graph, IR version "
                            f"or opset (a file of another format?)")
    return model


def _not_onnx(data: bytes) -> str:
    """What ``data`` is, when it is recognisably not a binary ONNX protobuf ('' otherwise)."""
    if not data:
        return "the file is empty"
    head = data[:8]
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive (a TorchScript, torch.export .pt2, torch.save or .npz file?)"
    if head.startswith(b"\x93NUMPY"):
        return "it is a numpy .npy array"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "it is an HDF5 file (a Keras .h5 model?)"
    if head[:1] == b"\x80":
        return "it is a Python pickle"
    if head[:1] != b"\x08" and _is_text(data[:4096]):
        return ("it looks like text (snnc reads the binary protobuf format onnx.save writes, not the text "
                "format)")
    return ""


def _is_text(chunk: bytes) -> bool:
    try:
        s = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in s)


def _graph_input(onnx, graph, where):
    """The one graph input that is not an initializer: (name, recorded shape without batch or None,
    batch stand-in for Shape())."""
    inits = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    user = [v for v in graph.input if v.name not in inits]
    if len(user) != 1:
        raise FrontendError(f"{where}: the model must take exactly one tensor input (besides its initializers), it "
                            f"takes {len(user)}: {[v.name for v in user]}")
    v = user[0]
    if not v.type.HasField("tensor_type"):
        raise FrontendError(f"{where}: input {v.name!r} is not a tensor")
    tt = v.type.tensor_type
    if tt.elem_type not in _FLOAT_TYPES:
        raise FrontendError(f"{where}: input {v.name!r} has element type "
                            f"{onnx.TensorProto.DataType.Name(tt.elem_type)}; a float input is needed")
    if not tt.HasField("shape") or not tt.shape.dim:
        return v.name, None, _BATCH
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if dims[0] is not None and dims[0] < 1:
        raise FrontendError(f"{where}: input {v.name!r} has an empty batch axis")
    batch = _BATCH if dims[0] is None else dims[0]
    feats = dims[1:]
    recorded = tuple(feats) if feats and all(d is not None and d > 0 for d in feats) else None
    return v.name, recorded, batch


def _read(onnx, source, name):
    """(ModelProto, how errors name it) from a path, bytes or a ModelProto."""
    if isinstance(source, onnx.ModelProto):
        return source, name or "the ONNX model"
    if isinstance(source, (bytes, bytearray, memoryview)):
        where = name or "the ONNX bytes"
        return _parse(onnx, bytes(source), where), where
    try:
        path = os.fspath(source)
    except TypeError:
        raise FrontendError(f"expected a path, bytes or an onnx.ModelProto, got {type(source).__name__}") from None
    if not os.path.isfile(path):
        raise FrontendError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    return _parse(onnx, data, name or path), name or path


def from_onnx(source, input_shape: Optional[tuple] = None, name: Optional[str] = None) -> nx.DiGraph:
    """IR graph of an ONNX model: ``source`` is a path to a ``.onnx`` file, its bytes or an
    ``onnx.ModelProto``. ``input_shape`` (without the batch axis) is needed only when the model does
    not record its input's feature sizes; when both exist they must agree. ``name`` is what errors
    call the model (default: the path). Parsing runs no code and reads no other file (see the
    module docstring)."""
    onnx = _onnx()
    model, where = _read(onnx, source, name)
    return _lower(onnx, model, where, None if input_shape is None else check_input_shape(input_shape))


def looks_like_onnx(path) -> bool:
    """Whether the file parses as an ONNX model (for error messages about files without the suffix)."""
    try:
        import onnx
        with open(path, "rb") as f:
            data = f.read()
        model = onnx.load_model_from_string(data)
    except Exception:  # noqa: BLE001 - not ONNX, or no onnx package
        return False
    return model.ir_version >= 3 and model.HasField("graph") and bool(model.opset_import) \
        and len(model.graph.node) > 0


def _opset(onnx, model, where) -> int:
    versions = {o.domain: o.version for o in model.opset_import}
    version = versions.get("", versions.get("ai.onnx"))
    if version is None:
        raise FrontendError(f"{where}: the model imports no version of the default ONNX opset")
    if version < _MIN_OPSET:
        raise FrontendError(f"{where}: opset {version} is older than snnc reads (>= {_MIN_OPSET}); convert it "
                            f"with onnx.version_converter.convert_version(model, 17)")
    return version


def _lower(onnx, model, where, input_shape) -> nx.DiGraph:
    external = _external_tensors(onnx, model)
    if external:
        raise FrontendError(f"{where}: tensors {', '.join(external[:4])}{', ...' if len(external) > 4 else ''} keep "
                            f"their data in external files; snnc reads only the one model file (reading a path "
                            f"the model names is refused): save it with onnx.save_model(model, path, "
                            f"save_as_external_data=False)")
    if model.functions:
        raise FrontendError(f"{where}: the model defines local functions ({model.functions[0].name!r}, ...); "
                            f"only standard ONNX ops are supported: inline them (onnx.inliner.inline_local_functions)")
    opset = _opset(onnx, model, where)
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - onnx.checker.ValidationError and friends
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FrontendError(f"{where}: not a valid ONNX model: {first}") from None
    graph = model.graph
    x_name, recorded, batch = _graph_input(onnx, graph, where)
    if recorded is None:
        if input_shape is None:
            raise NeedsInputShape(f"{where}: the model does not record its input's feature sizes: "
                                  f"{NeedsInputShape.HOW}")
        recorded = input_shape
    elif input_shape is not None and input_shape != recorded:
        raise FrontendError(f"{where}: input_shape {input_shape} does not match the model's input {recorded} "
                            f"(batch axis excluded)")
    ctx = _Lowering(onnx, opset, batch)
    g = ctx.g
    for t in graph.initializer:
        ctx.env[t.name] = _tensor(ctx, t, f"{where}: initializer {t.name!r}")
    if graph.sparse_initializer:
        raise FrontendError(f"{where}: sparse initializers are not supported")
    ir.add_op(g, "input", O.Input(shape=recorded))
    ctx.shapes["input"] = recorded
    ctx.env[x_name] = Act("input")
    for node in graph.node:
        for name in node.input:
            ctx.uses[name] = ctx.uses.get(name, 0) + 1
    for out in graph.output:
        ctx.uses[out.name] = ctx.uses.get(out.name, 0) + 1
    for i, node in enumerate(graph.node):
        ctx.node, ctx.index = node, i
        _lower_node(ctx, node)
    return _finish(ctx, graph, where)


_SUPPORTED = ("snnc lowers Gemm, MatMul (+ Add of a bias), Conv, BatchNormalization, Relu, Clip(0, inf), "
              "AveragePool, GlobalAveragePool, MaxPool, GlobalMaxPool, Flatten, flatten-like Reshape, residual "
              "Add, Dropout, Identity and Cast, and folds constants through " + ", ".join(sorted(FOLDERS)))


def _lower_node(ctx, node):
    if node.domain not in ("", "ai.onnx"):
        ctx.fail(f"op of domain {node.domain!r}: only standard ONNX ops are supported ({_SUPPORTED})")
    vals = ctx.inputs()
    constant = all(not isinstance(v, (Act, Unavailable)) for v in vals)
    if constant and node.op_type in FOLDERS:
        try:
            result = FOLDERS[node.op_type](ctx, vals)
        except FrontendError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure here is the model's
            ctx.fail(f"evaluating this constant expression failed: {e}")
    elif node.op_type == "Shape":
        result = _shape_of_act(ctx, vals)
    elif constant and node.op_type != "Constant" and vals:
        ctx.fail(f"a constant expression with this op is not supported; constants fold through "
                 f"{', '.join(sorted(FOLDERS))}")
    else:
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            ctx.fail(f"unsupported op ({_SUPPORTED})")
        try:
            result = handler(ctx)
        except FrontendError:
            raise
        except (ValueError, TypeError, IndexError) as e:  # odd attribute values: still say where
            ctx.fail(str(e))
    results = result if isinstance(result, tuple) else (result,)
    for i, name in enumerate(node.output):
        if not name:
            continue
        if i >= len(results):
            ctx.fail(f"output {i} ({name!r}) is not computed by snnc")
        ctx.env[name] = results[i]
        ctx.producer[name] = node


def _finish(ctx, graph, where) -> nx.DiGraph:
    """The final activation feeds the read-out (an Output node, or the last neuron layer itself)."""
    g = ctx.g
    if len(graph.output) != 1:
        raise FrontendError(f"{where}: the model must return exactly one tensor, it returns {len(graph.output)}")
    out = graph.output[0]
    result = ctx.env.get(out.name)
    if isinstance(result, Unavailable):
        raise FrontendError(f"{where}: the model's output {out.name!r} is {result.what}, which is not supported")
    if not isinstance(result, Act):
        raise FrontendError(f"{where}: the model's output {out.name!r} does not depend on its input "
                            f"(it is a constant)")
    out_name = ir.add_readout(g, result.name)
    keep = nx.ancestors(g, out_name) | {out_name}
    if "input" not in keep:
        raise FrontendError(f"{where}: the model's output does not depend on its input")
    g.remove_nodes_from([n for n in list(g) if n not in keep])  # dead code
    try:
        ir.verify(g)
    except ir.IRError as e:  # pragma: no cover - a frontend bug, not a model problem
        raise FrontendError(f"internal error: the lowered graph is invalid: {e}") from e
    tt = out.type.tensor_type if out.type.HasField("tensor_type") else None
    if tt is not None and tt.HasField("shape") and len(tt.shape.dim) > 1 \
            and all(d.HasField("dim_value") for d in tt.shape.dim[1:]):
        want = tuple(int(d.dim_value) for d in tt.shape.dim[1:])
        if g.nodes[out_name]["shape"] != want:
            raise FrontendError(f"{where}: the lowered output has shape {g.nodes[out_name]['shape']}, but the model "
                                f"declares {want} (batch axis excluded)")
    return g
