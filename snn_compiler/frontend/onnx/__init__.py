"""ONNX frontend: a ``.onnx`` file, its bytes or a ``ModelProto`` -> IR graph (parsed as data, no torch)."""
from .graph import from_onnx

__all__ = ["from_onnx"]
