"""ONNX frontend: an ONNX model (a ``.onnx`` file, its bytes or a ``ModelProto``) -> IR graph.

**Loading runs no code** (:mod:`.read`): the protobuf is parsed as data and no other file is read;
ops outside the default ONNX domain are refused.

The graph is walked in its (topological) order. ``HANDLERS`` (:mod:`.handlers`) maps each supported
``op_type`` to the one function that lowers it into the IR's existing ops; nodes whose inputs are
all constants are evaluated with numpy by ``FOLDERS`` (:mod:`.folding`) and stay constants. Errors
name the ONNX node (name and op_type).

Supported: Gemm, MatMul (+ Add of a constant bias), Conv, BatchNormalization (inference form),
Relu, Clip(0, inf) and Clip(0, a) (ReLU6), AveragePool, GlobalAveragePool, ReduceMean (over H, W),
MaxPool, GlobalMaxPool, Flatten (axis 1), flatten-like Reshape, Add (residual), Dropout, Identity and
float Casts.
"""
from __future__ import annotations

from typing import Optional

import networkx as nx

from ..errors import FrontendError, NeedsInputShape, check_input_shape
from ..lowering import Act, Unavailable, finish
from ..unconverted import why_onnx
from .context import FLOAT_TYPES, OnnxLowering, tensor
from .folding import BATCH, FOLDERS, shape_of_act
from .handlers import HANDLERS
from .read import _onnx, _opset, _read, external_tensors


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
    if tt.elem_type not in FLOAT_TYPES:
        raise FrontendError(f"{where}: input {v.name!r} has element type "
                            f"{onnx.TensorProto.DataType.Name(tt.elem_type)}; a float input is needed")
    if not tt.HasField("shape") or not tt.shape.dim:
        return v.name, None, BATCH
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if dims[0] is not None and dims[0] < 1:
        raise FrontendError(f"{where}: input {v.name!r} has an empty batch axis")
    batch = BATCH if dims[0] is None else dims[0]
    feats = dims[1:]
    recorded = tuple(feats) if feats and all(d is not None and d > 0 for d in feats) else None
    return v.name, recorded, batch


def from_onnx(source, input_shape: Optional[tuple] = None, name: Optional[str] = None) -> nx.DiGraph:
    """IR graph of an ONNX model: ``source`` is a path to a ``.onnx`` file, its bytes or an
    ``onnx.ModelProto``. ``input_shape`` (without the batch axis) is needed only when the model does
    not record its input's feature sizes; when both exist they must agree. ``name`` is what errors
    call the model (default: the path). Parsing runs no code and reads no other file (see the
    module docstring)."""
    onnx = _onnx()
    model, where = _read(onnx, source, name)
    return _lower(onnx, model, where, None if input_shape is None else check_input_shape(input_shape))


def _lower(onnx, model, where, input_shape) -> nx.DiGraph:
    external = external_tensors(onnx, model)
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
    ctx = OnnxLowering(onnx, opset, batch)
    for t in graph.initializer:
        ctx.env[t.name] = tensor(onnx, t, f"{where}: initializer {t.name!r}")
    if graph.sparse_initializer:
        raise FrontendError(f"{where}: sparse initializers are not supported")
    ctx.env[x_name] = ctx.add_input(recorded)
    for node in graph.node:
        for name in node.input:
            ctx.uses[name] = ctx.uses.get(name, 0) + 1
    for out in graph.output:
        ctx.uses[out.name] = ctx.uses.get(out.name, 0) + 1
    for i, node in enumerate(graph.node):
        ctx.node, ctx.index = node, i
        _lower_node(ctx, node)
    return _finish(ctx, graph, where)


# what a refusal says snnc lowers: the handler table, with the forms each op converts in
_FORMS = {"MatMul": "MatMul (+ Add of a bias)", "Clip": "Clip(0, inf) and Clip(0, a)",
          "Reshape": "flatten-like Reshape", "Add": "residual Add"}
_SUPPORTED = ("snnc lowers " + ", ".join(_FORMS.get(op, op) for op in HANDLERS) + ", and folds constants through "
              + ", ".join(sorted(FOLDERS)))


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
        result = shape_of_act(ctx, vals)
    elif constant and node.op_type != "Constant" and vals:
        ctx.fail(f"a constant expression with this op is not supported; constants fold through "
                 f"{', '.join(sorted(FOLDERS))}")
    else:
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            why = why_onnx(node.op_type)
            ctx.fail(f"unsupported op{': ' + why if why else ''} ({_SUPPORTED})")
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
    out_name = finish(g, ctx.env.get(out.name), f"{where}: the output {out.name!r}")
    tt = out.type.tensor_type if out.type.HasField("tensor_type") else None
    if tt is not None and tt.HasField("shape") and len(tt.shape.dim) > 1 \
            and all(d.HasField("dim_value") for d in tt.shape.dim[1:]):
        want = tuple(int(d.dim_value) for d in tt.shape.dim[1:])
        if g.nodes[out_name]["shape"] != want:
            raise FrontendError(f"{where}: the lowered output has shape {g.nodes[out_name]['shape']}, but the model "
                                f"declares {want} (batch axis excluded)")
    return g
