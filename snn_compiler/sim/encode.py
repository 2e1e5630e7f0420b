"""Input encodings: ONE table (:data:`ENCODINGS`), used by every engine and backend.

Every engine, Lava's source and the TrueNorth tests read the input through :func:`input_chunks`
(or :func:`input_steps`): an encoding added to the table runs everywhere, bit for bit the same.

Notation. ``L = inp.levels``; ``x_q = quantize_input(inp, x)`` (integers in ``[-L or 0, L]``);
``a = |x_q|`` and ``s = sign(x_q)``. Step ``t = 0..T-1``. The integer network was normalised for
the **constant** encoding, an input current of ``x_q`` every step, so each entry states the mean
current per step it delivers relative to that.

    name       integer output x[t], |x[t]| <= L                 mean per step vs constant
    constant   x_q                                              1 (exact)
    poisson    s * L * [u[t] < a / L], u[t] uniform (seeded)    1 (in expectation)
    pso        s * 2**j * bit_j(a), j = k - 1 - (t mod k)       1/k (exactly x_q per period of k)
    burst      s * L: a burst of n at onset, then single (IB)   1 (charge conserved)
    ch         s * L in bursts of n (chattering)                1 (charge conserved)

``k = L.bit_length()`` (the input bits, less the sign bit), ``n = BURST_SPIKES``; each
encoder's docstring gives its equations. :func:`input_gain` says what gain the Input's
connections need for an encoding to deliver the constant drive (k for ``pso``, else 1);
:func:`is_static` and :func:`is_seeded` what engines may exploit (same value every step;
dependence on ``(seed, sample index)``). All are deterministic given ``(seed, sample index)``
(only ``poisson`` draws random numbers), and none depends on batching or on how the T steps are
cut into chunks (the burst neurons carry their state from chunk to chunk).

Float mode (the float SNN): the same encoding of ``x / scale`` with spikes of value 1 instead of
L: ``constant`` emits ``x / scale``; ``poisson`` fires with probability ``min(|x / scale|, 1)``;
``pso`` emits the integer mode's k-bit code divided by L (``x / scale`` rounded to k bits, the
code itself being the encoding); ``burst``/``ch`` run the same neuron on the real-valued drive
``a = min(|x / scale|, 1) * L`` and emit ``+-1``. On inputs that quantize exactly (``x / scale * L``
an integer) the float input is the integer input divided by L, step by step.

``T`` is at most :data:`MAX_TIMESTEPS` (:func:`check_timesteps`). Sequences (time-varying input). ``x`` of shape (N, T, *input shape) is a sequence: one frame
per step (spikes or graded currents), and the run takes T from the data; shapes decide, never a
guess (:mod:`.timesteps`: :func:`sequence_steps`, :func:`run_timesteps`). Frame t is quantized
by the static rule, per frame: ``x_q[t] = quantize_input(inp, x[:, t])`` (float: ``x[:, t] /
scale``). Encodings (:data:`SEQUENCE_ENCODINGS`): ``constant`` emits the frames as given,
``x[t] = x_q[t]``; ``poisson`` fires ``s[t] * L * [u[t] < |x_q[t]| / L]`` from the same
per-sample uniforms as a static sample (so a sequence of T equal frames encodes exactly as that
static sample). ``pso``, ``burst`` and ``ch`` code one value over several steps (a period of k
bits, a neuron's charge) and are refused for sequences. :func:`input_chunks` encodes a
sequence's first ``timesteps <= T`` frames; a run (:func:`run_timesteps`) takes all T.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .input_rule import FUSED_VALUES, input_levels, quantize_frames, quantize_input  # noqa: F401  (re-exported: the value rule)
from .streams import chunk_steps, poisson_uniform_chunks
from .timesteps import (DEFAULT_TIMESTEPS, MAX_TIMESTEPS, SEQUENCE_ENCODINGS, check_sequence_encoding,  # noqa: F401
                        check_timesteps, run_timesteps, sequence_steps)  # (re-exported: the run's T and data layout)

BURST_SPIKES = 3   # spikes in one burst of the ``burst`` (its first burst) and ``ch`` encodings


# ---- the encoders --------------------------------------------------------------------------------

@dataclass
class Source:
    """One batch of samples, normalised, as every encoder receives it.

    ``value``: what the constant encoding emits (``x_q``, or ``x / scale`` in float mode), in the
    output dtype; ``drive``: the magnitude in integer units, ``a = |x_q|`` (int64), or
    ``min(|x / scale|, 1) * L`` (float64); ``prob``: ``a / L`` as float32 (Poisson's firing
    probability); ``spike``: the signed value one spike carries (``s * L``, or ``s * 1.0``);
    ``levels``: L; ``mode``: "int" or "float"; ``dtype``: the output dtype."""
    value: np.ndarray
    drive: np.ndarray
    prob: np.ndarray
    spike: np.ndarray
    levels: int
    mode: str
    dtype: np.dtype
    seed: int
    ids: object

    @property
    def batch_shape(self):
        return self.value.shape


def _value(inp, x, mode, dtype=None) -> np.ndarray:
    """What the constant encoding emits: ``x_q`` (int64, or ``dtype``), or ``x / scale`` (float64) in float mode."""
    if mode == "int":
        return quantize_input(inp, x, np.int64 if dtype is None else dtype)
    if mode == "float":
        return np.asarray(x, np.float64) / inp.scale
    raise ValueError(f"mode must be int or float, got {mode!r}")


def _source(inp, x, mode, dtype, seed, sample_ids) -> Source:
    L = int(inp.levels)
    value = _value(inp, x, mode)
    if mode == "int":
        drive = np.abs(value)
        prob = drive.astype(np.float32) / np.float32(L)
        unit = L
    else:
        mag = np.minimum(np.abs(value), 1.0)
        prob = mag.astype(np.float32)
        drive = mag * L
        unit = 1.0
    dtype = np.dtype(dtype if dtype is not None else value.dtype)
    value = value.astype(dtype, copy=False)
    spike = (np.sign(value) * unit).astype(dtype)
    ids = range(len(value)) if sample_ids is None else sample_ids
    return Source(value, drive, prob, spike, L, mode, dtype, seed, ids)


def _spans(timesteps, chunk):
    for t0 in range(0, timesteps, chunk):
        yield t0, min(chunk, timesteps - t0)


def constant(src: Source, timesteps: int, chunk: int):
    """Constant current (an analog input): ``x[t] = x_q``.

    Mean per step: ``x_q``, the current the network was normalised for. Float: ``x / scale``."""
    for _, c in _spans(timesteps, chunk):
        yield np.broadcast_to(src.value, (c,) + src.batch_shape)


def poisson(src: Source, timesteps: int, chunk: int):
    """Poisson (Bernoulli per step) spikes of value ``s * L``:

        x[t] = s * L * [u[t] < a / L],   u[t] ~ U[0, 1) float32

    ``u`` comes from ``numpy.random.default_rng([seed, sample_index])``: sample k's uniforms are
    the first ``T * size`` float32 draws of its own generator, step after step (the (T, *shape)
    block ``rng.random((T, *shape), dtype=float32)`` would hold), so a sample's spikes do not
    depend on batching, on the backend, or on how many steps are drawn at once.

    Mean per step: ``x_q`` in expectation (variance ``a (L - a)`` per step). Float: spikes of
    value ``+-1`` with probability ``min(|x / scale|, 1)``."""
    shape = src.batch_shape[1:]
    prob = src.prob.reshape((len(src.prob), 1) + shape)
    for u in poisson_uniform_chunks(src.seed, src.ids, timesteps, shape, chunk):
        hit = u < prob
        del u
        # (c, B, *shape) in C order, so each step is a contiguous (B, *shape) array
        yield np.ascontiguousarray(hit.swapaxes(0, 1)) * src.spike


def pso(src: Source, timesteps: int, chunk: int):
    """Phase-shift oscillation (Kim et al. 2018, "Deep neural networks with weighted spikes";
    ANNarchy's PSO): weighted spikes whose weight follows the phase ``p = t mod k``,

        Pi(t) = 2**-(1 + t mod k),   k = L.bit_length()  (the input bits; L = 2**k - 1)
        x[t]  = s * 2**k * Pi(t) * b[t] = s * 2**j * bit_j(a),   j = k - 1 - (t mod k)

    i.e. Kim's input neuron with threshold ``2**k * Pi(t)``: its membrane is set to ``a`` at the
    start of every period and it fires (weight ``2**k * Pi(t)``, subtracted from the membrane)
    whenever it reaches the threshold, which emits the binary code of ``a``, most significant
    bit first. Every value is 0 or a power of two ``<= 2**(k-1) <= L``.

    Mean per step: ``x_q / k``. Each full period of k steps sums to exactly ``x_q``, the current
    of ONE constant step spread over k steps: the first layer gets 1/k of the drive it was
    normalised for, against its full bias, and a converted network loses its accuracy (the
    8-bit digits CNN of ``snn_compiler.demo``: 10% at any T). No encoding within ``+-L`` can deliver
    more: a mean of ``x_q`` at ``x_q = L`` needs L at every step. So the network must apply a
    gain of k to the Input's connections (:func:`input_gain`; with k a power of two, exactly, as
    ``weight_exp + log2 k``): the digits CNN is then at 97.0 / 99.4 / 99.4% at T = 8 / 16 / 64
    (constant: 99.6%). Use T a multiple of k: a cut period delivers only its high bits.
    Values are 0 or powers of two (a shift, not a multiply, per synapse event), not 0/L, so
    TrueNorth cannot take them. Float: the same code times ``k / L`` (``x / scale`` rounded to k
    bits, the gain applied: a float has no register to overflow), so the float SNN needs no
    recompile. The integer SNN takes the gain in its weights: compile with ``--encoding pso``."""
    k = src.levels.bit_length()
    code = src.drive if src.mode == "int" else np.rint(src.drive).astype(np.int64)
    sign = np.sign(src.value).astype(np.int64)
    lead = (1,) * code.ndim
    for t0, c in _spans(timesteps, chunk):
        j = (k - 1 - np.arange(t0, t0 + c) % k).reshape((c,) + lead)
        weighted = ((code >> j) & 1) << j  # (c, B, *shape) int64
        if src.mode == "int":
            yield (weighted * sign).astype(src.dtype)
        else:
            yield (weighted * sign * (k / src.levels)).astype(src.dtype)


def _floor_charge(a, v0, unit, t0: int, c: int, back: int) -> np.ndarray:
    """F(t) = max(0, floor((v0 + a (t + 1)) / unit)) for t = t0 - back .. t0 + c - 1, as a
    (back + c, B, *shape) array: how many ``unit``s of charge a neuron starting at v0 and driven
    by ``a`` holds by step t (0 before step 0). Exact in int64 (a <= L < 2**16, t <= MAX_TIMESTEPS);
    in float mode exact whenever the drive is integral."""
    t = np.arange(t0 - back, t0 + c).reshape((-1,) + (1,) * a.ndim)
    return np.maximum((v0 + a * (t + 1)) // unit, 0)


def _bursts(src: Source, timesteps: int, chunk: int, spikes_at):
    """Yield chunks of ``src.spike * s[t]``, with s = spikes_at(t0, c) a (c, B, *shape) bool array."""
    for t0, c in _spans(timesteps, chunk):
        s = spikes_at(t0, c)
        out = np.empty(s.shape, src.dtype)
        np.multiply(s, src.spike, out=out, casting="unsafe")
        yield out


def burst(src: Source, timesteps: int, chunk: int):
    """Intrinsically bursting (IB) input neurons (Izhikevich 2003; ANNarchy's IB input): a burst
    of n spikes at onset, then single (tonic) spikes, at a rate proportional to the input.

    An integer integrate-and-fire neuron (threshold L, the charge of one spike) driven by
    ``a = |x_q|``, whose first spike is a burst (n = ``BURST_SPIKES``)::

        v[-1] = L // 2,  r[-1] = 0,  m[-1] = n      (membrane, spikes left in the burst, next burst size)
        v[t]  = v[t-1] + a
        if r[t-1] == 0 and v[t] >= L:   r = m;  v[t] -= m * L;  m = 1
        s[t]  = r > 0;   r -= s[t]
        x[t]  = s * L * s[t]

    The burst is paid for afterwards: its n spikes take the charge of n from the membrane
    (which goes negative, down to ``-(n-1) L``), so the neuron is silent until it has integrated
    that charge back, then fires one spike per L of charge. (Izhikevich's quadratic model itself
    is not used: its rate is not linear in the input current, and the network was normalised
    for a linear rate code; the pattern - an immediate burst, then tonic spikes - is kept.)

    Mean per step: ``x_q``. Charge is conserved (one spike carries L): after t steps the neuron
    has emitted ``(L // 2 + a (t + 1) - v[t]) / L`` spikes less those of its burst still pending,
    with ``-(n-1) L <= v[t] < L``; once the burst is paid back that is ``a (t + 1) / L`` rounded.
    A weak input that cannot pay the burst back within T is over-counted by up to n - 1 spikes.
    Values are 0 or ``s * L`` (exact on TrueNorth). Float: the same neuron on the real drive
    ``a = min(|x / scale|, 1) * L`` with spikes ``+-1``.

    Computed in closed form (so a chunk of steps at once, from any step on): with
    ``F(t) = floor((L // 2 + a (t + 1)) / L)`` (0 for t < 0), the burst spans the n steps from
    the first t with ``F(t) >= 1``; it ends with ``v < L`` (no backlog), after which the neuron is
    an integrate-and-fire neuron on the same charge, so
    ``s[t] = (F(t) >= 1 > F(t - n))  or  F(t) > max(F(t - 1), n)``
    (tests/test_encodings.py checks it against the recursion for every drive)."""
    L, n = src.levels, BURST_SPIKES

    def spikes_at(t0, c):
        F = _floor_charge(src.drive, L // 2, L, t0, c, n)
        return ((F[n:] >= 1) & (F[:-n] < 1)) | (F[n:] > np.maximum(F[n - 1:-1], n))
    return _bursts(src, timesteps, chunk, spikes_at)


def ch(src: Source, timesteps: int, chunk: int):
    """Chattering (CH) input neurons (Izhikevich 2003; ANNarchy's CH input): repeated bursts of
    n closely spaced spikes (n = ``BURST_SPIKES``), at a rate proportional to the input.

    An integer integrate-and-fire neuron with threshold ``n L`` (the charge of a burst) that
    fires each time a burst of n spikes on consecutive steps::

        v[-1] = (n L) // 2,  r[-1] = 0
        v[t]  = v[t-1] + a
        if r[t-1] == 0 and v[t] >= n L:   r = n;  v[t] -= n L
        s[t]  = r > 0;   r -= s[t]
        x[t]  = s * L * s[t]

    Since ``a <= L`` a burst always ends before the membrane next reaches ``n L`` (so the
    ``r == 0`` test never delays one): bursts are the spikes of an integrate-and-fire neuron
    with threshold ``n L``, each stretched over n steps.

    Mean per step: ``x_q`` (charge conserved, ``0 <= v[t] < n L``: the committed bursts are
    ``(v[-1] + a (t + 1)) / (n L)`` rounded down, i.e. ``a (t + 1) / (n L)`` rounded); spike
    counts move in steps of n, less a burst cut by the end of the run. Float: as :func:`burst`.

    Closed form: with ``C(t) = floor(((n L) // 2 + a (t + 1)) / (n L))`` (0 for t < 0), the
    bursts begun by step t, ``s[t] = C(t) > C(t - n)`` (a burst begun in the last n steps)."""
    L, n = src.levels, BURST_SPIKES

    def spikes_at(t0, c):
        C = _floor_charge(src.drive, (n * L) // 2, n * L, t0, c, n)
        return C[n:] > C[:-n]
    return _bursts(src, timesteps, chunk, spikes_at)


class _Table(dict):
    """name -> encoder; iterates, tests membership and prints (in error messages) as its names."""

    def __contains__(self, name):
        try:
            return dict.__contains__(self, name)
        except TypeError:  # an unhashable "name" is simply not one
            return False

    def __repr__(self):
        return repr(tuple(self))

    __str__ = __repr__


# THE table of input encodings. An encoder takes (Source, timesteps, chunk) and yields the input
# layer's output as (c, B, *shape) arrays of Source.dtype for consecutive chunks of c <= chunk
# steps, T in all; in integer mode every value is an integer with |value| <= inp.levels (the
# engines' exactness proofs rest on it).
ENCODINGS = _Table(constant=constant, poisson=poisson, pso=pso, burst=burst, ch=ch)


# What engines may ask of an encoding besides its steps (attributes of the encoder; defaults in
# the helpers below): ``static`` - the same value every step (engines compute what it alone
# feeds once); ``seeded`` - depends on (seed, sample index); ``gain(inp)`` - see input_gain.
constant.static = True
poisson.seeded = True
pso.gain = lambda inp: int(inp.levels).bit_length()


def is_static(encoding: str) -> bool:
    """True when ``encoding`` emits the same value at every step (``constant``)."""
    _check(encoding)
    return bool(getattr(ENCODINGS[encoding], "static", False))


def is_seeded(encoding: str) -> bool:
    """True when a sample's input depends on the seed and its sample index (``poisson``); the
    others depend on the sample's values alone."""
    _check(encoding)
    return bool(getattr(ENCODINGS[encoding], "seeded", False))


def input_gain(encoding: str, inp) -> int:
    """How many times less current per step than the constant encoding ``encoding`` delivers on
    average (1, or k = ``inp.levels.bit_length()`` for ``pso``): the factor the connections out
    of the Input need for the network to see the drive it was normalised for. The quantize pass
    puts it into those connections' integer weights when compiling for ``encoding``
    (``CompileConfig.encoding``, recorded as the artifact's ``input_gain``); the float encoders
    apply it themselves."""
    _check(encoding)
    return int(getattr(ENCODINGS[encoding], "gain", lambda inp: 1)(inp))


def check_gain(graph, encoding: str) -> None:
    """Refuse to run an integer ``graph`` with an ``encoding`` whose gain its weights do not carry."""
    from ..ir import input_node, op_of
    built = int(graph.graph.get("snnc", {}).get("input_gain", 1))
    need = input_gain(encoding, op_of(graph, input_node(graph)))
    if built != need:
        raise ValueError(f"the network was compiled for an input gain of {built} "
                         f"({'--encoding pso' if built > 1 else 'a rate encoding'}), --encoding {encoding} needs "
                         f"{need}: recompile with --encoding {encoding}")


def _check(encoding):
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")


def input_chunks(inp, x, timesteps: int, encoding: str = "constant", seed: int = 0, sample_ids=None,
                 mode: str = "int", chunk: int = None, dtype=None):
    """Yield the input layer's output as (c, B, *shape) arrays (int64 or float64, or ``dtype``,
    which must hold every value) for consecutive chunks of c <= ``chunk`` steps, T steps in all;
    memory is independent of T. ``encoding``: a name in :data:`ENCODINGS`."""
    _check(encoding)
    if is_sequence(inp, x):
        yield from _sequence_chunks(inp, x, timesteps, encoding, seed, sample_ids, mode, chunk, dtype)
        return
    src = _source(inp, x, mode, dtype, seed, sample_ids)
    chunk = chunk_steps(len(src.value), src.batch_shape[1:]) if chunk is None else chunk
    yield from ENCODINGS[encoding](src, timesteps, chunk)


def is_sequence(inp, x) -> bool:
    """By the number of axes alone (the engines check whole shapes first: :func:`sequence_steps`)."""
    return np.ndim(x) == len(inp.shape) + 2


def _sequence_chunks(inp, x, timesteps, encoding, seed, sample_ids, mode, chunk, dtype):
    """:func:`input_chunks` of a sequence (N, T, *shape): its first ``timesteps`` frames, each
    encoded by the static rule (module docstring); frames are quantized a chunk at a time."""
    check_sequence_encoding(encoding)
    x = np.asarray(x)
    T = sequence_steps(inp.shape, x)
    n, shape = len(x), x.shape[2:]
    if timesteps > T:
        raise ValueError(f"the input is a sequence of {T} steps per sample; {timesteps} steps cannot be run from it")
    chunk = chunk_steps(n, shape) if chunk is None else chunk
    ids = range(n) if sample_ids is None else sample_ids
    uniforms = poisson_uniform_chunks(seed, ids, timesteps, shape, chunk) if encoding == "poisson" else None
    for t0, c in _spans(timesteps, chunk):
        if uniforms is None and mode == "int":  # the value alone, read from x in place
            yield quantize_frames(inp, x, t0, c, np.int64 if dtype is None else dtype)
            continue
        frames = np.swapaxes(np.asarray(x[:, t0:t0 + c]), 0, 1)  # (c, N, *shape)
        if uniforms is None:  # the value alone (Source's other fields serve the coded encodings)
            value = _value(inp, frames, mode, dtype)
            yield np.ascontiguousarray(value, dtype=value.dtype if dtype is None else dtype)
        else:  # the static poisson's test, u < a / L, with this step's a
            src = _source(inp, frames, mode, dtype, seed, ids)
            yield (np.swapaxes(next(uniforms), 0, 1) < src.prob) * src.spike


def input_steps(inp, x, timesteps: int, encoding: str = "constant", seed: int = 0, sample_ids=None, mode: str = "int"):
    """Yield the input layer's output for t = 0..T-1 as (B, *shape) arrays (int64 or float64)."""
    _check(encoding)
    if is_static(encoding) and not is_sequence(inp, x):  # one step, repeated
        for first in input_chunks(inp, x, min(timesteps, 1), encoding, seed, sample_ids, mode, 1):
            for _ in range(timesteps):
                yield first[0]
        return
    for c in input_chunks(inp, x, timesteps, encoding, seed, sample_ids, mode):
        yield from c
