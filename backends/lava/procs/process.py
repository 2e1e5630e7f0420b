"""Lava processes for snnc networks: the integer IF neuron, the input source and a delay line.

Behaviour (the fixed_pt models in models.py) is the integer SNN of docs/DESIGN.md, pipelined:
a layer at depth ``d`` processes logical step ``t`` of sample ``k`` at hardware step
``k * T + t + d`` (0-based), so many samples stream back to back through one run.
"""
from __future__ import annotations

import numpy as np

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class SnncNeuron(AbstractProcess):
    """A layer of snnc neurons, one per element of ``shape``: each logical step is one
    :func:`snn_compiler.ir.neuron.int_step` (IF, or LIF with ``decay_v``/``decay_u``), with
    ``v = v_init`` and ``u = 0`` at each sample window's first step (``window`` steps).

    The neuron holds off (sends nothing, integrates nothing) before hardware step ``depth`` and
    after ``n_samples`` windows. Vars: ``v``; ``total`` (spikes over the whole run);
    ``counts`` ((n_samples, n) spikes per sample and neuron, when ``record`` or ``readout``);
    ``v_final`` ((n_samples, n) membrane at each window's last step, when ``readout``);
    ``steps`` ((n_samples * window, n), when ``record_steps``: each logical step's spikes, or the
    membrane after it for a layer that does not spike).
    A read-out with ``decide_k`` >= 1 (latency read-outs: first-spike is 1) also records, per
    sample, the first window step at which some neuron's count reaches ``decide_k``
    (``d_step``, -1 until then) and that step's counts (``d_counts``) and membranes before reset
    (``d_pre``); the run does not stop there (every window runs its T steps).
    Shapes are Lava's (W, H, C) layout for maps.
    """

    def __init__(self, *, shape, theta: int, bias, v_init: int, vmax: int, reset: str = "subtract",
                 spiking: bool = True, depth: int, window: int, n_samples: int, record: bool = False,
                 readout: bool = False, fault_step: int = -1, decay_v=None, decay_u: int = 4096, decide_k: int = 0,
                 record_steps: bool = False, name=None):
        shape = tuple(int(s) for s in shape)
        n = int(np.prod(shape))
        rec = record or readout
        decide = bool(readout and decide_k)
        super().__init__(shape=shape, theta=int(theta), v_init=int(v_init), vmax=int(vmax), reset=reset,
                         spiking=bool(spiking), depth=int(depth), window=int(window), n_samples=int(n_samples),
                         record=bool(rec), readout=bool(readout), fault_step=int(fault_step),
                         decay_v=None if decay_v is None else np.asarray(decay_v, np.int64), decay_u=int(decay_u),
                         decide_k=int(decide_k) if decide else 0, record_steps=bool(record_steps), name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=int(v_init))
        self.u = Var(shape=shape, init=0)
        self.bias = Var(shape=shape, init=np.broadcast_to(np.asarray(bias, np.int64), shape).copy())
        self.total = Var(shape=(1,), init=0)
        self.counts = Var(shape=(int(n_samples), n) if rec else (1, 1), init=0)
        self.v_final = Var(shape=(int(n_samples), n) if readout else (1, 1), init=0)
        self.d_step = Var(shape=(int(n_samples),) if decide else (1,), init=-1)
        self.d_counts = Var(shape=(int(n_samples), n) if decide else (1, 1), init=0)
        self.d_pre = Var(shape=(int(n_samples), n) if decide else (1, 1), init=0)
        self.steps = Var(shape=(int(n_samples) * int(window), n) if record_steps else (1, 1), init=0)


class SnncSource(AbstractProcess):
    """Graded input spikes: sample k's logical step t at hardware step k * T + t, then zeros.

    ``steps(start, stop)`` (a proc parameter, called inside the model) returns the encoded input
    of samples start..stop-1 as an int array (T, B, *shape) in Lava's layout.
    """

    def __init__(self, *, shape, steps, window: int, n_samples: int, block: int = 32, name=None):
        shape = tuple(int(s) for s in shape)
        super().__init__(shape=shape, steps=steps, window=int(window), n_samples=int(n_samples), block=int(block),
                         name=name)
        self.s_out = OutPort(shape=shape)


class SnncDelay(AbstractProcess):
    """Delays (graded or binary) spikes by ``delay`` hardware steps: >= 1 to balance residual
    joins; any (0 too) for a connection the IR delays by ``steps`` >= 1 logical steps (a Delay:
    recurrent, feedback or feed-forward), which also keeps each sample's spikes inside its window.

    With ``steps``, the relay reads a source at pipeline depth ``depth`` and passes its logical
    step ``t`` of a sample only when ``t + steps < window``: later spikes would arrive in the next
    sample's window, where the reference's delay line starts empty. Spikes the source sends
    outside its sample windows (a stock LIF integrates during the pipeline fill) never pass.
    """

    def __init__(self, *, shape, delay: int, steps: int = 0, depth: int = 0, window: int = 1, n_samples: int = 0,
                 name=None):
        shape = tuple(int(s) for s in shape)
        if delay < 0 or (delay < 1 and steps < 1) or steps < 0:
            raise ValueError(f"delay must be >= 1 (>= 0 for a Delay of steps >= 1), got delay {delay}, steps {steps}")
        super().__init__(shape=shape, delay=int(delay), steps=int(steps), depth=int(depth), window=int(window),
                         n_samples=int(n_samples), name=name)
        self.s_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
