"""Fixed-point process models of the snnc processes (tag ``fixed_pt``, CPU, Loihi protocol).

The neuron model steps through :func:`snn_compiler.ir.neuron.int_step`, the one definition of the
integer neuron; the rest (pipeline fill, sample windows, counters) is Lava plumbing.
"""
from __future__ import annotations

import functools
import os
import sys
import traceback

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

# absolute: Lava also executes this file standalone when it searches for process models
from snn_compiler.backends.lava.procs.process import SnncDelay, SnncNeuron, SnncSource
from snn_compiler.ir.neuron import IntParams, int_step
from snn_compiler.sim.readout import decides

FAULT_FILE_ENV = "SNNC_LAVA_FAULT_FILE"


def reports_faults(run_spk):
    """Lava hangs when a connected process model raises (its peers wait on its ports forever), so
    our models also write the traceback to $SNNC_LAVA_FAULT_FILE, which the worker watches."""
    @functools.wraps(run_spk)
    def wrapped(self):
        try:
            run_spk(self)
        except Exception:
            text = (f"Lava process {self.proc_params.get('name')!r} ({type(self).__name__}) raised at "
                    f"step {self.time_step}:\n{traceback.format_exc()}")
            print(text, file=sys.stderr, flush=True)
            path = os.environ.get(FAULT_FILE_ENV)
            if path:
                with open(path + ".tmp", "w") as f:
                    f.write(text)
                os.replace(path + ".tmp", path)
            raise
    return wrapped


@implements(proc=SnncNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySnncNeuronModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, bool, precision=1)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    total: np.ndarray = LavaPyType(np.ndarray, np.int64)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int32)
    v_final: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    d_step: np.ndarray = LavaPyType(np.ndarray, np.int32)
    d_counts: np.ndarray = LavaPyType(np.ndarray, np.int32)
    d_pre: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    steps: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = self.proc_params
        self.shape = p["shape"]
        self.v_init = p["v_init"]
        self.params = IntParams.make(p["theta"], None, p["decay_v"], p["decay_u"], p["vmax"], p["reset"])
        self.spiking, self.depth, self.window = p["spiking"], p["depth"], p["window"]
        self.n_samples, self.record, self.readout = p["n_samples"], p["record"], p["readout"]
        self.fault_step = p["fault_step"]
        self.decide_k = p.get("decide_k", 0)
        self.record_steps = p.get("record_steps", False)
        self.zeros = np.zeros(self.shape, bool)

    @reports_faults
    def run_spk(self):
        a = self.a_in.recv()  # always drain the port
        if self.time_step == self.fault_step:
            raise RuntimeError(f"snnc fault injection: neuron process {self.proc_params.get('name')} "
                               f"raised at step {self.time_step}")
        h = self.time_step - 1 - self.depth
        if h < 0 or h >= self.n_samples * self.window:  # pipeline not yet full, or all samples done
            self.s_out.send(self.zeros)
            return
        k, t = divmod(h, self.window)
        if t == 0:
            self.v[...] = self.v_init
            self.u[...] = 0
        v, u = self.v.astype(np.int64), self.u.astype(np.int64)
        params = self.params._replace(bias=self.bias.astype(np.int64))
        undecided = self.decide_k and self.d_step[k] < 0
        pre = np.empty_like(v) if undecided else None  # the membrane before reset: a tie-break
        s = int_step(v, u, np.asarray(a, np.int64), params, self.spiking, pre)
        self.u[...] = u
        if s is not None:
            n = int(np.count_nonzero(s))
            self.total[0] += n
            if self.record and n:
                self.counts[k] += s.reshape(-1)
            if undecided and n and decides(self.counts[k], self.decide_k):
                self.d_step[k] = t
                self.d_counts[k] = self.counts[k]
                self.d_pre[k] = pre.reshape(-1)
        else:
            s = self.zeros
        self.v[...] = v
        if self.record_steps:  # h = k * window + t: this sample's logical step
            self.steps[h] = (s if self.spiking else v).reshape(-1)
        if self.readout and t == self.window - 1:
            self.v_final[k] = v.reshape(-1)
        self.s_out.send(s)


@implements(proc=SnncSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySnncSourceModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = self.proc_params
        self.shape, self.steps = p["shape"], p["steps"]
        self.window, self.n_samples, self.block = p["window"], p["n_samples"], p["block"]
        self.zeros = np.zeros(self.shape, np.int32)
        self.cache, self.cache_start = None, -1

    @reports_faults
    def run_spk(self):
        k, t = divmod(self.time_step - 1, self.window)
        if k >= self.n_samples:
            self.s_out.send(self.zeros)
            return
        start = k - k % self.block
        if start != self.cache_start:
            self.cache = np.asarray(self.steps(start, min(start + self.block, self.n_samples)), np.int32)
            self.cache_start = start
        self.s_out.send(self.cache[t, k - start])


@implements(proc=SnncDelay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySnncDelayModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = self.proc_params
        shape, delay = p["shape"], p["delay"]
        self.ring = np.zeros((delay,) + tuple(shape), np.int32)
        self.steps, self.depth, self.window = p.get("steps", 0), p.get("depth", 0), p.get("window", 1)
        self.n_samples = p.get("n_samples", 0)
        self.zeros = np.zeros(shape, np.int32)

    @reports_faults
    def run_spk(self):
        x = self.s_in.recv()  # always drain the port
        if self.steps:
            # the source's logical step t of sample k; it may pass only if it lands in the same window
            h = self.time_step - 1 - self.depth
            k, t = divmod(h, self.window)
            if h < 0 or k >= self.n_samples or t + self.steps >= self.window:
                x = self.zeros
        if not len(self.ring):  # no extra hardware step: pass it on now
            self.s_out.send(x)
            return
        i = self.time_step % len(self.ring)
        self.s_out.send(self.ring[i].copy())
        self.ring[i] = x
