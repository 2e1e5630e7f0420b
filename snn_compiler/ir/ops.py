"""The IR's node kinds: the one place that says what an op is, what it holds and what it computes.

Every node of the IR graph (a ``networkx.DiGraph``) carries ``op`` (one of the classes below) and
``shape`` (its output shape without the batch axis, filled in by :func:`verify`). Shapes are
torch's: ``(C, H, W)`` for maps, ``(F,)`` for vectors. Edges carry ``port`` (input position).

Three readings of one graph (see :mod:`snn_compiler.interpret`):
- ``ann``: the network as trained, IF nodes are ReLUs.
- ``float``: a rate-coded SNN with float weights normalised so every neuron's threshold is 1.
- ``int``: the hardware's integer SNN; weighted ops use ``weight_int``, neurons use the integer
  ``threshold``, ``bias`` and ``v_init`` fields set by the quantize pass.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Tuple

import numpy as np

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
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1


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


@dataclass
class Conv2d:
    """``y = conv2d(x, weight, bias, stride, padding, dilation, groups)`` as in torch.

    weight ``(out_channels, in_channels // groups, kH, kW)``. Integer SNN:
    ``y = conv2d(x, weight_int, ...) * 2**weight_exp``, as for Dense.
    """
    weight: np.ndarray
    bias: Optional[np.ndarray] = None
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    weight_int: Optional[np.ndarray] = None
    weight_exp: int = 0


@dataclass
class AvgPool2d:
    """``y = avg_pool2d(x, kernel_size, stride, padding)``, zero padding counted in the mean.

    A *synaptic pool* (kernel == stride, no padding, reading an IF layer or the Input, feeding
    only Dense/Conv2d ops, optionally through Flatten) stays in the SNN: the integer SNN computes
    the window *sum* ``y = sum_window x`` and the consuming op's quantization absorbs the
    1/(kh*kw). Any other pool is lowered into a depthwise Conv2d plus an IF layer (lower_avgpool).
    """
    kernel_size: Pair
    stride: Pair
    padding: Pair = (0, 0)


@dataclass
class BatchNorm:
    """``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel (axis 0 of the shape)."""
    mean: np.ndarray
    var: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    eps: float = 1e-5


@dataclass
class Affine:
    """``y = x * scale + shift`` per channel: a BatchNorm with nothing to fold into."""
    scale: np.ndarray
    shift: np.ndarray


@dataclass
class Flatten:
    """``y = x.reshape(-1)`` in torch's (C, H, W) order."""


@dataclass
class Add:
    """``y = sum of inputs`` (a residual join). Inputs must share one shape."""


@dataclass
class IF:
    """A ReLU in the ANN, an integrate-and-fire neuron layer in the SNN.

    ANN: ``y = max(x, 0)``. SNN, per timestep t, with input current ``I[t]`` (the sum of the
    incoming weighted ops, biases included), spikes ``s[t]`` in {0, 1}:

        v[t] = clip(v[t-1] + I[t], v_min, v_max)           (saturating membrane)
        s[t] = v[t] >= threshold
        v[t] = v[t] - s[t] * threshold    (reset "subtract")  or  0 where s[t]  (reset "zero")

    with ``v[-1] = v_init``. Float SNN: ``threshold = 1``, ``v_init = 0.5`` (or 0), weights
    normalised by ``scale`` (lambda, this layer's activation scale) so the spike rate
    approximates ``relu(x) / scale``. Integer SNN: ``threshold``, ``bias`` (broadcastable to
    the layer's shape) and ``v_init`` are integers in units of ``step`` (the float value of one
    integer unit, in thresholds) set by the quantize pass; the incoming ops' float biases are
    then not used.
    """
    scale: Optional[float] = None
    threshold: Optional[int] = None
    bias: Optional[np.ndarray] = None
    v_init: Optional[int] = None
    step: Optional[float] = None


@dataclass
class Output(IF):
    """The network's output layer; ANN reading: identity ``y = x``.

    Its neurons read out either as spike counts (IF semantics, as above) or as a non-spiking
    membrane accumulator ``v[t] = clip(v[t-1] + I[t], v_min, v_max)`` with ``v[-1] = 0``.
    """


OP_KINDS = (Input, Dense, Conv2d, AvgPool2d, BatchNorm, Affine, Flatten, Add, IF, Output)
WEIGHTED = (Dense, Conv2d)
NEURONS = (IF, Output)


def effective_weights(op) -> np.ndarray:
    """The integer weights a weighted op applies: ``weight_int * 2**weight_exp`` (int64)."""
    return op.weight_int.astype(np.int64) << op.weight_exp


def kind(op) -> str:
    return type(op).__name__


def arrays_of(op) -> dict:
    """The numpy-array fields of an op (for artifact I/O)."""
    return {f.name: getattr(op, f.name) for f in fields(op) if isinstance(getattr(op, f.name), np.ndarray)}


def conv_out_hw(hw: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair = (1, 1)) -> Pair:
    return tuple((hw[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2))


def infer_shape(op, in_shapes: list) -> Tuple[int, ...]:
    """Output shape of ``op`` for inputs of ``in_shapes``; raises ValueError when they do not fit."""
    if isinstance(op, Input):
        return tuple(op.shape)
    if isinstance(op, Add):
        if len(set(map(tuple, in_shapes))) != 1:
            raise ValueError(f"Add inputs have different shapes {in_shapes}")
        return tuple(in_shapes[0])
    (shape,) = in_shapes
    if isinstance(op, Dense):
        if len(shape) != 1 or op.weight.ndim != 2 or op.weight.shape[1] != shape[0]:
            raise ValueError(f"Dense weight {op.weight.shape} does not take input {shape}")
        return (op.weight.shape[0],)
    if isinstance(op, Conv2d):
        if len(shape) != 3 or op.weight.ndim != 4 or op.weight.shape[1] * op.groups != shape[0]:
            raise ValueError(f"Conv2d weight {op.weight.shape} (groups {op.groups}) does not take input {shape}")
        if op.weight.shape[0] % op.groups:
            raise ValueError(f"Conv2d out channels {op.weight.shape[0]} not divisible by groups {op.groups}")
        hw = conv_out_hw(shape[1:], op.weight.shape[2:], op.stride, op.padding, op.dilation)
        if min(hw) < 1:
            raise ValueError(f"Conv2d output would be empty for input {shape}")
        return (op.weight.shape[0],) + hw
    if isinstance(op, AvgPool2d):
        if len(shape) != 3:
            raise ValueError(f"AvgPool2d needs a (C, H, W) input, got {shape}")
        return (shape[0],) + conv_out_hw(shape[1:], op.kernel_size, op.stride, op.padding)
    if isinstance(op, (BatchNorm, Affine)):
        n = len(op.mean) if isinstance(op, BatchNorm) else len(op.scale)
        if shape[0] != n:
            raise ValueError(f"{kind(op)} has {n} channels, input has {shape[0]}")
        return tuple(shape)
    if isinstance(op, Flatten):
        return (int(np.prod(shape)),)
    if isinstance(op, NEURONS):
        return tuple(shape)
    raise TypeError(f"unknown op {op!r}")
