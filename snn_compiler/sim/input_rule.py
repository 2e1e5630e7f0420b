"""The Input's value rule: what the integer SNN's input layer sends for a value ``x`` (ops.Input's
docstring), written once for numpy's arrays and numba's loop (numba_kernels.quantize_frames)."""
from __future__ import annotations

import numpy as np

# From this many values on, quantize_input runs numba's one-pass kernel where numba is installed.
FUSED_VALUES = 1 << 15


def input_levels(v, scale, levels, lowest):
    """The Input's rule ``x_q = clip(rint(x / scale * L), lowest, L)`` on float64 values ``v``: an
    array (numpy), or one value inside numba's loop (``numba_kernels.quantize_frames``). Written once."""
    return np.minimum(np.maximum(np.rint(v / scale * levels), lowest), levels)


def quantize_input(inp, x: np.ndarray, dtype=np.int64) -> np.ndarray:
    """``x_q`` (ops.Input's docstring) as ``dtype`` (holding +-levels). Large inputs (an event
    sequence: N x T x 700 values) take numba's kernel, one pass from any input dtype to ``dtype``
    (the same float64 steps per value); numpy's runs :func:`input_levels` on a float64 copy."""
    x = np.asarray(x)
    lowest = -inp.levels if inp.signed else 0
    if x.size >= FUSED_VALUES and x.ndim >= 2:
        try:
            from . import numba_kernels
        except ImportError:  # the core without numba (the Lava environment)
            numba_kernels = None
        if numba_kernels is not None:
            x3 = (x.view(np.uint8) if x.dtype == bool else x).reshape(x.shape[0], x.shape[1], -1)
            out = np.empty(x3.shape, dtype)
            numba_kernels.quantize_frames(x3, float(inp.scale), int(inp.levels), int(lowest), out)
            return out.reshape(x.shape)
    return input_levels(x.astype(np.float64), inp.scale, inp.levels, lowest).astype(dtype)
