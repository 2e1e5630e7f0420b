"""Build the real Lava process graph of a compiled snnc network (needs lava-nc, Python 3.10).

    from snn_compiler.backends.lava.build import build_network
    net = build_network(graph, x, timesteps=32)          # or x=None to wire your own input
    net.run()                                            # Loihi2SimCfg(select_tag="fixed_pt")
    counts = net.output_counts()
    net.stop()

Neurons: with ``neurons="auto"`` (default) every hidden layer of a ``--reset zero`` network runs
on stock ``LIFReset`` configured as integrate-and-fire (du=4095, dv=0, vth=theta-1, bias
exponent +6, window resets every T steps at the layer's pipeline offset, v_init injected by a
``RingBuffer`` through a unit Dense) wherever :func:`.plan.lif_fit` proves it exact; a spike
counter (an snnc neuron with threshold 1) reads its spikes. Everything else (reset by
subtraction, the Output layer's read-out, layers whose ranges LIF would wrap) runs on the snnc
neuron. ``neurons="snnc"`` never uses LIF; ``neurons="lif"`` refuses when it cannot.

Stock Lava processes carry the synapses: ``Dense`` (sign_mode MIXED, num_weight_bits 9, so every
weight in [-256, 255] is kept exactly; the op's weight exponent; graded messages from the input)
and ``Conv`` (kernel flipped, (W, H, C) layout; average pools arrive as depthwise Conv). A conv
Lava's Conv cannot run (a weight exponent, which it ignores, or groups, kernel, stride, padding or
dilation beyond its int8 Vars: :func:`.plan.why_sparse`) becomes a ``Sparse`` connection holding a
scipy CSR matrix (:func:`.plan.conv_matrix`: memory follows the synapse count). Neurons are
:class:`~.procs.process.SnncNeuron` (the snnc integer IF, reset by subtraction or to zero).
Residual joins: every connection into a layer lands on its one ``a_in`` port; shorter branches
go through :class:`~.procs.process.SnncDelay` so all of them deliver the same logical step.
Recurrent and delayed connections (the IR's Delay): a layer's spikes go through an ``SnncDelay``
relay (zero or more extra hardware steps, :func:`.plan.lava_depths`) into a stock Dense or Conv
and back into a layer's ``a_in``: a self-recurrent connection of one step is the layer's own
output through a Dense into its input, the Dense's one hardware step being the Delay's one step.
The relay also stops spikes at a sample window's end from reaching the next sample (the
reference starts each sample's delay lines empty). Lava 0.10.0's ``DelayDense`` would give the
extra steps for Dense only and not the window guard, so the relay does both, for Conv too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense
from lava.proc.io.source import RingBuffer
from lava.proc.lif.process import LIFReset
from lava.proc.sparse.process import Sparse
from lava.utils.weightutils import SignMode

from snn_compiler.sim.encode import check_timesteps, input_chunks, run_timesteps

from .plan import STOCK_LIF_BIAS, NetPlan, from_lava, lif_fit, make_plan, to_lava
from .procs.process import SnncDelay, SnncNeuron, SnncSource


@dataclass
class LavaNetwork:
    """A compiled network as Lava processes.

    ``input_ports``: when built without data, the InPorts the graded input must drive (sample k's
    step t at hardware step k*T + t, in Lava's layout ``plan.input_lshape``; a Dense or delay port
    may be flat: connect ``out.reshape(port.shape)``); built with data, ``source`` drives them;
    ``output_port``: the Output layer's spike port; ``processes``: every process by name.
    """
    plan: NetPlan
    timesteps: int
    n_samples: int
    neurons: Dict[str, object]            # layer -> its neuron process (SnncNeuron or LIFReset)
    counters: Dict[str, SnncNeuron]       # layer -> the process counting its spikes (itself for SnncNeuron)
    kinds: Dict[str, str]                 # layer -> "snnc" or "lif"
    synapses: Dict[str, object]
    delays: Dict[str, SnncDelay]
    source: Optional[SnncSource]
    input_ports: List[object]
    output: SnncNeuron
    processes: Dict[str, object] = field(default_factory=dict)

    @property
    def output_port(self):
        return self.output.s_out

    def spike_port(self, layer):
        return self.neurons[layer].s_out

    @property
    def hardware_steps(self) -> int:
        """Steps for all samples: n_samples windows of T steps, plus the pipeline's depth."""
        return self.n_samples * self.timesteps + self.plan.depth

    def run(self, steps: Optional[int] = None, run_cfg=None):
        """Run (by default every sample to the end) with ``run_cfg`` (default: Lava's CPU simulator)."""
        run_cfg = Loihi2SimCfg(select_tag="fixed_pt") if run_cfg is None else run_cfg
        steps = self.hardware_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
        self.output.run(condition=RunSteps(num_steps=int(steps)), run_cfg=run_cfg)

    def stop(self):
        self.output.stop()

    def _torch_layout(self, layer, flat):
        lp = self.plan.layers[layer]
        return from_lava(np.rint(flat).astype(np.int64).reshape((len(flat),) + lp.lshape), len(lp.shape))

    def output_counts(self) -> np.ndarray:
        """(n_samples, *shape) spike counts of the Output layer (torch layout)."""
        return self._torch_layout(self.plan.output, self.output.counts.get())

    def output_membrane(self) -> np.ndarray:
        """(n_samples, *shape) Output membrane at the last step of each sample's window."""
        return self._torch_layout(self.plan.output, self.output.v_final.get())

    def layer_counts(self, layer) -> np.ndarray:
        """(n_samples, *shape) spike counts of a layer built with ``record=True``."""
        return self._torch_layout(layer, self.counters[layer].counts.get())

    def layer_steps(self, layer) -> np.ndarray:
        """(n_samples, T, neurons) each step's spikes (a non-spiking read-out: its membrane) of a
        layer built with it in ``record_steps``; neurons flattened in torch's order."""
        flat = np.rint(self.counters[layer].steps.get()).astype(np.int64)
        return self._torch_layout(layer, flat).reshape(self.n_samples, self.timesteps, -1)

    def total_spikes(self, layer) -> int:
        return int(self.counters[layer].total.get()[0])

    def output_decisions(self):
        """Latency read-outs (built with ``k``): per sample the 0-based window step at which some
        Output neuron reached k spikes (-1: never), that step's Output counts and membranes
        before reset ((n_samples, *shape), torch layout)."""
        step = np.rint(self.output.d_step.get()).astype(np.int64)
        return (step, self._torch_layout(self.plan.output, self.output.d_counts.get()),
                self._torch_layout(self.plan.output, self.output.d_pre.get()))


def build_network(graph, x=None, *, timesteps: int, encoding: str = "constant", seed: int = 0,
                  readout: str = "membrane", record: bool = False, n_samples: Optional[int] = None,
                  fault: Optional[tuple] = None, neurons: str = "auto", k: Optional[int] = None,
                  record_steps=()) -> LavaNetwork:
    """The Lava process graph of a quantized SNN-form ``graph``.

    ``x`` (N, *input shape) or a sequence (N, T, *input shape) with T = ``timesteps``, float, is
    encoded exactly as the reference does
    (:func:`snn_compiler.sim.encode.input_steps`) by an :class:`SnncSource`; with ``x=None`` no
    source is made and ``n_samples`` windows are expected on ``input_ports``. ``fault`` =
    (layer, step) makes that layer's process raise at that hardware step (for tests).
    ``readout`` first-spike or k-spikes (with ``k``): the Output process also records each
    sample's decision (:meth:`LavaNetwork.output_decisions`); every window still runs T steps.
    ``record_steps``: layers whose every step is kept (:meth:`LavaNetwork.layer_steps`).
    """
    from snn_compiler.config import CompileConfig
    from snn_compiler.sim.readout import check_readout
    from .target import check
    check(graph, CompileConfig(target="lava"))  # nothing Lava would wrap or truncate
    decide_k = check_readout(readout, k)
    decide_k = 0 if decide_k is None else decide_k  # 0: no latency read-out to decide
    plan = make_plan(graph, readout)
    T = check_timesteps(timesteps)
    if x is not None:
        x = np.asarray(x)
        T = run_timesteps(plan.input_shape, x, T, encoding)  # a sequence's T must be this T
        n_samples = len(x)
    if not n_samples:
        raise ValueError("build_network needs input data or n_samples >= 1")
    if neurons not in ("auto", "snnc", "lif"):
        raise ValueError(f"neurons must be auto, snnc or lif, got {neurons!r}")
    procs, counters, kinds, synapses, delays, processes = {}, {}, {}, {}, {}, {}
    for name, lp in plan.layers.items():
        fault_step = fault[1] if fault and fault[0] == name else -1
        why = lif_fit(plan, name, T) if neurons != "snnc" else "snnc neurons requested"
        if neurons == "lif" and why and lp.kind == "IF":
            raise ValueError(f"layer {name!r}: stock LIF cannot run it exactly: {why}")
        if why is None:
            procs[name], counters[name] = _lif_layer(lp, T, n_samples, lp.vmax, record, fault_step, processes,
                                                     name in record_steps)
            kinds[name] = "lif"
        else:
            procs[name] = counters[name] = SnncNeuron(
                shape=lp.lshape, theta=lp.theta, bias=lp.bias, v_init=lp.v_init, vmax=lp.vmax, reset=lp.reset,
                decay_v=lp.decay_v, decay_u=lp.decay_u,
                spiking=lp.spiking, depth=lp.depth, window=T, n_samples=n_samples, record=record,
                readout=name == plan.output, fault_step=fault_step, name=name,
                decide_k=decide_k if name == plan.output else 0, record_steps=name in record_steps)
            kinds[name] = "snnc"
    source = None
    if x is not None:
        steps = _encoder(plan.input_op, x, T, encoding, seed, len(plan.input_shape))
        source = SnncSource(shape=plan.input_lshape, steps=steps, window=T, n_samples=n_samples,
                            block=source_block(T, plan.input_shape), name=plan.input)
        processes[plan.input] = source
    input_ports = []
    msg_bits = max(1, int(plan.input_op.bits))
    for c in plan.conns:
        port = source.s_out if c.src == plan.input and source is not None else None
        if c.src != plan.input:
            port = procs[c.src].s_out
        src_shape = plan.input_lshape if c.src == plan.input else plan.layers[c.src].lshape
        if c.delay or c.steps:
            # a relay: extra hardware steps, and for the IR's Delays the window guard (SnncDelay)
            key = f"{c.src}.delay{c.delay}" + (f".steps{c.steps}" if c.steps else "")
            if key not in delays:
                src_depth = 0 if c.src == plan.input else plan.layers[c.src].depth
                delays[key] = SnncDelay(shape=src_shape, delay=c.delay, steps=c.steps, depth=src_depth, window=T,
                                        n_samples=n_samples, name=key)
                if port is not None:
                    port.connect(delays[key].s_in)
                else:
                    input_ports.append(delays[key].s_in)
            port = delays[key].s_out
        nmb = msg_bits if c.graded else 0
        if c.kind == "dense":
            syn = Dense(weights=c.weight.astype(np.int32), sign_mode=SignMode.MIXED, num_weight_bits=9,
                        weight_exp=c.weight_exp, num_message_bits=nmb, name=c.name)
            dst_in = syn.s_in
        elif c.kind == "sparse":
            # c.weight is already a scipy CSR matrix (int32): Sparse keeps it as given, never dense
            syn = Sparse(weights=c.weight, sign_mode=SignMode.MIXED, num_weight_bits=9,
                         weight_exp=c.weight_exp, num_message_bits=nmb, name=c.name)
            dst_in = syn.s_in
        else:
            syn = Conv(weight=c.weight.astype(np.int32), input_shape=src_shape, padding=c.padding, stride=c.stride,
                       dilation=c.dilation, groups=c.groups, num_message_bits=nmb, name=c.name)
            dst_in = syn.s_in
            if tuple(syn.output_shape) != plan.layers[c.dst].lshape:
                raise ValueError(f"op {c.name!r}: Lava Conv output {tuple(syn.output_shape)} != layer "
                                 f"{c.dst!r} {plan.layers[c.dst].lshape}")
        if port is None:
            input_ports.append(dst_in)
        else:
            (port.flatten() if c.flatten else port).connect(dst_in)
        out = syn.a_out
        if tuple(out.shape) != tuple(procs[c.dst].a_in.shape):
            out = out.reshape(tuple(procs[c.dst].a_in.shape))
        out.connect(procs[c.dst].a_in)
        synapses[c.name] = syn
    processes.update(procs)
    processes.update(synapses)
    processes.update(delays)
    return LavaNetwork(plan=plan, timesteps=T, n_samples=n_samples, neurons=procs, counters=counters, kinds=kinds,
                       synapses=synapses, delays=delays, source=source, input_ports=input_ports,
                       output=procs[plan.output], processes=processes)


SOURCE_VALUES = 1 << 22  # encoded input values the source holds at once (int32: 16 MiB)


def source_block(T, input_shape, budget=SOURCE_VALUES) -> int:
    """Samples the source encodes at once: up to 32, fewer for long windows or large inputs, so
    its cache (T x block x input size) stays near ``budget`` values (one sample at least)."""
    return int(max(1, min(32, budget // max(1, T * int(np.prod(input_shape))))))


def _encoder(inp, x, T, encoding, seed, ndim):
    """steps(start, stop) -> (T, B, *Lava shape) int32 input of samples start..stop-1, as the reference encodes it."""
    def steps(start, stop):
        (xs,) = input_chunks(inp, x[start:stop], T, encoding, seed, range(start, stop), "int", T, np.int32)
        return to_lava(xs, ndim)
    return steps


def _lif_layer(lp, T, n_samples, vmax, record, fault_step, processes, record_steps=False):
    """Stock LIFReset as the snnc IF with reset to zero (exact where plan.lif_fit says so)."""
    mant, exp = STOCK_LIF_BIAS.split_bias(lp.bias)
    # LIFReset zeroes u and v when time_step % T == offset (1-based steps), before integrating:
    # the first step of each of this layer's windows is hardware step k*T + depth (0-based).
    lif = LIFReset(shape=lp.lshape, du=4095, dv=0, vth=lp.theta - 1, bias_mant=mant.astype(np.int16),
                   bias_exp=(exp + 6).astype(np.int16), reset_interval=T, reset_offset=(lp.depth + 1) % T,
                   name=lp.name)
    if lp.v_init:
        # v_init arrives as synaptic input on each window's first step: sent one step earlier
        # (Dense adds one step), at 1-based steps depth + k*T.
        data = np.zeros((1, T), np.int32)
        data[0, (lp.depth - 1) % T] = lp.v_init
        ring = RingBuffer(data=data)  # (takes no name)
        n = int(np.prod(lp.lshape))
        unit = Dense(weights=np.ones((n, 1), np.int32), sign_mode=SignMode.MIXED, num_weight_bits=9,
                     num_message_bits=24, name=f"{lp.name}.v_init_syn")
        ring.s_out.connect(unit.s_in)
        out = unit.a_out if len(lp.lshape) == 1 else unit.a_out.reshape(lp.lshape)
        out.connect(lif.a_in)
        processes[f"{lp.name}.v_init"], processes[unit.name] = ring, unit
    # Counting relay: an snnc neuron with threshold 1 and reset to zero spikes exactly when LIF did.
    counter = SnncNeuron(shape=lp.lshape, theta=1, bias=0, v_init=0, vmax=vmax, reset="zero", spiking=True,
                         depth=lp.depth, window=T, n_samples=n_samples, record=record, readout=False,
                         fault_step=fault_step, record_steps=record_steps, name=f"{lp.name}.count")
    lif.s_out.connect(counter.a_in)
    processes[counter.name] = counter
    return lif, counter
