"""The ONNX lowering context: the shared base (``..lowering``) with ONNX value names as values,
node attributes and constants read as the IR needs them, and nodes named by their scope path."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import FrontendError
from ..lowering import Act, Lowering, Unavailable

FLOAT_TYPES = (1, 10, 11, 16)  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


class OnnxLowering(Lowering):
    """One lowering of an ONNX graph: the shared base, with ONNX value names as the model's values
    (``env``: value name -> Act | Unavailable | np.ndarray)."""

    def __init__(self, onnx, opset: int, batch: int):
        super().__init__()
        self.onnx = onnx
        self.opset = opset
        self.batch = batch  # what Shape() reads as the batch size (see folding.BATCH)
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
                    return tensor(self.onnx, v, f"{self.label()}: attribute {name}")
                return v
        return default

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

    def base_name(self) -> str:
        return _base_name(self.node, self.index)

    def origin(self) -> tuple:
        """The ONNX node's own name (``#<index>`` when it has none) and op type."""
        return self.node.name or f"#{self.index}", self.node.op_type


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


def tensor(onnx, t, what) -> np.ndarray:
    if t.data_type == onnx.TensorProto.STRING:
        raise FrontendError(f"{what}: string tensors are not supported")
    try:
        arr = onnx.numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 - a malformed tensor
        raise FrontendError(f"{what}: tensor {t.name!r} cannot be read: {e}") from None
    if arr.dtype.kind not in "biuf":  # float16 / bfloat16 / float8 come as ml_dtypes types
        arr = arr.astype(np.float32)
    return arr
