"""The graph in torch: the bit-exact integer SNN on CPU or CUDA.

torch is imported lazily (the core runs without it: the Lava environment has none).

The ANN reading in torch (calibration) is :mod:`.torch_ann`.

**Integer SNN** (``simulate(..., engine="torch", device=...)``, :func:`run_batch`): the numpy
engine's step-by-step schedule (:func:`.emulator._run_batch`: logical step t through the whole
graph in topological order, static nodes computed once, the same read-outs and early stop) with
torch tensors. Exactness, op by op:

- Weighted ops run as float convolutions / matmuls on integer operands, in the dtype the numpy
  engine proved exact (``plan.Plan._weights``: ``sum_i |w_i| * max|x| < 2**24`` for float32,
  else ``< 2**53`` for float64; x is a spike (0/1), a pool sum of them or an input level). Every
  product and every partial sum is then an integer of magnitude below that bound, so it is exact
  in ANY summation order (blocked GEMM, split-K, atomics): the result is the exact integer sum.
  What would break it is an algorithm whose intermediates are not those partial sums: Winograd or
  FFT convolutions and reduced-precision (TF32 / bf16) products. So during a run
  (:func:`exact_kernels`) TF32 is off (``torch.backends.cuda.matmul.allow_tf32``,
  ``torch.backends.cudnn.allow_tf32``), float32 matmul precision is "highest", NNPACK is off, and
  on CUDA cuDNN is off too (its algorithm search may choose FFT / Winograd even in deterministic
  mode), so convolutions run as im2col + cuBLAS GEMM; deterministic algorithms are requested on
  CUDA. The previous settings are restored afterwards.
- Pools sum their window in float64 (``avg_pool2d`` with ``divisor_override=1``; values are at
  most kernel area x levels, far below 2**53), rounded back to int64.
- Neuron state (v, u) is int64, stepped by :func:`int_step`, which runs ``ir.neuron.int_update``
  (the one integer step, written with operators numpy and torch share) on tensors. A leak-free layer whose bounds (max(v_max, |v_init|) +
  its proved worst-case current + max |bias|, and its threshold) stay within int32 runs in int32
  (:func:`_fits_int32`): no intermediate can wrap, so the values are those of int64 and of numpy.
  Spike counts are int32 (at most MAX_TIMESTEPS).

Memory: the run streams over time; it holds, per neuron layer, v (and u for current memory) in
int64 or int32 and the spike counts, plus one step's values of the layers in flight (freed after their
last consumer): about 2-3x the batch's ANN activations in float32, whatever T is (measured in
benchmarks/resnet18_sim.py).
"""
from __future__ import annotations

import contextlib

import numpy as np

from ..ir import neuron as N
from ..ir import ops as O
from ..ir.layers import input_range, sum_abs_bound
from ..ir.registers import INT32_MAX
from .encode import input_steps
from .readout import MEMBRANE_READOUTS, OVER_TIME, fold_membrane, fold_start

def _torch():
    import torch
    return torch


def available() -> bool:
    try:
        _torch()
    except ImportError:
        return False
    return True


def device_of(device):
    """A torch.device from ``cpu``, ``cuda`` or ``cuda:N`` (None: cpu); a one-line ValueError else."""
    torch = _torch()
    try:
        dev = torch.device(device or "cpu")
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: no CUDA GPU is available to torch here; use --device cpu")
    return dev


# ---- integer SNN -------------------------------------------------------------------------------

@contextlib.contextmanager
def exact_kernels(dev):
    """Only exact algorithms for integer operands (see the module docstring), restored afterwards."""
    torch = _torch()
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.backends.nnpack.flags(enabled=False))
            if dev.type == "cuda":
                stack.enter_context(torch.backends.cudnn.flags(enabled=False, deterministic=True, benchmark=False))
                was = torch.are_deterministic_algorithms_enabled()
                torch.use_deterministic_algorithms(True, warn_only=True)
                stack.callback(torch.use_deterministic_algorithms, was)
            stack.enter_context(torch.inference_mode())
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


class TorchParams:
    """A layer's :class:`ir.neuron.IntParams` with its arrays as tensors on the device."""

    def __init__(self, p: N.IntParams, dev, dtype=None):
        torch = _torch()
        dtype = dtype or torch.int64
        self.threshold, self.decay_u, self.v_max = p.threshold, p.decay_u, p.v_max
        self.subtract, self.decays = p.subtract, p.decays
        self.bias = torch.tensor(np.array(p.bias), dtype=dtype, device=dev)
        self.decay_v = torch.tensor(np.array(p.decay_v), dtype=dtype, device=dev)


def int_step(v, u, current, p: TorchParams, spiking=True, pre=None):
    """``ir.neuron.int_update`` on tensors, in place: ``v`` (and ``u``, None without current
    memory); ``pre``, a tensor like v, receives the membrane before reset. Returns the spikes
    (bool), or None for a non-spiking read-out."""
    v_next, u_next, s, v_pre = N.int_update(v, 0 if u is None else u, current, p.bias, p.decay_v, p.decay_u, p.v_max,
                                            p.threshold, p.subtract, spiking, p.decays)
    v.copy_(v_next)
    if u is not None:
        u.copy_(u_next)
    if pre is not None:
        pre.copy_(v_pre)
    return s if spiking else None




class TorchPlan:
    """The numpy engine's plan (weights in their proved-exact float dtype) moved to ``device``,
    and each neuron layer's state dtype: int32 where no value can leave int32 (below), else int64."""

    def __init__(self, plan, device=None):
        torch = _torch()
        self.plan, self.torch, self.dev = plan, torch, device_of(device)
        self.weights = {n: torch.from_numpy(np.ascontiguousarray(w)).to(self.dev) for n, w in plan.weights.items()}
        from .torch_ann import TorchKernels  # (it imports this module)
        self.kernels = TorchKernels(None, self.dev)  # the convolution's one definition: O.Conv2d.apply
        self.state_dtype, self.params = {}, {}
        for n, op in plan.ops.items():
            if isinstance(op, O.NEURONS):
                p = N.IntParams.of(op, plan.graph.nodes[n]["shape"])
                self.state_dtype[n] = torch.int32 if _fits_int32(plan, n, op, p) else torch.int64
                self.params[n] = TorchParams(p, self.dev, self.state_dtype[n])


def _current_bound(plan, n):
    """Largest |current| a neuron layer can receive (its weighted ops' proved bounds, summed over an
    Add), or None where nothing is proved (a layer reading the Input or a Flatten directly)."""
    src = plan.inputs[n][0]
    parts = plan.inputs[src] if isinstance(plan.ops[src], O.Add) else [src]
    total = 0
    for k in parts:
        reads = input_range(plan.graph, k) if isinstance(plan.ops[k], O.WEIGHTED) else None
        if reads is None:
            return None
        total += int(sum_abs_bound(plan.weights[k], reads[0]))  # exact: below 2**53 (the plan's weights)
    return total


def _fits_int32(plan, n, op, p) -> bool:
    """A leak-free layer whose every intermediate (``|v| + |I| + |bias|``, v within +-max(v_max,
    |v_init|)) and threshold stay below 2**31 runs in int32 with the same values as in int64 (no
    wrap-around either way): half the memory traffic. A leaky layer multiplies v by up to 4096: int64."""
    bound = _current_bound(plan, n)
    if p.decays or bound is None:
        return False
    bias = int(np.abs(p.bias).max(initial=0))
    return max(p.v_max, abs(int(op.v_init))) + bound + bias <= INT32_MAX and p.threshold <= INT32_MAX


class _Layer:
    """One neuron layer's state for one batch (int64 tensors)."""

    def __init__(self, tp, n, op, batch, spiking, track):
        torch = tp.torch
        shape = tuple(tp.plan.graph.nodes[n]["shape"])
        self.p, self.spiking = tp.params[n], spiking
        self.v = torch.full((batch,) + shape, int(N.initial_v(op, "int", tp.plan.v_half, spiking)),
                            dtype=tp.state_dtype[n], device=tp.dev)
        self.u = torch.zeros_like(self.v) if op.decay_u != N.DECAY_ONE else None
        self.count = torch.zeros_like(self.v, dtype=torch.int32)  # T <= MAX_TIMESTEPS spikes
        self.pre = torch.empty_like(self.v) if track else None

    def step(self, current):
        if current.dtype != self.v.dtype:  # an int32 layer: |current| is proved to fit (_fits_int32)
            current = current.to(self.v.dtype)
        s = int_step(self.v, self.u, current, self.p, self.spiking, self.pre)
        if s is not None:
            self.count += s
        return s

    def select(self, keep):
        for key in ("v", "u", "count", "pre"):
            if getattr(self, key) is not None:
                setattr(self, key, getattr(self, key)[keep])


def _value(tp, n, op, xs):
    """One non-neuron op's integer output for this step."""
    torch = tp.torch
    F = torch.nn.functional
    x = xs[0]
    if isinstance(op, O.WEIGHTED):
        w = tp.weights[n]
        x = x.to(w.dtype)
        if isinstance(op, O.Dense):
            y = F.linear(x, w)
        else:
            y = op.apply(x, w, tp.kernels)
        # integer valued and exact (module docstring), so the conversion is exact; a float32 sum is
        # below 2**24 and fits int32
        return y.to(torch.int32 if w.dtype == torch.float32 else torch.int64)
    if isinstance(op, O.Flatten):
        return x.reshape(len(x), -1)
    if isinstance(op, O.AvgPool2d):
        y = F.avg_pool2d(x.to(torch.float64), tuple(op.kernel_size), tuple(op.stride), tuple(op.padding),
                         count_include_pad=True, divisor_override=1)
        return torch.round(y).to(torch.int64)
    if isinstance(op, O.Add):  # spikes (bool) count 1 each; int32 parts (each < 2**24) summed in int64 beyond 64 parts
        wide = len(xs) > 64 or any(a.dtype not in (torch.int32, torch.bool) for a in xs)
        xs = [a.to(torch.int64 if wide else torch.int32) if a.dtype in (torch.bool, torch.int32) else a for a in xs]
        return sum(xs[1:], xs[0])
    raise TypeError(f"the torch engine does not know op {O.kind(op)} ({n!r})")


def run_batch(tp, x, ids, timesteps, encoding, seed, readout, dec=None, on_tick=None, steps_out=None):
    """One batch, step by step, as :func:`.emulator._run_batch` (same read-outs, same early stop
    with ``dec``, same per-step spikes into ``steps_out``). Returns ({layer: (v, counts, spiking)} as int64 numpy arrays of the rows still
    simulated, output layer)."""
    with exact_kernels(tp.dev):
        return _run(tp, x, ids, timesteps, encoding, seed, readout, dec, on_tick, steps_out or {})


def _run(tp, x, ids, timesteps, encoding, seed, readout, dec, on_tick, steps_out):
    torch, plan, dev = tp.torch, tp.plan, tp.dev
    out = next(n for n, op in plan.ops.items() if O.is_readout(op))
    inp = next(n for n, op in plan.ops.items() if isinstance(op, O.Input))
    layers = {n: _Layer(tp, n, op, len(x), not (n == out and readout in MEMBRANE_READOUTS), dec is not None and n == out)
              for n, op in plan.ops.items() if isinstance(op, O.NEURONS)}
    fold = None  # an over-time read-out's fold of the output membrane (int64: a sum of int32 steps may not fit)
    if readout in OVER_TIME:
        fold = torch.full(layers[out].v.shape, fold_start(readout, True), dtype=torch.int64, device=dev)
    steps = input_steps(plan.ops[inp], x, timesteps, encoding, seed, ids, "int")
    consumers = {n: plan.graph.out_degree(n) for n in plan.order}
    cache = {}
    held = {n: [torch.zeros((len(x),) + tuple(op.shape), device=dev, dtype=torch.bool if isinstance(
                plan.ops[plan.inputs[n][0]], O.NEURONS) else torch.int64) for _ in range(op.steps)]
            for n, op in plan.ops.items() if isinstance(op, O.Delay)}  # as emulator.delay_lines
    delayed = {plan.inputs[n][0] for n in held}
    for t in range(timesteps):
        xin = next(steps)
        if dec is not None and inp not in cache and len(dec.rows) < len(x):
            xin = xin[dec.rows]  # the encoder's streams are per sample: drop the decided ones' rows
        vals, left = {}, dict(consumers)
        for n in plan.order:
            op = plan.ops[n]
            if n in cache:
                vals[n] = cache[n]
            elif n in held:  # what its source sent `steps` steps ago (the source may run later in this step)
                vals[n] = held[n][t % op.steps]
            elif isinstance(op, O.Input):
                vals[n] = torch.from_numpy(np.array(xin, copy=True)).to(dev)  # the encoder may repeat a read-only array
            elif isinstance(op, O.NEURONS):
                vals[n] = layers[n].step(vals[plan.inputs[n][0]])
                if n in steps_out:  # spikes, or a membrane read-out's v
                    s = vals[n] if layers[n].spiking else layers[n].v
                    steps_out[n][:, t] = s.reshape(len(s), -1).cpu().numpy()
                if n == out and fold is not None:
                    fold_membrane(readout, fold, layers[n].v.to(torch.int64))
            else:
                vals[n] = _value(tp, n, op, [vals[p] for p in plan.inputs[n]])
            if plan.static[n]:
                cache[n] = vals[n]
            for p in plan.inputs[n]:  # free a value once its last consumer has read it
                left[p] -= 1
                if left[p] == 0 and p not in delayed:
                    del vals[p]
        for n, line in held.items():
            line[t % len(line)] = vals[plan.inputs[n][0]].to(line[0].dtype)
        if on_tick is not None:
            on_tick(len(dec.rows) if dec is not None else len(x))
        if dec is not None:
            dec.sample_steps += len(dec.rows)
            st = layers[out]
            if not dec.observe(t, st.count.reshape(len(st.count), -1).cpu().numpy(),
                               st.pre.reshape(len(st.count), -1).cpu().numpy(),
                               lambda keep: _drop_rows(keep, layers, cache, dec, held)):
                break
    if fold is not None:  # the read-out's membrane (simulate's scores)
        layers[out].v = fold
    states = {n: (st.v.cpu().numpy().astype(np.int64), st.count.cpu().numpy().astype(np.int64), st.spiking)
              for n, st in layers.items()}
    if dec is not None:
        v, c, _ = states[out]
        dec.finish(c, v)
        for n, (_, cn, sp) in states.items():
            if sp:
                dec.add_total(n, cn.sum())
    return states, out


def _drop_rows(keep, layers, cache, dec, held):
    """The torch engine's part of a latency read-out's early stop: only rows ``keep`` go on."""
    keep_t = _torch().from_numpy(keep).to(next(iter(layers.values())).v.device)
    for n, s in layers.items():
        if s.spiking:
            dec.add_total(n, int(s.count[~keep_t].sum()))
        s.select(keep_t)
    for n in cache:
        cache[n] = cache[n][keep_t]
    for line in held.values():
        line[:] = [v[keep_t] for v in line]
