"""Reading an ONNX model safely: the protobuf is parsed as data (``onnx.load_model_from_string``),
never executed, and no other file is read: tensors kept in external data files (a path the model
names) are refused, as are model-local functions. Content that is recognisably another format is
named. torch is not needed."""
from __future__ import annotations

import os

from ..errors import FrontendError


_MIN_OPSET = 9


def _onnx():
    try:
        import onnx
    except ImportError:
        raise FrontendError("reading ONNX models needs the onnx package: pip install onnx "
                            "(or snnc's extra: pip install 'snnc[interop]')") from None
    return onnx


def external_tensors(onnx, model) -> list:
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


def looks_like_onnx(data: bytes) -> bool:
    """Whether ``data`` parses as an ONNX model (for messages about files without the suffix)."""
    try:
        import onnx
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
