"""What NIR import and export share: the error, the ``nir`` package, ``dt`` and the node kinds."""
from __future__ import annotations

import numpy as np

from ..errors import FrontendError

FORMS = ("float", "int")


DISCRETIZATIONS = ("euler", "exact")


DEFAULT_DT = 1e-4               # snnTorch's hard-coded export timestep


FORMAT, FORMAT_VERSION = "snnc-nir", 1

UNIT_TOL = 1e-6                 # an input gain within this of 1 is 1 (float32 files: tau/dt * dt/tau)


DECAY_TOL = 1e-3                # |4096 dt/tau_syn - k| that still counts as decay_u = k


NEEDS_DT = ("NIR stores no timestep: give it (--dt, or dt= from Python); snnTorch exports with dt = 1e-4, "
            "Norse simulates with dt = 1e-3, sinabs counts time in steps (dt = 1)")


SPIKING = ("IF", "LIF", "CubaLIF")


READOUT_ONLY = ("LI", "I", "CubaLI")


WEIGHTED_NIR = ("Affine", "Linear", "Conv2d")


SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten", "Scale", "Delay") \
    + SPIKING + READOUT_ONLY


class NIRError(FrontendError):
    """A graph snnc cannot write as NIR, or a NIR file/graph it cannot import; says which and why."""


def nir_package():
    try:
        import nir
    except ImportError:  # pragma: no cover - nir is a dev/interop dependency
        raise NIRError("NIR files need the nir package (pip install nir)") from None
    return nir


def check_dt(dt) -> float:
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise NIRError(f"dt must be a number, got {dt!r}") from None
    if not (np.isfinite(dt) and dt > 0):
        raise NIRError(f"dt must be a finite number > 0, got {dt!r}")
    return dt


# ---- reading node fields ---------------------------------------------------------------------------

def _pair(v, what, node):
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2 or not np.all(np.isfinite(a.astype(np.float64))) or np.any(a != np.rint(a)):
        raise NIRError(f"node {node!r}: {what} must be an integer or a pair, got {v!r}")
    return int(a[0]), int(a[1])


def _is_str(v) -> bool:
    return isinstance(v, (str, bytes)) or (isinstance(v, np.ndarray) and v.dtype.kind in "SUO" and v.size == 1)


def _text(v) -> str:
    v = v.item() if isinstance(v, np.ndarray) else v
    return v.decode() if isinstance(v, bytes) else str(v)


def _plain(v):
    """A metadata value as Python (numpy scalars from h5py -> float/int/bool/str)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return v if v.ndim else _plain(v.item())
    if isinstance(v, np.generic):
        return v.item()
    return v
