"""Bring every model source to a ``torch.export.ExportedProgram``, then lower it (``lower.py``).

- ``nn.Module``: ``torch.export.export`` in eval mode on a zero example of batch 1.
- TorchScript (``torch.jit.save`` files, ScriptModules): torch's TorchScript -> ExportedProgram
  converter; each TorchScript node's module scope is carried over as the ``nn_module_stack`` the
  lowering reads, so errors name module paths as for an nn.Module.
- ``.pt2`` (``torch.export.save``): ``torch.export.load``.
- A pickled module (``torch.save(model)``) is refused unless ``allow_pickle=True``: unpickling
  runs arbitrary code from the file.

Files (``.pt2``, TorchScript, torch.save) are read in :mod:`.files`.
"""
from __future__ import annotations

import logging
import operator
import warnings
from contextlib import contextmanager
from typing import Optional

import networkx as nx
import torch
from torch import nn

from ..errors import FrontendError, NeedsInputShape, check_input_shape
from .lower import from_exported_program
from .refusals import WHY


def _example(model, shape):
    """A zero input of batch 1 with the dtype and device of the model's parameters."""
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    if p is None:
        return torch.zeros((1,) + shape)
    return torch.zeros((1,) + shape, dtype=p.dtype, device=p.device)


@contextmanager
def _eval_mode(model):
    """Put every submodule in eval mode; restore each one's own flag afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, t in modes:
            m.training = t


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return f"{type(e).__name__}: {s.splitlines()[0] if s else ''}"


# ---- nn.Module -----------------------------------------------------------------------------------

def from_module(model: nn.Module, input_shape: tuple) -> nx.DiGraph:
    """IR graph of ``model`` (evaluated in eval mode) for inputs of ``input_shape`` (no batch axis)."""
    if isinstance(model, (torch.jit.ScriptModule, torch.jit.RecursiveScriptModule)):
        return from_torchscript(model, input_shape)
    if not isinstance(model, nn.Module):
        raise FrontendError(f"expected a torch.nn.Module, got {type(model).__name__}")
    shape = check_input_shape(input_shape)
    with _eval_mode(model):
        example = _example(model, shape)
        try:
            with _quiet():
                ep = torch.export.export(model, (example,), strict=False)
        except Exception as e:  # noqa: BLE001 - export raises many types
            raise FrontendError(f"torch.export could not capture {type(model).__qualname__} on an input of "
                                f"shape {(1,) + shape}: {_first_line(e)}") from e
    return from_exported_program(ep, shape)


# ---- TorchScript ---------------------------------------------------------------------------------

def _scope_stack(scope: str) -> dict:
    """TorchScript scope ``pkg.Net::/torch.nn...Sequential::features/torch.nn...ReLU::2`` ->
    export-style nn_module_stack ``{key: (path, class)}``."""
    stack, path = {}, []
    for i, part in enumerate(p for p in scope.split("/") if p):
        cls, _, name = part.rpartition("::")
        cls = cls.removeprefix("__torch__.")
        if i and name:
            path.append(name)
        stack[f"scope{i}"] = (".".join(path), cls)
    return stack


def _infer_linear_shape(ts) -> Optional[tuple]:
    """(in_features,) when the first op applied to the input is a Linear, else None."""
    graph = ts.inlined_graph if hasattr(ts, "inlined_graph") else ts.graph
    inputs = list(graph.inputs())
    if len(inputs) != 2:
        return None
    x = inputs[1]
    for node in graph.nodes():
        if x not in list(node.inputs()):
            continue
        if node.kind() != "aten::linear":
            return None
        attr = node.inputsAt(1).node()
        names = []
        while attr.kind() == "prim::GetAttr":
            names.append(attr.s("name"))
            attr = attr.input().node()
        obj = ts
        for name in reversed(names):
            obj = getattr(obj, name)
        if isinstance(obj, torch.Tensor) and obj.dim() == 2:
            return (int(obj.shape[1]),)
        return None
    return None


_CONVERTER_PARTS = ("TS2EPConverter", "TS2FXGraphConverter", "get_block_to_lifted_attrs",
                    "replace_quantized_ops_with_standard_ops")


def _ts_to_exported(ts, example):
    from torch._export import converter as C

    if not all(hasattr(C, part) for part in _CONVERTER_PARTS):  # pragma: no cover - other torch
        # the public converter alone: same program, but errors cannot name module paths
        return C.TS2EPConverter(ts, (example,)).convert()
    conv = C.TS2EPConverter(ts, (example,))
    blocks, fqns = C.get_block_to_lifted_attrs(conv.ts_graph)
    gc = C.TS2FXGraphConverter(conv.ts_graph, conv.name_to_param, conv.name_to_buffer, blocks,
                               conv.name_to_non_tensor_attributes, conv.name_to_constant, fqns)
    try:
        gm = gc.convert()
    except Exception as e:  # noqa: BLE001
        raise FrontendError(f"TorchScript graph cannot be converted: {_first_line(e)}"
                            f"{_unsupported_ts_nodes(conv, blocks, fqns)}") from e
    # Carry each TorchScript node's module scope to the FX node it became ("custom" meta
    # survives the re-trace below).
    for node in conv.ts_graph.nodes():
        for out in node.outputs():
            fx = gc.name_to_node.get(out.debugName())
            if isinstance(fx, torch.fx.Node):
                fx.meta.setdefault("custom", {})["snnc_scope"] = node.scopeName()
                if fx.target is operator.getitem and isinstance(fx.args[0], torch.fx.Node):
                    # a multi-output op: its outputs are getitems of the call node
                    fx.args[0].meta.setdefault("custom", {}).setdefault("snnc_scope", node.scopeName())
    C.replace_quantized_ops_with_standard_ops(gm)
    ep = conv.retrace_as_exported_program(gm, gc.name_to_constant)
    for fx in ep.graph.nodes:
        scope = (fx.meta.get("custom") or {}).get("snnc_scope")
        fx.meta["nn_module_stack"] = _scope_stack(scope) if scope else {}
    return ep


def _unsupported_ts_nodes(conv, blocks, fqns) -> str:
    try:
        from torch._export import converter as C
        ex = C.ExplainTS2FXGraphConverter(conv.ts_graph, conv.name_to_param, conv.name_to_buffer, blocks,
                                          conv.name_to_non_tensor_attributes, conv.name_to_constant, fqns)
        ex.explain()
        found, why = [], ""
        for n in ex.unsupported_node_list:
            stack = list(_scope_stack(n.scopeName()).values())
            inner = [(p, t) for p, t in stack if p]
            where = f"{n.kind()} at " + (f"{inner[-1][0]} ({inner[-1][1]})" if inner else "the top level")
            if where not in found:
                found.append(where)
            # a layer snnc could not convert anyway (attention's branches): say why, as the lowering would
            classes = [t.rsplit(".", 1)[-1] for _, t in reversed(stack)]
            why = why or next((WHY[c] for c in classes if c in WHY), "")
        return ("; unsupported: " + ", ".join(found) + (f"; {why}" if why else "")) if found else ""
    except Exception:  # noqa: BLE001 - only improves the message
        return ""


@contextmanager
def _quiet():
    """Silence torch's logging and warnings while it loads, converts or exports a model: a failure
    then ends in snnc's one-line error, without torch's fake-tensor tracebacks (logged at ERROR)
    or deprecation notes before it. Loggers with a level of their own are raised too, since a
    record they let through reaches torch's handlers whatever the parent's level."""
    loggers = [logging.getLogger("torch")] + [
        lg for name, lg in list(logging.Logger.manager.loggerDict.items())
        if name.startswith("torch.") and isinstance(lg, logging.Logger) and lg.level != logging.NOTSET]
    levels = [(lg, lg.level) for lg in loggers]
    for lg, _ in levels:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in levels:
            lg.setLevel(level)


def from_torchscript(ts, input_shape: Optional[tuple] = None) -> nx.DiGraph:
    """IR graph of a TorchScript module (``torch.jit.script`` / ``torch.jit.trace`` / ``torch.jit.load``)."""
    if input_shape is None:
        input_shape = _infer_linear_shape(ts)
        if input_shape is None:
            raise NeedsInputShape("TorchScript files do not record the input shape (it is inferred only when the "
                                  f"first op is a Linear): {NeedsInputShape.HOW}")
    shape = check_input_shape(input_shape)
    with _eval_mode(ts):
        example = _example(ts, shape)
        try:
            with _quiet():
                ep = _ts_to_exported(ts, example)
        except FrontendError:
            raise
        except Exception as e:  # noqa: BLE001
            hint = ""
            if "data-dependent" in str(e) or "DataDependent" in type(e).__name__ + str(e):
                hint = ("; its forward computes a size with arithmetic on x.size() (ShuffleNet's c // groups), which "
                        "torch's TorchScript converter turns into a value it cannot follow: save the model with "
                        "torch.export (.pt2), or pass the nn.Module")
            raise FrontendError(f"could not convert the TorchScript module on an input of shape "
                                f"{(1,) + shape}: {_first_line(e)}{hint}") from e
    return from_exported_program(ep, shape)
