"""The random streams and chunking the encoders share: one Poisson uniform stream per sample,
drawn a chunk of steps at a time so memory does not grow with T (:mod:`.encode`)."""
from __future__ import annotations

import numpy as np

# Uniforms drawn at once per batch (float32 values, 4 MiB): bounds the encoder's memory.
CHUNK_VALUES = 1 << 20


def chunk_steps(batch: int, shape, budget: int = CHUNK_VALUES) -> int:
    """Timesteps per chunk so that one chunk of a batch holds about ``budget`` values (at least 1)."""
    return max(1, budget // max(1, batch * int(np.prod(shape, dtype=np.int64))))


def poisson_uniform_chunks(seed: int, sample_ids, timesteps: int, shape, chunk: int = None):
    """Yield (B, c, *shape) float32 uniforms for consecutive chunks of c <= ``chunk`` steps (T in all),
    one independent stream per sample index (seeded by ``[seed, sample index]``: the same
    stream whatever the batch or the chunking)."""
    shape = tuple(shape)
    gens = [np.random.default_rng([seed, int(i)]) for i in sample_ids]
    chunk = chunk_steps(len(gens), shape) if chunk is None else chunk
    for t0 in range(0, timesteps, chunk):
        u = np.empty((len(gens), min(chunk, timesteps - t0)) + shape, np.float32)
        for g, row in zip(gens, u):
            g.random(out=row, dtype=np.float32)
        yield u
