"""Input encodings, shared by every backend so that all of them see identical input spikes.

Integer mode: the input layer emits graded values ``x_q`` (see :class:`~snn_compiler.ir.ops.Input`).
- ``constant``: ``x_q`` every step (an analog current).
- ``poisson``: ``sign(x_q) * levels`` where ``u < |x_q| / levels``, else 0; ``u`` is float32
  uniform from ``numpy.random.default_rng([seed, sample_index])``: sample k's uniforms are the
  first ``T * size`` float32 draws of its own generator, step after step (the (T, *shape) block
  ``rng.random((T, *shape), dtype=float32)`` would hold), so a sample's spikes do not depend on
  batching, on the backend, or on how many steps are drawn at once. They are drawn in chunks of
  steps, so memory does not grow with T.
Float mode: the same with ``x / scale`` and unit spikes.

``T`` is at most :data:`MAX_TIMESTEPS` (see :func:`check_timesteps`).
"""
from __future__ import annotations

import numbers

import numpy as np

ENCODINGS = ("constant", "poisson")

# The largest number of timesteps a simulation accepts. Rate coding resolves 1/T: T = 10,000
# resolves 1e-4, finer than a 13-bit activation (1/8191), so more steps buy no accuracy, while
# 1,000 MNIST samples at T = 10,000 already take ~7 min on the numba engine and ~8 h on Lava's
# CPU simulator (784-256-128-10 MLP, 2 cores): a larger T is a typo, not an experiment.
MAX_TIMESTEPS = 10_000

# Uniforms drawn at once per batch (float32 values, 4 MiB): bounds the encoder's memory.
CHUNK_VALUES = 1 << 20


def check_timesteps(timesteps) -> int:
    """``timesteps`` as an int in 1..MAX_TIMESTEPS, else a one-line ValueError."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, numbers.Integral):
        raise ValueError(f"timesteps must be a whole number in 1..{MAX_TIMESTEPS}, got {timesteps!r}")
    if not 1 <= timesteps <= MAX_TIMESTEPS:
        why = "; rate coding gains nothing from more steps" if timesteps > MAX_TIMESTEPS else ""
        raise ValueError(f"timesteps must be in 1..{MAX_TIMESTEPS} (MAX_TIMESTEPS), got {int(timesteps)}{why}")
    return int(timesteps)


def quantize_input(inp, x: np.ndarray) -> np.ndarray:
    q = inp.levels
    return np.clip(np.rint(np.asarray(x, np.float64) / inp.scale * q), -q if inp.signed else 0, q).astype(np.int64)


def _normalized(inp, x, mode):
    if mode == "int":
        xq = quantize_input(inp, x)
        return xq, np.abs(xq).astype(np.float32) / np.float32(inp.levels), inp.levels
    xf = np.asarray(x, np.float64) / inp.scale
    return xf, np.minimum(np.abs(xf), 1.0).astype(np.float32), 1.0


def chunk_steps(batch: int, shape, budget: int = CHUNK_VALUES) -> int:
    """Timesteps per chunk so that one chunk of a batch holds about ``budget`` values (at least 1)."""
    return max(1, budget // max(1, batch * int(np.prod(shape, dtype=np.int64))))


def poisson_uniform_chunks(seed: int, sample_ids, timesteps: int, shape, chunk: int = None):
    """Yield (B, c, *shape) float32 uniforms for consecutive chunks of c <= ``chunk`` steps (T in all),
    one independent stream per sample index; concatenated they equal :func:`poisson_uniforms`."""
    shape = tuple(shape)
    gens = [np.random.default_rng([seed, int(i)]) for i in sample_ids]
    chunk = chunk or chunk_steps(len(gens), shape)
    for t0 in range(0, timesteps, chunk):
        u = np.empty((len(gens), min(chunk, timesteps - t0)) + shape, np.float32)
        for g, row in zip(gens, u):
            g.random(out=row, dtype=np.float32)
        yield u


def poisson_uniforms(seed: int, sample_ids, timesteps: int, shape) -> np.ndarray:
    """(B, T, *shape) float32 uniforms, one independent stream per sample index (O(T) memory:
    the simulators stream :func:`poisson_uniform_chunks` instead)."""
    parts = list(poisson_uniform_chunks(seed, sample_ids, timesteps, shape, max(1, timesteps)))
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(sample_ids), 0) + tuple(shape), np.float32)


def input_chunks(inp, x, timesteps: int, encoding: str = "constant", seed: int = 0, sample_ids=None,
                 mode: str = "int", chunk: int = None, dtype=None):
    """Yield the input layer's output as (c, B, *shape) arrays (int64 or float64, or ``dtype``,
    which must hold every value) for consecutive chunks of c <= ``chunk`` steps, T steps in all;
    memory is independent of T."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    base, prob, unit = _normalized(inp, x, mode)
    if dtype is not None:
        base = base.astype(dtype)
    chunk = chunk or chunk_steps(len(base), base.shape[1:])
    if encoding == "constant":
        for t0 in range(0, timesteps, chunk):
            yield np.broadcast_to(base, (min(chunk, timesteps - t0),) + base.shape)
        return
    ids = range(len(base)) if sample_ids is None else sample_ids
    spike = np.sign(base).astype(base.dtype) * unit  # the value a spike carries
    for u in poisson_uniform_chunks(seed, ids, timesteps, base.shape[1:], chunk):
        hit = u < prob.reshape((len(base), 1) + base.shape[1:])
        del u
        # (c, B, *shape) in C order, so each step is a contiguous (B, *shape) array
        yield np.ascontiguousarray(hit.swapaxes(0, 1)) * spike


def input_steps(inp, x, timesteps: int, encoding: str = "constant", seed: int = 0, sample_ids=None, mode: str = "int"):
    """Yield the input layer's output for t = 0..T-1 as (B, *shape) arrays (int64 or float64)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if encoding == "constant":
        base = _normalized(inp, x, mode)[0]
        for _ in range(timesteps):
            yield base
        return
    for c in input_chunks(inp, x, timesteps, encoding, seed, sample_ids, mode):
        yield from c
