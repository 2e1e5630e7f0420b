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
    """``x_q`` (ops.Input's docstring) as ``dtype`` (holding +-levels). Large inputs take numba's
    kernel, one pass from any input dtype to ``dtype`` (the same float64 steps per value); numpy's
    runs :func:`input_levels` on a float64 copy."""
    x = np.asarray(x)
    if x.size >= FUSED_VALUES and x.ndim >= 2 and (kernels := numba_kernels_or_none()) is not None:
        rows = _numba_view(x).reshape(len(x), 1, -1)  # each sample one frame of a one-step sequence
        out = np.empty((1,) + rows.shape[:1] + rows.shape[2:], dtype)
        kernels.quantize_frames(rows, 0, float(inp.scale), int(inp.levels), int(_lowest(inp)), out)
        return out.reshape(x.shape)
    return input_levels(x.astype(np.float64), inp.scale, inp.levels, _lowest(inp)).astype(dtype)


def quantize_frames(inp, x: np.ndarray, t0: int, c: int, dtype=np.int64) -> np.ndarray:
    """Frames ``t0 .. t0 + c - 1`` of a sequence ``x`` (N, T, *shape) quantized, time first:
    ``out[t] = quantize_input(inp, x[:, t0 + t])``, (c, N, *shape). numba's kernel reads each frame
    where it lies (a time-first view of x costs it the vectorized pass: 9 ms against 80 ms on
    256 x 100 x 700 events)."""
    x = np.asarray(x)
    n, shape = len(x), x.shape[2:]
    if x[:, t0:t0 + c].size >= FUSED_VALUES and (kernels := numba_kernels_or_none()) is not None:
        if not x.flags.c_contiguous:  # (a copy of these frames only, not of the whole sequence each chunk)
            x, t0 = np.ascontiguousarray(x[:, t0:t0 + c]), 0
        seq = _numba_view(x).reshape(n, x.shape[1], -1)
        out = np.empty((c, n, seq.shape[2]), dtype)
        kernels.quantize_frames(seq, t0, float(inp.scale), int(inp.levels), int(_lowest(inp)), out)
        return out.reshape((c, n) + shape)
    return quantize_input(inp, np.swapaxes(x[:, t0:t0 + c], 0, 1), dtype)


def _lowest(inp) -> int:
    return -inp.levels if inp.signed else 0


def _numba_view(x):
    return x.view(np.uint8) if x.dtype == bool else x


def numba_kernels_or_none():
    """:mod:`.numba_kernels`, or None in the core without numba (input rule and data check fall back to numpy)."""
    try:
        from . import numba_kernels
    except ImportError:  # the core without numba (the Lava environment)
        return None
    return numba_kernels
