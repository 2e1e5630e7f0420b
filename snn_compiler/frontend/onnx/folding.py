"""Constant folding for the ONNX frontend: one numpy function per op_type (``FOLDERS``), for nodes
whose inputs are all constants (initializers, Constant nodes and what is computed from them, e.g. a
transposed weight or a shape). Their results stay constants; only activations are lowered."""
from __future__ import annotations

from typing import Optional

import numpy as np

FOLD_LIMIT = 1 << 26  # elements a folded constant may have beyond its inputs (a broadcast bomb guard)


# Shape() of an activation reads the batch size as this stand-in when the graph's batch axis is
# symbolic, so a Reshape can tell ``(batch, -1)`` (kept) from a literal ``(1, -1)`` (refused:
# it would merge the batch into the features).
BATCH = 1_000_003


def _check_size(ctx, shape, inputs):
    n = int(np.prod(shape, dtype=np.float64))
    if n > FOLD_LIMIT + sum(np.asarray(v).size for v in inputs):
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


def reshape_dims(in_shape, target, allowzero) -> Optional[tuple]:
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


def _fold_reshape(ctx, vals):
    a = np.asarray(vals[0])
    out = reshape_dims(a.shape, np.asarray(vals[1]).reshape(-1), bool(ctx.attr("allowzero", 0)))
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


def _fold_constant_of_shape(ctx, vals):
    """A tensor of the shape in ``vals[0]`` filled with the ``value`` attribute (a 1-element tensor; 0.0)."""
    shape = [int(d) for d in np.asarray(vals[0]).reshape(-1)]
    _check_size(ctx, shape, [])
    value = ctx.attr("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(shape, fill[0], dtype=fill.dtype)


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
    "ConstantOfShape": _fold_constant_of_shape,
    "Add": _elementwise(np.add),
    "Sub": _elementwise(np.subtract),
    "Mul": _elementwise(np.multiply),
    "Div": _elementwise(_div),
    "Neg": _elementwise(np.negative),
    "Sqrt": _elementwise(np.sqrt),
    "Reciprocal": _elementwise(np.reciprocal),
}


def shape_of_act(ctx, vals):
    """Shape() of an activation: its recorded sizes (the batch size as ``ctx.batch``), a constant."""
    a = ctx.act(vals[0])
    return _shape_slice(ctx, np.array((ctx.batch,) + ctx.shape(a), dtype=np.int64))
