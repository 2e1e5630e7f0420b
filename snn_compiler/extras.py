"""Optional dependencies: which pip extra brings each, and the one message when one is missing.

The core needs numpy, networkx, pyyaml, tqdm and numba; everything else comes with an extra
(pyproject.toml): ``torch``, ``plot`` (matplotlib), ``interop`` (onnx, nir, h5py), ``demo``
(scikit-learn, matplotlib), ``ray`` (``--ray``: runs on a Ray cluster), ``all``. A missing package is named with the extra that brings it
and with everything else that extra brings, so one install fixes the command.
"""
from __future__ import annotations

import importlib
import importlib.util

EXTRA_OF = {"torch": "torch", "matplotlib": "plot", "onnx": "interop", "nir": "interop", "h5py": "interop",
            "sklearn": "demo", "ray": "ray"}
PIP_NAME = {"sklearn": "scikit-learn"}


class MissingExtra(RuntimeError):
    """An optional package a command needs is not installed; the message says how to install it."""


def missing_message(module: str, purpose: str) -> str:
    extra = EXTRA_OF[module]
    return (f"{purpose} needs {PIP_NAME.get(module, module)}, which is not installed: "
            f"pip install 'snnc[{extra}]' (or 'snnc[all]' for every extra)")


def require(module: str, purpose: str):
    """Import ``module`` or raise MissingExtra naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(missing_message(module, purpose)) from None


def check_available(module: str, purpose: str) -> None:
    """Before any work starts: raise MissingExtra if ``module`` cannot be found (without importing it)."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(missing_message(module, purpose))
