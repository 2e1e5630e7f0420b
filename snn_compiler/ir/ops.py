"""The IR's node kinds: the one place that says what an op is, what it holds and what it computes.

Every node of the IR graph (a ``networkx.DiGraph``) carries ``op`` (one of the classes below) and
``shape`` (its output shape without the batch axis, filled in by :func:`verify`). Shapes are
torch's: ``(C, H, W)`` for maps, ``(F,)`` for vectors. Edges carry ``port`` (input position).

Three readings of one graph (run by :mod:`snn_compiler.sim.emulator`):
- ``ann``: the network as trained, IF nodes are ReLUs.
- ``float``: a rate-coded SNN with float weights normalised so every neuron's threshold is 1.
- ``int``: the hardware's integer SNN; weighted ops use ``weight_int``, neurons use the integer
  ``threshold``, ``bias`` and ``v_init`` fields set by the quantize pass.

Each op owns its semantics: ``infer_shape(in_shapes)`` (raises ValueError when its inputs do not
fit) and ``ann(xs, k)`` (its ANN reading on a batch, written once against an array namespace
``k``: :mod:`.kernels` for numpy, the default, or the torch engine's). The neuron op lives in
:mod:`.neuron`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Tuple

import numpy as np

from . import kernels
from .routing import ROUTING_KINDS
from .registers import signed_max, unsigned_max
from .neuron import IF, LIF, Neuron, Output  # noqa: F401  (re-exported: ops.IF(), ops.Neuron ...)

Pair = Tuple[int, int]


@dataclass
class Input:
    """Network input ``x`` of ``shape``.

    ``scale`` (lambda_0, max |x| on calibration data) normalises the input: the float SNN sees
    ``x / scale``. The integer SNN sees ``x_q = clip(round(x / scale * q), -q or 0, q)`` with
    ``q = 2**bits - 1`` (unsigned) or ``2**(bits-1) - 1`` (``signed``): a graded spike each step.
    """
    shape: Tuple[int, ...]
    scale: Optional[float] = None
    bits: int = 8
    signed: bool = False

    @property
    def levels(self) -> int:
        return signed_max(self.bits) if self.signed else unsigned_max(self.bits)

    def infer_shape(self, in_shapes):
        return tuple(self.shape)


@dataclass
class Dense:
    """``y = weight @ x + bias``; weight ``(out, in)``.

    Integer SNN: ``y = (weight_int @ x) * 2**weight_exp`` (set by quantization; the exponent lets
    connections of different magnitude share one target threshold without losing weight bits,
    like Loihi's per-synapse-group weight exponent).
    """
    weight: np.ndarray
    bias: Optional[np.ndarray] = None
    weight_int: Optional[np.ndarray] = None
    weight_exp: int = 0

    def infer_shape(self, in_shapes):
        (shape,) = in_shapes
        if len(shape) != 1 or self.weight.ndim != 2 or self.weight.shape[1] != shape[0]:
            raise ValueError(f"Dense weight {self.weight.shape} does not take input {shape}")
        return (self.weight.shape[0],)

    def ann(self, xs, k=kernels):
        return add_bias(self, k.dense(xs[0], k.const(self.weight)), k)


@dataclass
class Conv2d:
    """``y = conv2d(x', weight, bias, stride, padding, dilation, groups)`` as in torch, where ``x'`` is
    ``x`` with ``input_dilation - 1`` zeros inserted between neighbouring values along each axis
    (``x'[c, d*i, d*j] = x[c, i, j]``, size ``d*(H-1)+1``; XLA's lhs dilation).

    weight ``(out_channels, in_channels // groups, kH, kW)``. Integer SNN:
    ``y = conv2d(x', weight_int, ...) * 2**weight_exp``, as for Dense. With ``input_dilation`` ``s``
    the op is a transposed convolution: ``conv_transpose2d(x, w, stride=s, padding=q)`` equals it with
    weight ``w`` flipped and in/out swapped and padding ``kernel - 1 - q``; nearest upsampling by
    ``s`` is its depthwise case with an ``s x s`` kernel of ones and padding ``s - 1``. A spike's
    fan-out is still a kernel's worth of synapses, so the connection stays conv-structured.
    """
    weight: np.ndarray
    bias: Optional[np.ndarray] = None
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    weight_int: Optional[np.ndarray] = None
    weight_exp: int = 0
    input_dilation: Pair = (1, 1)

    @property
    def dilates_input(self) -> bool:
        return tuple(self.input_dilation) != (1, 1)

    def apply(self, x, w, k=kernels):
        """The convolution without bias, with weight ``w`` (the float, scaled or integer one)."""
        if self.dilates_input:
            x = k.zero_insert(x, self.input_dilation)
        return k.conv2d(x, w, self.stride, self.padding, self.dilation, self.groups)

    def infer_shape(self, in_shapes):
        (shape,) = in_shapes
        w = self.weight
        d = self.input_dilation
        if len(d) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in d):
            raise ValueError(f"Conv2d input_dilation must be two whole numbers >= 1, got {d!r}")
        if len(shape) == 3:
            shape = (shape[0], d[0] * (shape[1] - 1) + 1, d[1] * (shape[2] - 1) + 1)
        if len(shape) != 3 or w.ndim != 4 or w.shape[1] * self.groups != shape[0]:
            raise ValueError(f"Conv2d weight {w.shape} (groups {self.groups}) does not take input {shape}")
        if w.shape[0] % self.groups:
            raise ValueError(f"Conv2d out channels {w.shape[0]} not divisible by groups {self.groups}")
        hw = conv_out_hw(shape[1:], w.shape[2:], self.stride, self.padding, self.dilation)
        if min(hw) < 1:
            raise ValueError(f"Conv2d output would be empty for input {shape}")
        return (w.shape[0],) + hw

    def ann(self, xs, k=kernels):
        return add_bias(self, self.apply(xs[0], k.const(self.weight), k), k)


@dataclass
class AvgPool2d:
    """``y = avg_pool2d(x, kernel_size, stride, padding)``, zero padding counted in the mean.

    A *synaptic pool* (kernel == stride, no padding, reading an IF layer or the Input, feeding
    only Dense/Conv2d ops, optionally through Flatten) stays in the SNN. There the integer SNN
    computes the window *sum* ``y = sum_window x``, not the mean: the consuming op's quantization
    absorbs the 1/(kh*kw) (:func:`snn_compiler.ir.layers.source_and_area`). Any other pool is
    lowered into a depthwise Conv2d plus an IF layer (lower_avgpool).
    """
    kernel_size: Pair
    stride: Pair
    padding: Pair = (0, 0)

    def infer_shape(self, in_shapes):
        (shape,) = in_shapes
        if len(shape) != 3:
            raise ValueError(f"AvgPool2d needs a (C, H, W) input, got {shape}")
        return (shape[0],) + conv_out_hw(shape[1:], self.kernel_size, self.stride, self.padding)

    def ann(self, xs, k=kernels):
        return k.avg_pool2d(xs[0], self.kernel_size, self.stride, self.padding)


@dataclass
class AdaptiveAvgPool2d:
    """``y = adaptive_avg_pool2d(x, output_size)`` as in torch: output cell ``(i, j)`` averages input
    rows ``floor(i H / oh) .. ceil((i + 1) H / oh) - 1`` and the columns alike (windows of uneven
    size that may overlap, or repeat input cells when the output is larger than the input).

    Only where ``output_size`` does not divide the input (else the frontends emit an AvgPool2d),
    and never in SNN form: fold_adaptive_pools composes it into the Linear that reads it.
    """
    output_size: Pair

    def infer_shape(self, in_shapes):
        (shape,) = in_shapes
        if len(shape) != 3:
            raise ValueError(f"AdaptiveAvgPool2d needs a (C, H, W) input, got {shape}")
        if min(self.output_size) < 1:
            raise ValueError(f"AdaptiveAvgPool2d output size must be positive, got {tuple(self.output_size)}")
        return (shape[0],) + tuple(int(v) for v in self.output_size)

    def ann(self, xs, k=kernels):
        return k.adaptive_avg_pool2d(xs[0], self.output_size)


@dataclass
class WindowAvgPool2d:
    """``y[c, i, j] = sum of x[c, r, q] over r in rows[i], q in cols[j], / (rows[i] count * cols[j] count)``:
    an average pool given by its windows, ``(start, end, count)`` per output row and column (input rows
    ``start .. end - 1``, divided by ``count``). It is what a framework's partial windows compute:
    torch's and ONNX's ``ceil_mode`` and ``count_include_pad=False``, Keras's ``padding='same'`` (which
    leaves the padding out of the mean); the frontends emit it only where some window is partial.

    Never in SNN form: fold_adaptive_pools composes it into the Linear that reads it (its divisor
    changes with the position, which no convolution expresses).
    """
    rows: tuple
    cols: tuple

    def __post_init__(self):  # hashable, whatever sequence type the windows came in
        self.rows, self.cols = (tuple(tuple(int(v) for v in w) for w in ws) for ws in (self.rows, self.cols))

    def infer_shape(self, in_shapes):
        (shape,) = in_shapes
        if len(shape) != 3:
            raise ValueError(f"WindowAvgPool2d needs a (C, H, W) input, got {shape}")
        for axis, windows in ((1, self.rows), (2, self.cols)):
            if not windows or any(len(w) != 3 or not 0 <= w[0] < w[1] <= shape[axis] or w[2] < 1 for w in windows):
                raise ValueError(f"WindowAvgPool2d windows {windows} do not fit an axis of {shape[axis]} "
                                 f"(each (start, end, count) with 0 <= start < end <= size, count >= 1)")
        return (shape[0], len(self.rows), len(self.cols))

    def ann(self, xs, k=kernels):
        return k.separable_pool(xs[0], *kernels.window_matrices(self.rows, self.cols, *xs[0].shape[2:]))


@dataclass
class MaxPool2d:
    """``y = max_pool2d(x, kernel_size, stride, padding, dilation)`` as in torch (padding is -inf).

    Never reaches SNN form: the lower_maxpool pass rewrites it, for a non-negative input (an IF
    layer's output), into IF layers computing ``max(a, b) = relu(a - b) + b`` over a tree of the
    window (see :mod:`snn_compiler.passes.lower_maxpool`).
    """
    kernel_size: Pair
    stride: Pair
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)

    def infer_shape(self, in_shapes):
        (shape,) = in_shapes
        if len(shape) != 3:
            raise ValueError(f"MaxPool2d needs a (C, H, W) input, got {shape}")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"MaxPool2d padding {tuple(self.padding)} exceeds half the kernel {tuple(self.kernel_size)}")
        hw = conv_out_hw(shape[1:], self.kernel_size, self.stride, self.padding, self.dilation)
        if min(hw) < 1:
            raise ValueError(f"MaxPool2d output would be empty for input {shape}")
        return (shape[0],) + hw

    def ann(self, xs, k=kernels):
        return k.max_pool2d(xs[0], self.kernel_size, self.stride, self.padding, self.dilation)


@dataclass
class BatchNorm:
    """``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel (axis 0 of the shape)."""
    mean: np.ndarray
    var: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    eps: float = 1e-5

    def infer_shape(self, in_shapes):
        return _per_channel(self, len(self.mean), in_shapes)

    def ann(self, xs, k=kernels):
        gain = self.weight / np.sqrt(self.var + self.eps)  # (x - mean) * gain + bias, folded in float64 first
        return xs[0] * _channel(k.const(gain), xs[0]) + _channel(k.const(self.bias - self.mean * gain), xs[0])


@dataclass
class Affine:
    """``y = x * scale + shift`` per channel: a BatchNorm with nothing to fold into."""
    scale: np.ndarray
    shift: np.ndarray

    def infer_shape(self, in_shapes):
        return _per_channel(self, len(self.scale), in_shapes)

    def ann(self, xs, k=kernels):
        return xs[0] * _channel(k.const(self.scale), xs[0]) + _channel(k.const(self.shift), xs[0])


@dataclass
class Flatten:
    """``y = x.reshape(-1)`` in torch's (C, H, W) order."""

    def infer_shape(self, in_shapes):
        (shape,) = in_shapes
        return (int(np.prod(shape)),)

    def ann(self, xs, k=kernels):
        return xs[0].reshape(len(xs[0]), -1)


@dataclass
class Add:
    """``y = sum of inputs`` (a residual join). Inputs must share one shape."""

    def infer_shape(self, in_shapes):
        if len(set(in_shapes)) != 1:
            raise ValueError(f"Add inputs have different shapes {in_shapes}")
        return in_shapes[0]

    def ann(self, xs, k=kernels):
        return sum(xs[1:], xs[0])


@dataclass
class Delay:
    """``y[t] = x[t - steps]``, and ``y[t] = 0`` for ``t < steps``: a connection that arrives
    ``steps`` whole timesteps later (Loihi 2's axonal delay; NIR's Delay of whole steps).

    The only way the graph may close a cycle (NIR's rule: a recurrent connection reads the previous
    step): a layer's spikes feed back into itself or an earlier layer through a Delay, then a
    weighted op. :func:`snn_compiler.ir.graph.topo_order` orders the graph without the edges into
    Delays, so a Delay's value at step t, the stored ``x[t - steps]``, is ready before its source
    runs step t. ``shape`` is the delayed value's shape (declared, as its source is ordered after
    it inside a cycle; :func:`verify` checks it against the source). ANN reading: the identity (a
    constant input delayed is that constant once the delay has passed); a graph with a cycle has
    no ANN reading.
    """
    shape: Tuple[int, ...]
    steps: int = 1

    def infer_shape(self, in_shapes):
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise ValueError(f"Delay steps must be a whole number >= 1, got {self.steps!r}")
        if in_shapes and tuple(in_shapes[0]) != tuple(self.shape):
            raise ValueError(f"Delay declares shape {tuple(self.shape)}, its source sends {tuple(in_shapes[0])}")
        return tuple(int(v) for v in self.shape)

    def ann(self, xs, k=kernels):
        return xs[0]


OP_KINDS = (Input, Dense, Conv2d, AvgPool2d, AdaptiveAvgPool2d, WindowAvgPool2d, MaxPool2d, BatchNorm, Affine, Flatten, Add, Delay, Neuron) + ROUTING_KINDS
WEIGHTED = (Dense, Conv2d)
NEURONS = (Neuron,)


def effective_weights(op) -> np.ndarray:
    """The integer weights a weighted op applies: ``weight_int * 2**weight_exp`` (int64)."""
    return op.weight_int.astype(np.int64) << op.weight_exp


def kind(op) -> str:
    """What errors and tables call the op (a Neuron by its label: IF, LIF, Output)."""
    return op.label if isinstance(op, Neuron) else type(op).__name__


def is_readout(op) -> bool:
    return isinstance(op, Neuron) and op.readout


def is_hidden_neuron(op) -> bool:
    return isinstance(op, Neuron) and not op.readout


def arrays_of(op) -> dict:
    """The numpy-array fields of an op (for artifact I/O)."""
    return {f.name: getattr(op, f.name) for f in fields(op) if isinstance(getattr(op, f.name), np.ndarray)}


def conv_out_hw(hw: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair = (1, 1)) -> Pair:
    return tuple((hw[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2))


def conv_taps(op, in_hw, out_hw) -> int:
    """(output position, kernel tap) pairs of a Conv2d per (out, in) channel pair: what its synapse
    count and its ANN's multiply-accumulates scale with. Every pair for an ordinary conv (padding
    included: a dense implementation multiplies it); for an input-dilated one only the pairs that land
    on a real input (the inserted zeros are not inputs)."""
    if not op.dilates_input:
        return int(np.prod(op.weight.shape[2:]) * np.prod(out_hw))
    return int(np.prod([axis_reads(in_hw[a], out_hw[a], op.weight.shape[2 + a], op.stride[a], op.padding[a],
                                   op.dilation[a], op.input_dilation[a]).sum() for a in range(2)]))


def axis_reads(n_in, n_out, k, s, p, d, di=1) -> np.ndarray:
    """Along one axis of a Conv2d: per input position, how many (output position, kernel tap) pairs
    read it. Output ``o`` reads tap ``j`` at ``o*s - p + j*d`` of the input with ``di - 1`` zeros
    inserted between its values, where input ``i`` sits at ``di*i`` (padding and zeros read nothing)."""
    pos = (np.arange(n_out, dtype=np.int64)[:, None] * s - p + np.arange(k, dtype=np.int64)[None, :] * d).ravel()
    pos = pos[(pos >= 0) & (pos < di * (n_in - 1) + 1) & (pos % di == 0)] // di
    return np.bincount(pos, minlength=n_in)


def _channel(v, x):
    """Per-channel values ``v`` shaped to broadcast over a batch ``x`` (axis 1)."""
    return v.reshape((-1,) + (1,) * (x.ndim - 2))


def add_bias(op, y, k=kernels):
    return y if op.bias is None else y + _channel(k.const(op.bias), y)


def _per_channel(op, n, in_shapes):
    (shape,) = in_shapes
    if shape[0] != n:
        raise ValueError(f"{kind(op)} has {n} channels, input has {shape[0]}")
    return tuple(shape)


def infer_shape(op, in_shapes: list) -> Tuple[int, ...]:
    """Output shape of ``op`` for inputs of ``in_shapes``; raises ValueError when they do not fit."""
    if not isinstance(op, OP_KINDS):
        raise TypeError(f"unknown op {op!r}")
    return op.infer_shape([tuple(s) for s in in_shapes])
