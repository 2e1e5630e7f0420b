"""Input encodings, shared by every backend so that all of them see identical input spikes.

Integer mode: the input layer emits graded values ``x_q`` (see :class:`~snn_compiler.ir.ops.Input`).
- ``constant``: ``x_q`` every step (an analog current).
- ``poisson``: ``sign(x_q) * levels`` where ``u < |x_q| / levels``, else 0; ``u`` is float32
  uniform from ``numpy.random.default_rng([seed, sample_index])``, drawn as one (T, *shape)
  block per sample, so a sample's spikes do not depend on batching or on the backend.
Float mode: the same with ``x / scale`` and unit spikes.
"""
from __future__ import annotations

import numpy as np

ENCODINGS = ("constant", "poisson")


def quantize_input(inp, x: np.ndarray) -> np.ndarray:
    q = inp.levels
    return np.clip(np.rint(np.asarray(x, np.float64) / inp.scale * q), -q if inp.signed else 0, q).astype(np.int64)


def _normalized(inp, x, mode):
    if mode == "int":
        xq = quantize_input(inp, x)
        return xq, np.abs(xq).astype(np.float32) / np.float32(inp.levels), inp.levels
    xf = np.asarray(x, np.float64) / inp.scale
    return xf, np.minimum(np.abs(xf), 1.0).astype(np.float32), 1.0


def poisson_uniforms(seed: int, sample_ids, timesteps: int, shape) -> np.ndarray:
    """(B, T, *shape) float32 uniforms, one independent stream per sample index."""
    return np.stack([np.random.default_rng([seed, int(i)]).random((timesteps,) + tuple(shape), dtype=np.float32)
                     for i in sample_ids])


def input_steps(inp, x, timesteps: int, encoding: str = "constant", seed: int = 0, sample_ids=None, mode: str = "int"):
    """Yield the input layer's output for t = 0..T-1 as (B, *shape) arrays (int64 or float64)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    base, prob, unit = _normalized(inp, x, mode)
    if encoding == "constant":
        for _ in range(timesteps):
            yield base
        return
    ids = range(len(x)) if sample_ids is None else sample_ids
    u = poisson_uniforms(seed, ids, timesteps, np.shape(x)[1:])
    sign = np.sign(base).astype(base.dtype)
    for t in range(timesteps):
        yield sign * unit * (u[:, t] < prob)
