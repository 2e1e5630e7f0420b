"""Torch model files -> IR graph: torch.export (``.pt2``), TorchScript (``torch.jit.save``) and,
only with ``allow_pickle=True``, a pickled module (``torch.save(model)``).

Files are read once; archives are inspected before torch loads those same bytes (``pt2_check``,
``torchscript_check``): a .pt2 member torch would unpickle is refused unless ``allow_pickle=True``,
code torch or snnc would run from the file (TorchScript beyond pure tensor ops or with custom
pickling, .pt2 graph ops beyond them, symbolic expressions, native libraries) unless
``trust_code=True``. Which format a file is, is decided once for every frontend in
:mod:`snn_compiler.frontend.files`.
"""
from __future__ import annotations

import io
import pickletools
import zipfile
from typing import Optional

import networkx as nx
import torch
from torch import nn

from ..errors import FrontendError, NeedsInputShape, check_input_shape
from .archive_check import Archive
from .lower import from_exported_program
from .pt2_check import check_pt2
from .sources import _first_line, _quiet, from_module, from_torchscript
from .torchscript_check import check_torchscript

LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # pickled torch.save magic number


def load(path: str, data: bytes, input_shape: Optional[tuple] = None, allow_pickle: bool = False,
         trust_code: bool = False) -> nx.DiGraph:
    """IR graph of the torch file ``path`` whose bytes are ``data`` (a zip archive or a pickle stream):
    TorchScript, torch.export (.pt2), or with ``allow_pickle`` a pickled module. ``allow_pickle`` also
    admits .pt2 members torch unpickles; ``trust_code`` admits files whose code torch would run beyond
    pure tensor ops (see pt2_check / torchscript_check)."""
    if data[:1] == b"\x80":  # a pickle stream
        if not data.startswith(LEGACY_MAGIC[:8]):
            raise FrontendError(f"{path} is a plain Python pickle, not a model file; expected a TorchScript "
                                f"file (torch.jit.save) or a torch.export file (torch.export.save, .pt2)")
        return _load_pickled(path, data, data, input_shape, allow_pickle)  # torch.save's legacy (non-zip) format
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
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
    raise FrontendError(f"{path} is a zip archive but not a TorchScript, torch.export (.pt2) or "
                        f"torch.save file")


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
