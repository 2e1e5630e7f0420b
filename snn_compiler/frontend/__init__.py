"""PyTorch frontend: nn.Module, TorchScript and torch.export files -> IR graph.

Every source is first brought to one form, a ``torch.export.ExportedProgram`` (an aten-level FX
graph whose nodes carry their module path), and that one form is lowered op by op in
:mod:`.lower` (one handler per aten op). ``torch`` is imported only when a function below is
first used, so ``from snn_compiler.frontend import FrontendError`` works without torch.
"""
from .errors import FrontendError

__all__ = ["FrontendError", "from_module", "from_exported_program", "from_torchscript", "load_file"]

_LAZY = {"from_module": "sources", "from_torchscript": "sources", "load_file": "sources",
         "from_exported_program": "lower", "from_keras_h5": "keras", "to_channels_first": "keras",
         "from_onnx": "onnx_import"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
