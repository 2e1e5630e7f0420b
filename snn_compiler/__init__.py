
from .convert import SNN, convert  # noqa: E402  (the one-call API: snn_compiler.convert(model, data))

__all__ = ["SNN", "convert"]
