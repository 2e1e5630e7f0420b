"""How many steps a run takes, and whether its data is a sequence (re-exported by :mod:`.encode`).

Static samples ``x`` (N, *input shape) are encoded for ``timesteps`` steps (DEFAULT_TIMESTEPS when
none is given). A sequence ``x`` (N, T, *input shape), one frame per step, sets T itself: a
``timesteps`` that disagrees is refused, as is an encoding that codes one value over several
steps (``pso``, ``burst``, ``ch``; :data:`SEQUENCE_ENCODINGS` take frames). The number of axes
decides which it is, never a guess; any other shape is refused in one line. How a frame is
encoded: :mod:`.encode`.
"""
from __future__ import annotations

import numbers

import numpy as np

# The largest number of timesteps a simulation accepts. Rate coding resolves 1/T: T = 10,000
# resolves 1e-4, finer than a 13-bit activation (1/8191), so more steps buy no accuracy, while
# 1,000 MNIST samples at T = 10,000 already take ~7 min on the numba engine and ~8 h on Lava's
# CPU simulator (784-256-128-10 MLP, 2 cores): a larger T is a typo, not an experiment.
MAX_TIMESTEPS = 10_000

# The T a run of static samples takes when none is given (a sequence's T comes from its data).
DEFAULT_TIMESTEPS = 32

# The encodings that take a sequence, frame by frame (:mod:`.encode`'s docstring).
SEQUENCE_ENCODINGS = ("constant", "poisson")


def check_timesteps(timesteps) -> int:
    """``timesteps`` as an int in 1..MAX_TIMESTEPS, else a one-line ValueError."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, numbers.Integral):
        raise ValueError(f"timesteps must be a whole number in 1..{MAX_TIMESTEPS}, got {timesteps!r}")
    if not 1 <= timesteps <= MAX_TIMESTEPS:
        why = "; rate coding gains nothing from more steps" if timesteps > MAX_TIMESTEPS else ""
        raise ValueError(f"timesteps must be in 1..{MAX_TIMESTEPS} (MAX_TIMESTEPS), got {int(timesteps)}{why}")
    return int(timesteps)


def sequence_steps(shape, x):
    """None when ``x`` holds static samples (N, *shape), T when it is a sequence (N, T, *shape);
    else a one-line ValueError. The number of axes decides: input shape (F,) takes (N, F) or
    (N, T, F); (C, H, W) takes (N, C, H, W) or (N, T, C, H, W)."""
    shape, got = tuple(int(d) for d in shape), tuple(np.shape(x))
    if got[1:] == shape:
        return None
    if len(got) == len(shape) + 2 and got[2:] == shape:
        return got[1]
    dims = ", ".join(map(str, shape))
    raise ValueError(f"input data has shape {got}; the network takes samples (N, {dims}) or sequences (N, T, {dims})")


def run_timesteps(shape, x, timesteps=None, encoding: str = "constant") -> int:
    """The T of a run on ``x``: a sequence's own T (``timesteps`` None or equal to it, and an
    encoding in :data:`SEQUENCE_ENCODINGS`), else ``timesteps`` (None: DEFAULT_TIMESTEPS), checked."""
    T = sequence_steps(shape, x)
    if T is None:
        return check_timesteps(DEFAULT_TIMESTEPS if timesteps is None else timesteps)
    if timesteps is not None and not (isinstance(timesteps, numbers.Integral) and timesteps == T):
        raise ValueError(f"the input is a sequence of {T} steps per sample; timesteps {timesteps!r} disagrees "
                         f"(a sequence sets T: leave timesteps out)")
    check_sequence_encoding(encoding)
    return check_timesteps(T)


def check_sequence_encoding(encoding) -> None:
    """Refuse (one line) an ``encoding`` that cannot take a sequence."""
    if not isinstance(encoding, str) or encoding not in SEQUENCE_ENCODINGS:
        raise ValueError(f"encoding {encoding!r} cannot take a sequence, one frame per step (pso, burst and ch code "
                         f"one value over several steps); use one of {SEQUENCE_ENCODINGS}")


def check_run_data(shape, x, timesteps, encoding, values=True):
    """(x, T, sequence): ``x`` a finite numeric array of static samples (N, *shape) or a sequence
    (N, T, *shape), and the run's T (:func:`run_timesteps`), else a one-line ValueError. ``values``
    False leaves the values' check (data.check_values) to the caller (simulate: to the kernel reading them)."""
    x = np.asarray(x)
    if x.size == 0 and x.ndim != len(shape) + 2:
        x = x.reshape((0,) + tuple(shape))
    if x.size and x.dtype.kind not in "biuf":
        raise ValueError(f"input data must be numbers, got dtype {x.dtype}")
    T = run_timesteps(shape, x, timesteps, encoding)
    if values and x.dtype.kind == "f":
        from ..data import check_values  # the one rule for data values, files and arrays alike
        check_values("input data", x)
    return x, T, sequence_steps(shape, x) is not None
