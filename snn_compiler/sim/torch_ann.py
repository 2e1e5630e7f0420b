"""The graph's ANN reading in torch: what normalize calibrates with when torch is importable.

The ANN reading (:func:`iter_ann`): the same values as :func:`.emulator.iter_ann`, computed in
float32 (:data:`ANN_DTYPE`) with torch's kernels, batched. Against the float64 numpy reading each
value differs by float32 rounding and summation order only: |torch - numpy| <= 1e-4 * (1 + max|a|)
per layer (tests/test_torch_engine.py), and the calibration scales lambda agree to a relative
1e-4 (normalize keeps activations as float32 either way). (A QCFS staircase, computed in float64
from float32 inputs, may put a value lying within float32 rounding of a step edge on the other
step: a percentile over many values does not notice.) normalize uses it when torch is
importable; ``SNNC_CALIBRATION_ENGINE=numpy`` (or ``torch``) in the environment forces a path.
"""
from __future__ import annotations

import os

import numpy as np

from ..ir import inputs_of, op_of, topo_order
from ..ir import ops as O
from . import ann_sharing
from .torch_engine import _torch, available, device_of

ANN_DTYPE = "float32"
CALIBRATION_ENV = "SNNC_CALIBRATION_ENGINE"   # auto (default) | torch | numpy


def calibration_engine() -> str:
    """``torch`` or ``numpy``: what normalize reads the ANN with (``$SNNC_CALIBRATION_ENGINE``:
    auto, the default, takes torch when it is importable)."""
    want = os.environ.get(CALIBRATION_ENV, "auto").strip().lower() or "auto"
    if want not in ("auto", "torch", "numpy"):
        raise ValueError(f"{CALIBRATION_ENV} must be auto, torch or numpy, got {want!r}")
    if want == "torch" and not available():
        raise ValueError(f"{CALIBRATION_ENV}=torch but torch is not installed")
    return "numpy" if want == "numpy" or not available() else "torch"


class TorchKernels:
    """The array namespace of the ops' ``ann`` readings (ir/kernels.py is numpy's) in torch, on one
    device and dtype; parameters become tensors once per graph (kept by the arrays' identity)."""

    def __init__(self, dtype, dev):
        self.torch, self.F = _torch(), _torch().nn.functional
        self.dtype, self.dev, self._consts = dtype, dev, {}

    def const(self, a):
        key = id(a)
        if key not in self._consts:  # the array is kept too, so its id cannot be reused meanwhile
            t = self.torch.as_tensor(np.asarray(a, np.float64), dtype=self.dtype, device=self.dev)
            self._consts[key] = (a, t)
        return self._consts[key][1]

    def dense(self, x, w):
        return self.F.linear(x, w)

    def conv2d(self, x, w, stride, padding, dilation, groups):
        if groups == w.shape[0] == x.shape[1] and w.shape[1:] == (1, 1, 1) and tuple(stride) == (1, 1) \
                and not any(padding):
            return x * w.view(1, -1, 1, 1)  # a per-channel scale (a folded BN, a skip): torch's depthwise conv is slower
        return self.F.conv2d(x, w, stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation),
                             groups=groups)

    def zero_insert(self, x, dilation):
        b, c, h, w = x.shape
        out = x.new_zeros((b, c, dilation[0] * (h - 1) + 1, dilation[1] * (w - 1) + 1))
        out[:, :, ::dilation[0], ::dilation[1]] = x
        return out

    def avg_pool2d(self, x, kernel, stride, padding=(0, 0)):
        return self.F.avg_pool2d(x, tuple(kernel), tuple(stride), tuple(padding), count_include_pad=True)

    def adaptive_avg_pool2d(self, x, output_size):
        return self.F.adaptive_avg_pool2d(x, tuple(output_size))

    def separable_pool(self, x, a_rows, a_cols):
        return self.const(a_rows) @ x @ self.const(a_cols).T

    def max_pool2d(self, x, kernel, stride, padding=(0, 0), dilation=(1, 1)):
        return self.F.max_pool2d(x, tuple(kernel), tuple(stride), tuple(padding), tuple(dilation))

    def relu(self, x):
        return self.torch.relu(x)

    def concat(self, xs):
        return self.torch.cat(list(xs), dim=1)

    def take_channels(self, x, index):
        return x.index_select(1, self.torch.as_tensor(np.asarray(index, np.int64), device=x.device))

    def in_float64(self, fn, x):
        return fn(x.double()).to(x.dtype)


def iter_ann(graph, x, keep=(), batch_size=256, clip=(), device=None, dtype=ANN_DTYPE):
    """:func:`.emulator.iter_ann` in torch: per batch ``{node: activation}`` (numpy arrays of
    ``dtype``) for the nodes in ``keep`` plus the Output node; tolerance in the module docstring."""
    from .ann_reading import check_ann_reading
    check_ann_reading(graph)
    torch = _torch()
    dev = device_of(device)
    tdtype = getattr(torch, dtype)
    order = topo_order(graph)
    keep, clip = set(keep), set(clip)
    ops = {n: op_of(graph, n) for n in order}
    srcs = {n: inputs_of(graph, n) for n in order}
    k = TorchKernels(tdtype, dev)
    wanted = {n for n in order if n in keep or O.is_readout(ops[n])}
    units, inside = ann_sharing.plan(graph, order, ops, srcs, wanted | clip)
    copies = {}  # base unit -> how many units scale its raw output
    for u in units.values():
        if u.base is not None:
            copies[u.base] = copies.get(u.base, 0) + 1
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            left = {n: graph.out_degree(n) for n in order}
            vals, got, raw, owed = {}, {}, {}, dict(copies)
            for n in order:
                op = ops[n]
                if n in inside:
                    continue  # computed by the sum it feeds, as one conv
                if isinstance(op, O.Input):
                    xb = torch.as_tensor(np.asarray(x[start:start + batch_size], np.float64)).to(dev, tdtype)
                    vals[n] = xb / op.scale if op.scale else xb
                    reads = ()
                elif n in units:
                    u = units[n]
                    if u.base is None:
                        xs = [vals[p] for p in u.reads]
                        y = u.conv.apply(xs[0] if len(xs) == 1 else torch.cat(xs, 1), k.const(u.conv.weight), k)
                        if n in owed:
                            raw[n] = y
                        vals[n] = O.add_bias(u.conv, y, k)
                    else:
                        f = k.const(u.factor).view(1, -1, 1, 1)
                        b = u.conv.bias
                        vals[n] = raw[u.base] * f if b is None else torch.addcmul(k.const(b).view(1, -1, 1, 1),
                                                                                  raw[u.base], f)
                        owed[u.base] -= 1
                        if owed[u.base] == 0:
                            del raw[u.base]
                    reads = u.reads
                else:
                    vals[n] = op.ann([vals[p] for p in srcs[n]], k)
                    reads = srcs[n]
                if n in clip:
                    vals[n] = torch.clamp(vals[n], max=1.0)
                for p in reads:  # free an activation once its last consumer has read it
                    left[p] -= 1
                    if left[p] == 0 and p not in wanted:
                        del vals[p]
                if n in wanted:
                    got[n] = vals[n].cpu().numpy()
            yield got

