"""The one emulator: an IR graph run as the ANN, as a float SNN or as the bit-exact integer SNN.

The integer mode is the definition of the hardware semantics (docs/DESIGN.md): logical timestep
t flows through the whole graph in topological order; neurons follow the one update rule of
:mod:`snn_compiler.ir.neuron` (its ``int_step`` and ``float_step``). Integer weighted ops run through BLAS in the narrowest float
type proved exact for their worst-case sums (see :mod:`.kernels`).

Read-outs (:data:`READOUTS`): ``membrane`` and ``count`` after T steps, ``membrane-sum`` and
``membrane-max`` over all T steps (:func:`.readout.fold_membrane`), and the latency read-outs
``first-spike`` and ``k-spikes``, where the first output neuron to reach K spikes decides a sample
(:func:`readout_decisions`) and a decided sample is simulated no further.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from ..ir import input_node
from ..ir import ops as O
from ..ir import neuron as N
from ..progress import bar as progress_bar
from ..ir import kernels
from . import heap
from .plan import delay_lines
from .ann_reading import check_ann_reading, iter_ann, run_ann  # noqa: F401  (re-exported: the ANN reading)
from .readout import (READOUTS, MEMBRANE_READOUTS, OVER_TIME, Decisions, check_readout, check_record_steps,  # noqa: F401
                      fold_membrane, fold_start, readout_decisions, step_buffers)  # noqa: F401  (READOUTS: re-exported)
from .encode import ENCODINGS, MAX_TIMESTEPS, check_gain, input_steps  # noqa: F401  (MAX_TIMESTEPS: re-exported)
from .timesteps import check_run_data

MODES = ("int", "float")


@dataclass
class SimResult:
    """What a backend returns. ``scores`` (N, outputs) float64: the read-out's quantity
    (``membrane``: v[T-1]; ``membrane-sum``/``-max``: sum/max of v over T; ``count``: spike counts; ``first-spike``/``k-spikes``: the output spike
    counts at the step the sample was decided, or over all T steps when it was not).
    ``predictions`` (N,) int64. ``rates``: neuron layer -> mean spikes per neuron per simulated step.
    ``counts``: layer -> (N, *shape) spike counts (record=True). Latency read-outs only:
    ``decision_time`` (N,) int64, the number of timesteps a sample needed to be decided (1..T; the
    deciding spike fell on 0-based step ``decision_time - 1``) or -1 when undecided after T steps;
    ``tied`` (N,) bool, several output neurons reached K spikes at that same step. ``steps``
    (``record_steps``): layer -> (N, T, neurons) uint8, each step's spikes, neurons flattened in
    torch's (C, H, W) order (summed over T they equal ``counts``); a membrane read-out's layer:
    its membrane after each step (int64; float64 in float mode)."""
    scores: np.ndarray                        # (N, outputs): membrane value or spike count
    predictions: np.ndarray                   # (N,)
    rates: Dict[str, float]                   # neuron layer -> mean spikes per neuron per step
    counts: Optional[Dict[str, np.ndarray]] = None   # layer -> (N, *shape) spike counts (record=True)
    decision_time: Optional[np.ndarray] = None       # (N,) int64 steps to the decision, -1: undecided
    tied: Optional[np.ndarray] = None                # (N,) bool: the decision was a tie, broken by membrane
    steps: Optional[Dict[str, np.ndarray]] = None    # layer -> (N, T, neurons) spikes (or membrane) per step


# ---- SNN readings ------------------------------------------------------------------------------

def _weighted(plan, n, op, x):
    w = plan.weights[n]
    x = x.astype(w.dtype, copy=False)
    if isinstance(op, O.Dense):
        y = kernels.dense(x, w)
    else:
        y = op.apply(x, w)
    if plan.mode == "int":
        return y.astype(np.int64)
    return O.add_bias(op, y)


def _pool(plan, op, x):
    """A synaptic pool: the window average in float mode, the exact window sum in integer mode."""
    y = kernels.avg_pool2d(x.astype(np.float64), op.kernel_size, op.stride, op.padding)
    if plan.mode == "int":
        return np.rint(y * (op.kernel_size[0] * op.kernel_size[1])).astype(np.int64)
    return y


class _Neurons:
    """State of one neuron layer for one batch; steps through :mod:`snn_compiler.ir.neuron`."""

    def __init__(self, plan, n, op, batch, spiking):
        shape = plan.graph.nodes[n]["shape"]
        self.spiking, self.plan, self.op = spiking, plan, op
        dtype = np.int64 if plan.mode == "int" else np.float64
        self.v = np.full((batch,) + shape, N.initial_v(op, plan.mode, plan.v_half, spiking), dtype)
        self.u = np.zeros_like(self.v) if op.decay_u != N.DECAY_ONE else None
        if plan.mode == "int":
            self.params = N.IntParams.of(op, shape)
        else:
            self.beta = N.beta_of(op, shape)
        self.count = np.zeros((batch,) + shape, np.int64)
        self.track = False   # keep ``pre``, this step's membrane before reset (a latency read-out's tie-break)
        self.pre = None

    def step(self, current):
        if self.track:  # this step's membrane before reset: a latency read-out's tie-break
            self.pre = np.empty_like(self.v)
        if self.plan.mode == "int":
            s = N.int_step(self.v, self.u, current, self.params, self.spiking, self.pre)
        else:
            s = N.float_step(self.v, self.u, current, self.beta, self.op.decay_u, self.op.reset == "subtract",
                             self.spiking, self.pre)
        if s is not None:
            self.count += s
        return s

    def select(self, keep):
        """Keep only the samples (rows) ``keep``."""
        self.v, self.count = self.v[keep], self.count[keep]
        if self.u is not None:
            self.u = self.u[keep]
        if self.pre is not None:
            self.pre = self.pre[keep]


def _run_batch(plan, x, ids, timesteps, encoding, seed, readout, dec=None, on_tick=None, steps_out=None):
    """Run one batch step by step; returns ({layer: _Neurons}, output layer). With ``dec`` (a
    :class:`_Decisions`, latency read-outs) decisions are recorded after every step and, with
    ``dec.stop``, decided samples leave the batch (the returned states hold ``dec.rows`` only) and
    the run ends once every sample is decided. ``steps_out`` ({layer: (N, T, neurons)}, every
    sample run for all T steps) receives each step's spikes (a membrane read-out: its v)."""
    out = next(n for n, op in plan.ops.items() if O.is_readout(op))
    neurons = {n: _Neurons(plan, n, op, len(x), spiking=not (n == out and readout in MEMBRANE_READOUTS))
               for n, op in plan.ops.items() if isinstance(op, O.NEURONS)}
    fold = None  # an over-time read-out's fold of the output membrane
    if readout in OVER_TIME:
        fold = np.full_like(neurons[out].v, fold_start(readout, plan.mode == "int"))
    neurons[out].track = dec is not None
    inp = next(n for n, op in plan.ops.items() if isinstance(op, O.Input))
    steps = input_steps(plan.ops[inp], x, timesteps, encoding, seed, ids, plan.mode)
    cache = {}
    held = delay_lines(plan, len(x))
    for t in range(timesteps):
        vals = {inp: next(steps)}
        if dec is not None and inp not in cache and len(dec.rows) < len(x):
            vals[inp] = vals[inp][dec.rows]  # the encoder's streams are per sample: drop the decided ones' rows
        for n in plan.order:
            if n in cache:
                vals[n] = cache[n]
                continue
            if n in held:  # what its source sent `steps` steps ago (the source may run later in this step)
                vals[n] = held[n][t % len(held[n])]
                continue
            op, xs = plan.ops[n], [vals[p] for p in plan.inputs[n]]
            if isinstance(op, O.Input):
                pass  # this step's input, set above
            elif isinstance(op, O.WEIGHTED):
                vals[n] = _weighted(plan, n, op, xs[0])
            elif isinstance(op, O.Flatten):
                vals[n] = xs[0].reshape(len(xs[0]), -1)
            elif isinstance(op, O.AvgPool2d):
                vals[n] = _pool(plan, op, xs[0])
            elif isinstance(op, O.Add):  # spikes (bool) count 1 each: bool + bool would be "or"
                xs = [a.astype(np.int64 if plan.mode == "int" else np.float64) if a.dtype == bool else a for a in xs]
                vals[n] = sum(xs[1:], xs[0])
            elif isinstance(op, O.NEURONS):
                vals[n] = neurons[n].step(xs[0])
            else:
                raise TypeError(f"the numpy engine does not know op {O.kind(op)} ({n!r})")
            if plan.static[n]:
                cache[n] = vals[n]
        for n, line in held.items():
            line[t % len(line)] = vals[plan.inputs[n][0]]
        if fold is not None:
            fold_membrane(readout, fold, neurons[out].v)
        for n, buf in (steps_out or {}).items():  # spikes, or a membrane read-out's v
            buf[:, t] = (vals[n] if neurons[n].spiking else neurons[n].v).reshape(len(buf), -1)
        if on_tick is not None:
            on_tick(len(dec.rows) if dec is not None else len(x))
        if dec is not None:
            dec.sample_steps += len(dec.rows)
            st = neurons[out]
            if not dec.observe(t, st.count.reshape(len(st.count), -1), st.pre.reshape(len(st.count), -1),
                               lambda keep: _drop_rows(keep, neurons, cache, dec, held)):
                break
    if fold is not None:  # the read-out's membrane (simulate's scores)
        neurons[out].v = fold
    if dec is not None:
        st = neurons[out]
        dec.finish(st.count, st.v)
        for n, st in neurons.items():
            if st.spiking:
                dec.add_total(n, st.count.sum())
    return neurons, out


def _drop_rows(keep, neurons, cache, dec, held):
    """The numpy engine's part of a latency read-out's early stop: only rows ``keep`` go on."""
    for n, s in neurons.items():
        if s.spiking:
            dec.add_total(n, s.count[~keep].sum())
        s.select(keep)
    for n in cache:
        cache[n] = cache[n][keep]
    for line in held.values():
        line[:] = [v[keep] for v in line]


def spike_trace(graph, x, timesteps, layers, *, encoding="constant", seed=0, mode="int") -> dict:
    """``{layer: (T, N, *shape) bool}``: every step's spikes of the neuron ``layers`` for the few
    samples ``x`` (memory grows with T: for rasters, not for accuracy runs); :func:`simulate`'s
    ``record_steps`` under the ``count`` read-out, reshaped. ``timesteps``: as :func:`simulate`'s."""
    steps = simulate(graph, x, mode=mode, timesteps=timesteps, encoding=encoding, seed=seed, readout="count",
                     record_steps=list(layers)).steps
    return {n: np.moveaxis(s, 1, 0).reshape(s.shape[1::-1] + tuple(graph.nodes[n]["shape"])).astype(bool)
            for n, s in steps.items()}


ENGINES = ("auto", "numba", "numpy", "torch")


def simulate(graph, x, *, mode="int", timesteps=None, encoding="constant", seed=0, readout="membrane", k=None,
             batch_size=256, progress=False, record=False, engine="auto", info=None, device=None,
             record_steps=None, first_sample=0) -> SimResult:
    """Run the graph as an SNN (``mode`` int or float) for ``timesteps`` per sample.

    ``x``: static samples (N, *input shape), encoded for T = ``timesteps`` steps (None: 32), or a
    sequence (N, T, *input shape), one frame per step, which sets T (``timesteps`` None or T;
    :func:`.encode.run_timesteps`). ``timesteps``: 1..MAX_TIMESTEPS (:mod:`.encode`); memory does not grow with it (both engines
    stream over time). ``engine``: the integer mode runs event-driven under numba when it is
    installed (``auto``); ``numpy`` forces the step-by-step engine. Both give identical results;
    should numba itself fail, ``auto`` finishes on the numpy engine (with a RuntimeWarning) and
    ``numba`` raises a one-line RuntimeError. ``torch`` runs the numpy engine's steps in torch
    on ``device`` (cpu, cuda; :mod:`.torch_engine`), bit-identical as well.

    ``readout``: ``membrane`` (v[T-1] of a non-spiking output; ``membrane-sum``/``membrane-max``:
    its sum/maximum over the T steps), ``count`` (output spike counts),
    ``first-spike`` (the output neuron that spikes first) or ``k-spikes`` (the first to reach
    ``k`` spikes); see :func:`readout_decisions` for ties and undecided samples. Under the latency
    read-outs a sample stops being simulated once decided (its later steps are never run; the
    rates count the steps each sample ran) and a batch ends once all its samples are decided;
    ``record=True`` runs every sample for all T steps instead (whole-window counts, as Lava's),
    with the same decisions. ``info``, a dict, receives ``engine`` and ``sample_steps`` (samples x
    timesteps the engine simulated: the work done), and from the numba engine ``methods``: per
    weighted op, how many kernel calls ran each exact method (scatter, int8 product, ...). ``record_steps``, a list of neuron layer
    names: :attr:`SimResult.steps` holds their spikes at every step, or a membrane read-out's
    membrane (every sample runs all T steps, as with ``record``; refused beyond
    :data:`.readout.RECORD_STEPS_MAX_BYTES`). ``first_sample``: the index of ``x[0]`` in a whole
    run of which ``x`` is a shard (Poisson streams are keyed by the sample's index in the run).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    K = check_readout(readout, k, over_time=True)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    x, timesteps, seq = check_run_data(tuple(graph.nodes[input_node(graph)]["shape"]), x, timesteps, encoding,
                                       values=False)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if isinstance(first_sample, bool) or not isinstance(first_sample, (int, np.integer)) or first_sample < 0:
        raise ValueError(f"first_sample must be a whole number >= 0, got {first_sample!r}")
    if mode == "int" and not graph.graph.get("snnc", {}).get("quantized"):
        raise ValueError("the integer SNN needs a quantized graph (run the compile pipeline)")
    if mode == "int":
        check_gain(graph, encoding)
    if record_steps is not None:
        record_steps = check_record_steps(graph, record_steps, readout, len(x), timesteps)
    stop = not record and record_steps is None  # a latency read-out's early stop: off when every step is kept
    from . import fast
    if engine == "numba" and (mode != "int" or not fast.available()):
        raise ValueError("the numba engine runs the integer mode and needs numba installed")
    if engine == "torch" and mode != "int":
        raise ValueError("the torch engine runs the integer mode")
    if device is not None and engine != "torch":
        raise ValueError(f"device applies to engine 'torch' only (engine {engine!r})")
    from .prepared import plans
    wants_fast = mode == "int" and engine in ("auto", "numba") and fast.available()
    plan, fp = plans(graph, mode, encoding, seq, fast.FastPlan if wants_fast else None)
    if mode == "int":
        plan.check_registers()
    tp = None
    if engine == "torch":
        from . import torch_engine
        if not torch_engine.available():
            raise ValueError("engine 'torch' needs torch installed")
        tp = torch_engine.TorchPlan(plan, device)
    # the data check: here, unless the numba engine's recurrent kernel reads every value (it flags what the
    # check refuses, and the check then names it; an early stop leaves a decided sample's frames unread)
    from ..data import check_values
    from .fast_run import reads_frames
    unchecked = x.dtype.kind == "f"
    if unchecked and not (fp is not None and reads_frames(fp, x, encoding) and not (K and stop)):
        check_values("input data", x)
        unchecked = False
    out = next(n for n, op in plan.ops.items() if O.is_readout(op))
    n_out = int(np.prod(graph.nodes[out]["shape"]))
    scores, preds, counts, totals, steps = [], [], {}, {}, []
    times, ties, ran, work = [], [], 0, 0
    bar = progress_bar(len(x) * timesteps, "simulate", unit="sample-step", enabled=progress)
    done = [0]

    def tick(n):  # the engines report every chunk of steps, so a long batch shows progress too
        done[0] += n
        bar.update(n)
    if fp is not None:
        batch_size = fast.samples_per_batch(fp, batch_size, timesteps)
        heap.keep_freed_memory()  # its chunks and calls reuse the pages the last ones freed (.heap)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        ids = range(first_sample + start, first_sample + start + len(xb))  # a shard draws the whole run's streams
        states = None
        bufs = step_buffers(graph, record_steps, len(xb), timesteps, readout, mode) if record_steps is not None else None
        if tp is not None:
            dec = Decisions(len(xb), n_out, K, stop, timesteps) if K else None
            states, _ = torch_engine.run_batch(tp, xb, ids, timesteps, encoding, seed, readout, dec=dec, on_tick=tick,
                                               steps_out=bufs)
        if fp is not None:
            dec = Decisions(len(xb), n_out, K, stop, timesteps) if K else None
            try:
                states, _ = fast.run_batch(fp, xb, ids, timesteps, encoding, seed, readout, dec=dec, on_chunk=tick,
                                           steps_out=bufs)
            except fast.NUMBA_ERRORS as e:
                msg = f"the numba engine failed ({type(e).__name__}: {fast.first_line(e)})"
                if unchecked:  # (the numpy engine does not check as it reads)
                    check_values("input data", x)
                if engine == "numba":
                    raise RuntimeError(f"{msg}; run with engine='numpy' (identical results) and report this") from None
                import warnings
                warnings.warn(f"{msg}; finishing on the numpy engine (identical results)", RuntimeWarning, stacklevel=2)
                fp = None
        if states is None:
            dec = Decisions(len(xb), n_out, K, stop, timesteps, mode) if K else None
            neurons, _ = _run_batch(plan, xb, ids, timesteps, encoding, seed, readout, dec=dec, on_tick=tick,
                                    steps_out=bufs)
            states = {n: (st.v, st.count, st.spiking) for n, st in neurons.items()}
        v, c, spiking = states[out]
        if bufs is not None:
            steps.append(bufs)
        if dec is not None:
            scores.append(dec.counts.astype(np.float64).reshape((len(xb),) + graph.nodes[out]["shape"]))
            p, tie, dt = readout_decisions(dec.counts, dec.membrane, dec.step, K)
            preds.append(p)
            ties.append(tie)
            times.append(dt)
            ran += int(dec.steps_run().sum())
            work += dec.sample_steps
            for n, tot in dec.totals.items():
                totals[n] = totals.get(n, 0) + tot
        else:
            ran += len(xb) * timesteps
            work += len(xb) * timesteps
            if readout in MEMBRANE_READOUTS:  # v: v[T-1], or its fold over time (the engines put it there)
                scores.append(v.astype(np.float64))
                preds.append(np.argmax(v, axis=1))
            else:
                scores.append(c.astype(np.float64))
                preds.append(np.lexsort((v, c))[:, -1])  # most spikes; ties: highest membrane
        for n, (_, cn, sp) in states.items():
            if sp:
                if dec is None:
                    totals[n] = totals.get(n, 0) + int(cn.sum())
                if record:
                    counts.setdefault(n, []).append(cn)
        bar.update(max(0, (start + len(xb)) * timesteps - done[0]))  # samples that stopped early
        done[0] = (start + len(xb)) * timesteps
    bar.close()
    if info is not None:
        info.update(engine="torch" if tp is not None else "numba" if fp is not None else "numpy", sample_steps=work)
        if fp is not None:
            info["methods"] = {n: dict(m) for n, m in fp.methods.items()}
    rates = {n: totals[n] / (ran * int(np.prod(graph.nodes[n]["shape"]))) for n in totals} if len(x) else {}
    return SimResult(
        scores=np.concatenate(scores) if scores else np.zeros((0,) + graph.nodes[out]["shape"]),
        predictions=np.concatenate(preds).astype(np.int64) if preds else np.zeros(0, np.int64),
        rates=rates,
        counts={n: np.concatenate(c) for n, c in counts.items()} if record else None,
        decision_time=(np.concatenate(times) if times else np.zeros(0, np.int64)) if K else None,
        tied=(np.concatenate(ties) if ties else np.zeros(0, bool)) if K else None,
        steps=None if record_steps is None else {
            n: np.concatenate([b[n] for b in steps]) if steps else step_buffers(graph, [n], 0, timesteps, readout, mode)[n]
            for n in record_steps},
    )
