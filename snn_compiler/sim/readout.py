"""Read-outs: what a run's output layer decides, the same for every engine and for Lava.

``membrane`` and ``count`` read the output after T steps, ``membrane-sum`` and ``membrane-max``
fold a non-spiking output's membrane over every step (:func:`fold_membrane`); under the latency read-outs
``first-spike`` and ``k-spikes`` the first output neuron to reach K spikes decides a sample
(:func:`decides`, :func:`readout_decisions`) and a decided sample is simulated no further.
Per-step records (``record_steps``, :func:`step_buffers`): chosen layers' spikes at every step.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

READOUTS = ("membrane", "count", "first-spike", "k-spikes", "membrane-sum", "membrane-max")
MEMBRANE_READOUTS = ("membrane", "membrane-sum", "membrane-max")  # the output layer does not spike: its membrane is read
OVER_TIME = ("membrane-sum", "membrane-max")  # folded over all T steps: the reference engines (numpy, numba, torch) only
DECISION_READOUTS = ("first-spike", "k-spikes")  # latency read-outs: a sample is decided by its first K output spikes
# Per-step spike records hold N x T x neurons bytes in memory at once (one uint8 per spike slot);
# beyond this bound a run is refused instead of allocated: record fewer layers, samples or steps.
RECORD_STEPS_MAX_BYTES = 2 << 30


def decides(counts, k):
    """Whether output spike ``counts`` (last axis: the output neurons) decide a sample: some neuron
    has reached ``k`` spikes. Counts grow by at most one per step, so the first step at which this
    holds is the decision step. Written with operators numpy, torch and numba share: every engine
    and Lava's process model call it."""
    return (counts >= k).sum(-1) > 0


def fold_start(readout, integer):
    """The value an over-time read-out's fold starts from (before step 0): 0 for a sum, the
    lowest value of the membrane's type for a maximum."""
    if readout == "membrane-sum":
        return 0
    return int(np.iinfo(np.int64).min) if integer else -np.inf


def fold_membrane(readout, acc, v):
    """``acc`` (the fold so far, int64 or float64) takes in one more step's output membrane ``v``,
    in place: ``membrane-sum`` adds it, ``membrane-max`` keeps the larger. Written with operators
    numpy and torch share (``v`` of ``acc``'s dtype): every engine calls it after every step."""
    if readout == "membrane-sum":
        acc += v
    else:
        up = v > acc
        acc[up] = v[up]


def check_readout(readout, k=None, over_time=False) -> Optional[int]:
    """The output spike count K that decides a sample: 1 for ``first-spike``, ``k`` for
    ``k-spikes``, None for the others; else a one-line ValueError. ``over_time``: the caller
    folds the membrane over every step (:data:`OVER_TIME`); a backend that does not is refused them."""
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    if readout in OVER_TIME and not over_time:
        raise ValueError(f"readout {readout!r} runs on the reference engines (numpy, numba, torch) and Lava only so far; "
                         f"this backend reads {', '.join(r for r in READOUTS if r not in OVER_TIME)}")
    if readout == "k-spikes":
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"readout 'k-spikes' needs k, a whole number >= 1, got {k!r}")
        return int(k)
    if k is not None and not (readout == "first-spike" and not isinstance(k, bool) and k == 1):
        raise ValueError(f"k applies to readout 'k-spikes' only (readout {readout!r} got k={k!r})")
    return 1 if readout == "first-spike" else None


def readout_decisions(counts, membrane, step, k):
    """Predictions of a latency read-out from each sample's output state where it stopped.

    ``counts`` (N, outputs): output spike counts at the decision step (0-based ``step`` >= 0), or
    after the last step for an undecided sample (``step`` -1); ``membrane`` (N, outputs): the
    membrane at the decision step before reset (the value that crossed the threshold), or the
    final membrane of an undecided sample. A decided sample predicts the neuron that reached K
    spikes at its decision step (the neurons with ``counts >= k``); several such neurons are a tie
    (``tied``), broken by the higher membrane, then the lower index. An undecided sample predicts
    exactly what the ``count`` read-out would: most spikes, ties by final membrane.
    Returns (predictions int64, tied bool, decision_time int64: step + 1, or -1)."""
    step = np.asarray(step, np.int64)
    counts = np.asarray(counts).reshape(len(step), -1)
    membrane = np.asarray(membrane).reshape(len(step), -1)
    decided = step >= 0
    cand = counts >= k
    tied = decided & (cand.sum(axis=1) > 1)
    low = np.iinfo(np.int64).min if membrane.dtype.kind in "iu" else -np.inf
    best = np.argmax(np.where(cand, membrane, low), axis=1)      # first maximum: the lower index
    fallback = np.lexsort((membrane, counts))[:, -1] if counts.size else np.zeros(len(step), np.int64)
    preds = np.where(decided, best, fallback).astype(np.int64)
    return preds, tied, np.where(decided, step + 1, -1).astype(np.int64)


class Decisions:
    """One batch's latency read-out (K output spikes decide a sample), filled by either engine.

    Per sample (batch row): ``step`` (0-based decision step, -1 undecided), ``counts`` and
    ``membrane`` (see :func:`readout_decisions`). With ``stop`` a sample leaves the batch once
    decided (``rows``: the rows still simulated); ``totals``: every spiking layer's spikes up to
    each sample's last simulated step; ``sample_steps``: samples x timesteps the engine ran.
    """

    def __init__(self, n, n_out, k, stop, timesteps, mode="int"):
        self.k, self.stop, self.timesteps = k, stop, timesteps
        self.step = np.full(n, -1, np.int64)
        self.counts = np.zeros((n, n_out), np.int64)
        self.membrane = np.zeros((n, n_out), np.int64 if mode == "int" else np.float64)
        self.rows = np.arange(n)
        self.totals = {}
        self.sample_steps = 0

    def record(self, rows, step, counts, membrane):
        """Samples ``rows`` decided at ``step`` (scalar or per row) with these output states."""
        self.step[rows] = step
        self.counts[rows] = counts.reshape(len(rows), -1)
        self.membrane[rows] = membrane.reshape(len(rows), -1)

    def finish(self, counts, v):
        """The still simulated rows' final output ``counts`` and membrane ``v``: kept where undecided."""
        und = self.step[self.rows] < 0
        if und.any():
            self.record(self.rows[und], -1, counts.reshape(len(self.rows), -1)[und], v.reshape(len(self.rows), -1)[und])

    def add_total(self, layer, n):
        self.totals[layer] = self.totals.get(layer, 0) + int(n)

    def steps_run(self) -> np.ndarray:
        """(N,) timesteps each sample was simulated for: its decision time when it stopped there, else T."""
        return np.where((self.step >= 0) & self.stop, self.step + 1, self.timesteps)

    def observe(self, t, counts, pre, drop) -> bool:
        """After step ``t``: record the samples that ``counts`` (rows still simulated, outputs
        flattened; numpy) decide, with their membranes before reset ``pre``; with ``stop``,
        ``drop(keep)`` (the engine's) removes the decided rows from the engine's states. False
        once no sample is left to simulate."""
        new = (self.step[self.rows] < 0) & decides(counts, self.k)
        if not new.any():
            return True
        self.record(self.rows[new], t, counts[new], pre[new])
        if self.stop:
            drop(~new)
            self.rows = self.rows[~new]
        return len(self.rows) > 0


def check_record_steps(graph, layers, readout, n_samples, timesteps) -> tuple:
    """The layers whose per-step spikes a run records (``record_steps``), validated: neuron
    layers of ``graph`` (the read-out under a membrane read-out: its membrane, 8 bytes a value),
    their N x T x neurons values within :data:`RECORD_STEPS_MAX_BYTES`; else a one-line ValueError."""
    from ..ir import op_of
    from ..ir import ops as O
    if isinstance(layers, str) or not all(isinstance(n, str) for n in layers):
        raise ValueError(f"record_steps must be a list of layer names, got {layers!r}")
    neurons = [n for n in graph if isinstance(op_of(graph, n), O.NEURONS)]
    for n in layers:
        if n not in neurons:
            why = "is not a neuron layer" if n in graph else "is not in the network"
            raise ValueError(f"cannot record layer {n!r}: it {why}; neuron layers: {', '.join(neurons)}")
    size = n_samples * timesteps * sum(int(np.prod(graph.nodes[n]["shape"])) * _step_dtype(graph, n, readout).itemsize
                                       for n in set(layers))
    if size > RECORD_STEPS_MAX_BYTES:
        raise ValueError(f"recording {', '.join(layers)} for {n_samples} samples x {timesteps} steps needs "
                         f"{size / 2**30:.1f} GiB, over the {RECORD_STEPS_MAX_BYTES / 2**30:g} GiB bound: record "
                         f"fewer layers, samples or steps")
    return tuple(dict.fromkeys(layers))


def _step_dtype(graph, n, readout, mode="int"):
    """What a per-step record of layer ``n`` holds: spikes (uint8), or the membrane of a read-out
    that does not spike (int64; float64 in the float SNN)."""
    from ..ir import op_of
    from ..ir import ops as O
    if O.is_readout(op_of(graph, n)) and readout in MEMBRANE_READOUTS:
        return np.dtype(np.int64 if mode == "int" else np.float64)
    return np.dtype(np.uint8)


def step_buffers(graph, layers, n_samples, timesteps, readout, mode) -> dict:
    """``{layer: (N, T, neurons)}`` zeros an engine fills with each step's spikes (uint8), or
    the membrane after each step of a read-out that does not spike, neurons flattened in torch's
    (C, H, W) order."""
    return {n: np.zeros((n_samples, timesteps, int(np.prod(graph.nodes[n]["shape"]))),
                        _step_dtype(graph, n, readout, mode)) for n in layers}
