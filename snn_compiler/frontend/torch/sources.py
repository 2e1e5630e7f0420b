"""Bring every model source to a ``torch.export.ExportedProgram``, then lower it (``lower.py``).

- ``nn.Module``: ``torch.export.export`` in eval mode on a zero example of batch 1.
- TorchScript (``torch.jit.save`` files, ScriptModules): torch's TorchScript -> ExportedProgram
  converter; each TorchScript node's module scope is carried over as the ``nn_module_stack`` the
  lowering reads, so errors name module paths as for an nn.Module.
- ``.pt2`` (``torch.export.save``): ``torch.export.load``.
- A pickled module (``torch.save(model)``) is refused unless ``allow_pickle=True``: unpickling
  runs arbitrary code from the file.

Files are read once; archives are inspected before torch loads those same bytes (``pt2_check``,
``torchscript_check``): a .pt2 member torch would unpickle is refused unless ``allow_pickle=True``,
code torch or snnc would run from the file (TorchScript beyond pure tensor ops or with custom
pickling, .pt2 graph ops beyond them, symbolic expressions, native libraries) unless
``trust_code=True``.
"""
from __future__ import annotations

import io
import logging
import operator
import os
import pickletools
import warnings
import zipfile
from contextlib import contextmanager
from typing import Optional

import networkx as nx
import torch
from torch import nn

from .archive_check import Archive
from ..errors import FrontendError, NeedsInputShape, check_input_shape
from .lower import from_exported_program
from .pt2_check import check_pt2
from .torchscript_check import check_torchscript

_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # pickled torch.save magic number
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # HDF5 signature: Keras .h5 files


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
        found = []
        for n in ex.unsupported_node_list:
            stack = list(_scope_stack(n.scopeName()).values())
            inner = [(p, t) for p, t in stack if p]
            found.append(f"{n.kind()} at " + (f"{inner[-1][0]} ({inner[-1][1]})" if inner else "the top level"))
        return ("; unsupported: " + ", ".join(found)) if found else ""
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
            raise FrontendError(f"could not convert the TorchScript module on an input of shape "
                                f"{(1,) + shape}: {_first_line(e)}") from e
    return from_exported_program(ep, shape)


# ---- files ---------------------------------------------------------------------------------------

def _pickle_globals(data: bytes, max_pickles: int = 4) -> list:
    """Classes and functions a pickle stream refers to, read without unpickling it."""
    found, strings, pos = [], [], 0
    for _ in range(max_pickles):
        try:
            for op, arg, p in pickletools.genops(data[pos:]):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings.append(arg)
                elif op.name == "GLOBAL":
                    found.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif op.name == "STOP":
                    pos += p + 1
                    break
            else:
                break
        except Exception:  # noqa: BLE001 - best effort, only for the message
            break
    return list(dict.fromkeys(found))


def _is_plain_data(name: str) -> bool:
    """Globals any torch.save file names (tensor rebuilding, containers): not worth listing."""
    return (name.startswith(("torch._utils.", "collections.", "builtins.", "__builtin__.", "torch._tensor."))
            or (name.startswith("torch.") and name.endswith("Storage")) or name == "torch.Size")


def _refuse_pickle(path, data_pkl: bytes) -> None:
    names = [n for n in _pickle_globals(data_pkl) if not _is_plain_data(n)]
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    raise FrontendError(
        f"{path} is a pickled Python object (torch.save(model)){' referring to ' + shown if shown else ''}. "
        f"Loading it means unpickling it, and unpickling can run arbitrary code named by the file, "
        f"so snnc refuses it by default. Re-save the model with torch.export.save (.pt2) or torch.jit.save, "
        f"or, only if you trust the file, pass allow_pickle=True (snnc compile --allow-pickle).")


def _load_pickled(path, data: bytes, data_pkl: bytes, input_shape, allow_pickle):
    # First the safe loader: a state_dict or plain tensors load without running code.
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - it needs code to unpickle (or is corrupt)
        obj = _NEEDS_CODE
    if obj is _NEEDS_CODE:
        if not allow_pickle:
            _refuse_pickle(path, data_pkl)
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise FrontendError(f"{path}: torch.load failed: {_first_line(e)}") from e
    if isinstance(obj, nn.Module):
        if input_shape is None:
            input_shape = _first_linear_in_features(obj)
            if input_shape is None:
                raise NeedsInputShape(f"{path}: a pickled module does not record its input shape: "
                                      f"{NeedsInputShape.HOW}")
        return from_module(obj, input_shape)
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FrontendError(
            f"{path} holds a state_dict (only parameter tensors: {', '.join(list(obj)[:4])}"
            f"{', ...' if len(obj) > 4 else ''}), not a model: it has no architecture. Build the "
            f"nn.Module, call load_state_dict, and pass it to from_module, or save it with "
            f"torch.export.save / torch.jit.save.")
    if isinstance(obj, dict):
        keys = ", ".join(map(str, list(obj)[:6])) + (", ..." if len(obj) > 6 else "")
        raise FrontendError(f"{path} holds a dict saved with torch.save (keys: {keys}), not a model; a training "
                            f"checkpoint has no architecture: build the nn.Module, load its state_dict and "
                            f"pass it to from_module, or save it with torch.export.save / torch.jit.save")
    raise FrontendError(f"{path} holds a {type(obj).__name__} saved with torch.save, not a model")


_NEEDS_CODE = object()


def _first_linear_in_features(model) -> Optional[tuple]:
    first = next((m for m in model.modules() if not list(m.children())), None)
    return (first.in_features,) if isinstance(first, nn.Linear) else None


def load_file(path, input_shape: Optional[tuple] = None, allow_pickle: bool = False,
              trust_code: bool = False) -> nx.DiGraph:
    """IR graph of a saved model: TorchScript (torch.jit.save), torch.export (.pt2), a Keras .h5 file
    (model.save("model.h5"), Keras 2 or 3, read with h5py: :mod:`.keras`), or, only with
    ``allow_pickle=True``, a pickled module (torch.save(model)). ``allow_pickle`` also admits .pt2
    members torch unpickles; ``trust_code`` admits files whose code torch would run beyond pure
    tensor ops (see pt2_check / torchscript_check)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FrontendError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read()  # once: what is checked below is what torch loads
    head = data[:8]
    if path.lower().endswith(".onnx"):  # protobuf has no magic bytes: the suffix says ONNX (parsing runs no code)
        from ..onnx.graph import from_onnx
        return from_onnx(data, input_shape=input_shape, name=path)
    if head.startswith(_HDF5_MAGIC):  # Keras .h5 (h5py reads the bytes checked here; no torch involved)
        from ..keras.lower import from_keras_h5
        return from_keras_h5(data, input_shape=input_shape, name=path)
    if head.startswith(_ZIP_MAGIC) and zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            if "config.json" in names and "model.weights.h5" in names:
                raise FrontendError(f"{path} is a Keras 3 .keras archive; snnc reads Keras models saved as .h5: "
                                    f"load it in Keras and save it with model.save('model.h5')")
            base = {n.split("/", 1)[-1] for n in names}
            if "archive_format" in base or any(n.endswith("serialized_exported_program.json") for n in names) \
                    or "models/model.json" in base:
                return _load_exported(path, data, input_shape, allow_pickle, trust_code)
            if "constants.pkl" in base or any("/code/" in n or n.startswith("code/") for n in names):
                return _load_torchscript(path, data, input_shape, trust_code)
            pkl = next((n for n in names if n.endswith("data.pkl")), None)
            if pkl is not None:
                # torch.load must see the same members (one it saw as TorchScript would run that code)
                Archive(path, data)
                return _load_pickled(path, data, z.read(pkl), input_shape, allow_pickle)
            if names and all(n.endswith(".npy") for n in names):
                raise FrontendError(f"{path} is a numpy archive (.npz), not a model")
        raise FrontendError(f"{path} is a zip archive but not a TorchScript, torch.export (.pt2) or "
                            f"torch.save file")
    if head[:1] == b"\x80":  # a pickle stream
        if not head.startswith(_LEGACY_MAGIC[:8]):
            raise FrontendError(f"{path} is a plain Python pickle, not a model file; expected a TorchScript "
                                f"file (torch.jit.save) or a torch.export file (torch.export.save, .pt2)")
        # torch.save's legacy (non-zip) format
        return _load_pickled(path, data, data, input_shape, allow_pickle)
    raise FrontendError(f"{path} is not a model file ({_sniff(path, head)}); expected a TorchScript file "
                        f"(torch.jit.save), a torch.export file (torch.export.save, .pt2), an ONNX model (.onnx) "
                        f"or a Keras .h5 file (model.save('model.h5'))")


def _sniff(path, head: bytes) -> str:
    if head.startswith(b"\x93NUMPY"):
        return "it is a numpy .npy array"
    from ..onnx.graph import looks_like_onnx
    if looks_like_onnx(path):
        return "it looks like an ONNX model: give it the .onnx suffix"
    with open(path, "rb") as f:
        chunk = f.read(4096)
    if not chunk:
        return "it is empty"
    try:
        chunk.decode("utf-8")
        return "it looks like text"
    except UnicodeDecodeError:
        return "unrecognised binary content"


def _load_exported(path, data, input_shape, allow_pickle, trust_code):
    check_pt2(path, data, allow_pickle=allow_pickle, trust_code=trust_code)
    try:
        with _quiet():
            ep = torch.export.load(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001
        raise FrontendError(f"{path}: torch.export.load failed: {_first_line(e)}") from e
    return from_exported_program(ep, None if input_shape is None else check_input_shape(input_shape))


def _load_torchscript(path, data, input_shape, trust_code):
    if not trust_code:
        check_torchscript(path, data)
    try:
        with _quiet():
            ts = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise FrontendError(f"{path}: torch.jit.load failed: {_first_line(e)}") from e
    try:
        return from_torchscript(ts, input_shape)
    except FrontendError as e:
        if isinstance(e, NeedsInputShape):
            raise NeedsInputShape(f"{path}: {e}") from None
        raise
