"""Frontends: model files and objects -> IR graph, one subpackage per input format.

``torch/`` (nn.Module, TorchScript, torch.export), ``onnx/``, ``keras/`` (.h5) and ``nir/`` each
lower into the same IR ops. torch, onnx, h5py and nir are imported only when a function below is
first used, so ``from snn_compiler.frontend import FrontendError`` works without any of them.
"""
from .errors import FrontendError

__all__ = ["FrontendError", "from_module", "from_exported_program", "from_torchscript", "load_file", "from_onnx",
           "from_keras_h5", "to_channels_first", "from_nir", "load_nir"]

_LAZY = {"from_module": "torch.sources", "from_torchscript": "torch.sources", "load_file": "files",
         "from_exported_program": "torch.lower", "from_keras_h5": "keras", "to_channels_first": "keras",
         "from_onnx": "onnx", "from_nir": "nir", "load_nir": "nir"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
