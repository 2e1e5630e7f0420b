"""The torch lowering context: the shared base (``..lowering``) with FX nodes as values, and where a
node sits in the model (module path, class, source line) for names and messages."""
from __future__ import annotations

import re
from typing import Optional

import numpy as np
import torch

from ..lowering import Act, Unavailable, describe  # noqa: F401  (the values handlers use)
from ..lowering import Lowering as BaseLowering


# ---- locating a node in the model ----------------------------------------------------------------

def _type_name(t) -> str:
    if isinstance(t, type):
        return f"{t.__module__}.{t.__qualname__}"
    return str(t)


def module_stack(node) -> list:
    """[(path, class name)] from the outermost module to the innermost one holding ``node``."""
    stack = node.meta.get("nn_module_stack") or {}
    return [(str(path), _type_name(t)) for path, t in stack.values()]


def where(node) -> str:
    """Human-readable location: ``features.3 (torch.nn.modules.activation.Sigmoid)``."""
    stack = module_stack(node)
    inner = [(p, t) for p, t in stack if p]
    if inner:
        path, t = inner[-1]
        loc = f"{path} ({t})"
    elif stack:
        loc = f"the top level of {stack[0][1]}.forward"
    else:
        loc = "the model's forward"
    src = _source_line(node)
    return f"{loc}{', ' + src if src else ''}"


def _source_line(node) -> str:
    trace = node.meta.get("stack_trace") or ""
    lines = [ln.strip() for ln in trace.splitlines() if ln.strip().startswith("File ")]
    # torch's own module code says nothing the module path does not
    return lines[-1] if lines and "/torch/" not in lines[-1] else ""


def _base_name(node) -> str:
    """A readable IR node name: the module path for a torch.nn leaf module, else path + op
    (``unique_name`` numbers repeats)."""
    op = _FX_SUFFIX.sub("", node.name) or node.name  # relu__1 -> relu, add_3 -> add
    inner = [(p, t) for p, t in module_stack(node) if p]
    if not inner:
        return op
    path, t = inner[-1]
    if t.startswith("torch.nn.modules.") and ".container." not in t:
        return path
    return f"{path}.{op}"


_FX_SUFFIX = re.compile(r"(_+\d*)+$")


def _origin(node) -> tuple:
    """(module path, kind) for :mod:`snn_compiler.origins`: a torch.nn leaf module's class
    (``features.3``, ``MaxPool2d``), else the op and the module whose forward calls it."""
    op = _FX_SUFFIX.sub("", node.name) or node.name
    stack = module_stack(node)
    inner = [(p, t) for p, t in stack if p]
    if not inner:
        top = stack[0][1].rpartition(".")[2] + ".forward" if stack else "forward"
        return top, op
    path, t = inner[-1]
    if t.startswith("torch.nn.modules.") and ".container." not in t:
        return path, t.rpartition(".")[2]
    return path, f"{op} in {t.rpartition('.')[2]}"


def _op_name(target) -> str:
    return str(target) if isinstance(target, torch._ops.OpOverload) else getattr(target, "__name__", str(target))


# ---- the lowering context ------------------------------------------------------------------------

class Lowering(BaseLowering):
    """One lowering of an ExportedProgram: the shared base, with FX nodes as the model's values."""

    def __init__(self):
        super().__init__()
        self.node = None  # the FX node being lowered (for names and messages)

    def label(self) -> str:
        return f"{_op_name(self.node.target)} at {where(self.node)}"

    def base_name(self) -> str:
        return _base_name(self.node)

    def origin(self) -> tuple:
        return _origin(self.node)

    # -- values
    def value(self, a):
        if isinstance(a, torch.fx.Node):
            return self.env[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(self.value(v) for v in a)
        if isinstance(a, dict):
            return {k: self.value(v) for k, v in a.items()}
        return a

    def const(self, v, what, ndim=None) -> Optional[np.ndarray]:
        """A constant tensor argument as a float64 numpy copy (None stays None)."""
        if v is None:
            return None
        if isinstance(v, Act):
            self.fail(f"{what} must be a constant (a parameter or buffer), but it is computed from the "
                      f"network's input; weights that depend on the input are not supported")
        if not isinstance(v, torch.Tensor):
            self.fail(f"{what} must be a tensor, got {v!r}")
        t = v.detach().cpu()
        arr = t.to(torch.float64).numpy()  # a new array, unless the tensor is float64 already:
        if t.dtype == torch.float64:       # never share the model's memory
            arr = arr.copy()
        if ndim is not None and arr.ndim != ndim:
            self.fail(f"{what} has shape {tuple(arr.shape)}, expected {ndim} dimensions")
        return arr

    def out_shape(self) -> tuple:
        """The FX node's output shape, batch axis included (from export's shape metadata)."""
        val = self.node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            self.fail("export recorded no output shape for this op")
        return tuple(val.shape)


def _pair(v, what="value") -> tuple:
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return (int(v[0]), int(v[0]))
        if len(v) != 2:
            raise ValueError(f"expected one or two values for {what}, got {v!r}")
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


def _bind(target, args, kwargs) -> dict:
    """Arguments by schema name, defaults filled in."""
    out = {}
    for i, arg in enumerate(target._schema.arguments):
        if i < len(args) and not arg.kwarg_only:
            out[arg.name] = args[i]
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out


