"""Lower a ``torch.export.ExportedProgram`` (aten-level FX graph) into the IR.

This is the only place where torch ops become IR ops, whichever file format the model came
from: :mod:`.sources` brings nn.Modules, TorchScript and ``.pt2`` files to an ExportedProgram
first. ``HANDLERS`` maps each supported aten op to its one handler; an op without a handler is
refused with its module path. Nodes whose inputs are all constants (parameters, buffers, lifted
constants, and anything computed from them, e.g. a transposed weight) are evaluated by torch and
stay constants; only ops that touch the network's activations are lowered.
"""
from __future__ import annotations

import operator
from typing import Optional

import networkx as nx
import torch
from torch.export.graph_signature import InputKind, OutputKind

from ..errors import FrontendError
from ..lowering import Act, Unavailable, finish
from .context import Lowering, _bind, where
from .handlers import HANDLERS, _getitem
from .one_d import uses_1d
from .refusals import unsupported_message


# ---- the driver ----------------------------------------------------------------------------------

def _contains_act(v) -> bool:
    if isinstance(v, (Act, Unavailable)):
        return True
    if isinstance(v, (list, tuple)):
        return any(_contains_act(x) for x in v)
    if isinstance(v, dict):
        return any(_contains_act(x) for x in v.values())
    return False


def _placeholders(ctx, ep):
    """Constants for lifted parameters, buffers and constants; the one user input."""
    state = ep.state_dict
    consts = ep.constants
    user = []
    for spec in ep.graph_signature.input_specs:
        name = spec.arg.name if hasattr(spec.arg, "name") else None
        if spec.kind == InputKind.USER_INPUT:
            user.append(name)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            src = consts if spec.target in consts else state
            if spec.target not in src:
                raise FrontendError(f"the program lacks the value of {spec.target!r}")
            ctx.env[name] = src[spec.target]
        else:
            raise FrontendError(f"unsupported program input {name!r} of kind {spec.kind.name}")
    return user


def from_exported_program(ep, input_shape: Optional[tuple] = None) -> nx.DiGraph:
    """Lower ``ep`` (a ``torch.export.ExportedProgram`` with one tensor input and one tensor output)."""
    ctx = Lowering()
    user = _placeholders(ctx, ep)
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    tensors = [u for u in user if isinstance(placeholders[u].meta.get("val"), torch.Tensor)]
    if len(user) != 1 or len(tensors) != 1:
        raise FrontendError(f"the model must take exactly one tensor input (besides its parameters), "
                            f"it takes {len(user)}: {user}")
    x_node = placeholders[tensors[0]]
    val_shape = tuple(x_node.meta["val"].shape)
    try:
        recorded = tuple(int(d) for d in val_shape[1:])
    except (TypeError, ValueError):
        raise FrontendError(f"the program's input has symbolic sizes {val_shape} beyond the batch axis; "
                            f"re-export it with static feature sizes") from None
    if input_shape is not None and tuple(input_shape) != recorded:
        raise FrontendError(f"input_shape {tuple(input_shape)} does not match the program's input "
                            f"{recorded} (batch axis excluded)")
    one_d = len(recorded) == 2 and uses_1d(ep)  # a (C, L) input read by Conv1d / 1-D pools: a (C, 1, L) map
    ctx.env[x_node.name] = ctx.add_input((recorded[0], 1, recorded[1]) if one_d else recorded)
    for n in ep.graph.nodes:
        if n.op == "placeholder":
            continue
        if n.op == "output":
            break
        ctx.node = n
        if n.op != "call_function":
            raise FrontendError(f"unsupported FX node {n.op} {n.target} at {where(n)}")
        args, kwargs = ctx.value(tuple(n.args)), ctx.value(dict(n.kwargs))
        if n.target is operator.getitem:
            ctx.env[n.name] = _getitem(ctx, n, *args)
            continue
        if not _contains_act((args, kwargs)):
            with torch.no_grad():
                try:
                    ctx.env[n.name] = n.target(*args, **kwargs)  # constant folding (weights only)
                except Exception as e:  # noqa: BLE001 - any failure here is the model's
                    ctx.fail(f"evaluating this constant expression failed: {e}")
            continue
        handler = HANDLERS.get(n.target)
        if handler is None:
            ctx.fail(unsupported_message(n, HANDLERS))
        if not isinstance(n.target, torch._ops.OpOverload):
            ctx.fail("not an aten op")
        try:
            ctx.env[n.name] = handler(ctx, _bind(n.target, args, kwargs))
        except FrontendError:
            raise
        except (ValueError, TypeError) as e:  # odd argument values: still say where
            ctx.fail(str(e))
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    outs = [s for s in ep.graph_signature.output_specs if s.kind == OutputKind.USER_OUTPUT]
    if len(outs) != 1:
        raise FrontendError(f"the model must return exactly one tensor, it returns {len(outs)} outputs")
    result = ctx.env.get(outs[0].arg.name) if hasattr(outs[0].arg, "name") else None
    if not isinstance(result, Act):
        raise FrontendError("the model's output does not depend on its input (it returns a constant)")
    ctx.node = out_node
    g = ctx.g
    out_name = finish(g, result, "the model")
    expected = out_node.args[0][0].meta.get("val") if isinstance(out_node.args[0], (list, tuple)) else None
    if isinstance(expected, torch.Tensor):
        want = tuple(int(d) for d in expected.shape[1:])
        if one_d and len(want) == 2:  # a (C, L) output is the IR's (C, 1, L) map
            want = (want[0], 1, want[1])
        if g.nodes[out_name]["shape"] != want:  # pragma: no cover - a frontend bug
            raise FrontendError(f"internal error: output shape {g.nodes[out_name]['shape']} != {want}")
    return g
