"""The lowering base every frontend shares: values, emitting IR ops, and finishing the graph.

A frontend walks its model in order and keeps, per value of the model, an :class:`Act` (an
activation: the IR node that computes it), an :class:`Unavailable` (an output the IR does not
compute) or a constant. :class:`Lowering` holds the IR graph being built; a frontend subclasses it
to say where an op sits in its model (``label``) and how its constants read. Imports without torch.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
import math
from typing import NoReturn, Optional

import networkx as nx
import numpy as np

from .. import ir, origins
from ..ir import ops as O
from ..ir.routing import Concat, SelectChannels
from .errors import FrontendError


@dataclass(frozen=True)
class Act:
    """An activation tensor of the network: the IR node that computes it (shape without batch)."""
    name: str


@dataclass(frozen=True)
class Unavailable:
    """An output of an op that the IR does not compute (a max pool's indices, a dropout mask)."""
    what: str


@dataclass(frozen=True)
class GroupedChannels(Unavailable):
    """A (C, H, W) map viewed with 5 axes, its channels as ``groups`` = (g1, g2) (axes 1 and 2 swapped
    when ``swapped``): a channel shuffle half done (ShuffleNet's ``view(b, g, c/g, h, w)`` then
    ``transpose(1, 2)``). Only a view back to (C, H, W) reads it, as :func:`grouping_order`."""
    act: Optional[Act] = None
    groups: tuple = ()
    swapped: bool = False


def grouping_order(x: GroupedChannels) -> np.ndarray:
    """The channels a grouping read back as (C, H, W) holds, in order: g1-major, g2-major when swapped."""
    g1, g2 = x.groups
    order = np.arange(g1 * g2).reshape(g1, g2)
    return (order.T if x.swapped else order).ravel()


def describe(v) -> str:
    """A constant as messages show it: a tensor by its shape, anything else by its repr."""
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        return f"tensor of shape {tuple(v.shape)}"
    return repr(v)


def non_finite_field(op) -> Optional[str]:
    """The first field of ``op`` holding NaN or infinity (arrays and float scalars), else None."""
    for f in fields(op):
        v = getattr(op, f.name)
        if isinstance(v, np.ndarray) and v.dtype.kind in "fc" and not np.all(np.isfinite(v)):
            return f.name
        if isinstance(v, (float, np.floating)) and not np.isfinite(v):
            return f.name
    return None


def refuse_non_finite(op) -> Optional[str]:
    """The message for an op whose values are not all finite (None when they are)."""
    name = non_finite_field(op)
    if name is None:
        return None
    return (f"its {name} holds NaN or infinite values; the model's weights are not usable (a diverged training "
            f"or a corrupt file): fix or retrain them")


class Lowering:
    """State of one lowering: the IR graph being built, the model's values and the IR shapes.

    Subclasses give ``label()`` (where the op being lowered sits in the model, for messages) and
    ``base_name()`` (the IR name its node gets)."""

    def __init__(self):
        self.g = ir.new_graph()
        self.env = {}     # the model's value name -> Act | Unavailable | constant
        self.shapes = {}  # IR node name -> shape without batch

    # -- messages
    def label(self) -> str:
        raise NotImplementedError

    def base_name(self) -> str:
        raise NotImplementedError

    def origin(self):
        """(path, kind) of the user's layer being lowered, for :mod:`snn_compiler.origins`; None: unknown."""
        return None

    def fail(self, msg: str) -> NoReturn:
        raise FrontendError(f"{self.label()}: {msg}")

    # -- values
    def act(self, v, what="input") -> Act:
        if isinstance(v, Unavailable):
            self.fail(f"{what} is {v.what}, which is not supported")
        if not isinstance(v, Act):
            self.fail(f"{what} must be an activation of the network, got a constant {describe(v)}")
        return v

    def shape(self, a: Act) -> tuple:
        return self.shapes[a.name]

    # -- building
    def add_input(self, shape: tuple) -> Act:
        """The network's one Input (named ``input``) of ``shape`` (no batch axis)."""
        ir.add_op(self.g, "input", O.Input(shape=tuple(shape)))
        self.shapes["input"] = tuple(shape)
        return Act("input")

    def residual_add(self, x: Act, y: Act) -> Act:
        """A residual sum of two distinct activations of one shape (what every frontend lowers ``+`` to)."""
        if x == y:
            self.fail("adding a tensor to itself (x + x) is not supported")
        if self.shape(x) != self.shape(y):
            self.fail(f"residual add of different shapes {self.shape(x)} and {self.shape(y)} (broadcasting) "
                      f"is not supported")
        return self.emit(O.Add(), [x, y])

    def select_channels(self, x: Act, index, suffix: str = "") -> Act:
        """The channels ``index`` of ``x`` (every frontend's chunk/split/slice/shuffle): ``x`` itself
        when that is all of them in order."""
        index = np.asarray(index, np.int64)
        if len(index) == self.shape(x)[0] and np.array_equal(index, np.arange(len(index))):
            return x
        return self.emit(SelectChannels(index=index), [x], suffix=suffix)

    def emit(self, op, inputs, suffix: str = "") -> Act:
        """Add ``op`` reading ``inputs`` (Acts); refuses non-finite values and shapes the op cannot take."""
        name = ir.unique_name(self.g, self.base_name() + suffix)
        in_names = [self.act(i).name for i in inputs]
        bad = refuse_non_finite(op)
        if bad:
            self.fail(bad)
        try:
            shape = O.infer_shape(op, [self.shapes[n] for n in in_names])
        except ValueError as e:
            self.fail(str(e))
        ir.add_op(self.g, name, op, in_names)
        self.shapes[name] = tuple(int(s) for s in shape)
        where = self.origin()
        if where is not None:
            origins.record(self.g, name, *where)
        return Act(name)


def finish(g: nx.DiGraph, result, where: str) -> str:
    """Give the network ending at ``result`` (an Act) its read-out, drop what the output does not
    depend on, and verify the graph. Returns the read-out node. ``where`` names the model."""
    if isinstance(result, Unavailable):
        raise FrontendError(f"{where}: its output is {result.what}, which is not supported")
    if not isinstance(result, Act):
        raise FrontendError(f"{where}: its output does not depend on its input (it is a constant)")
    out_name = ir.add_readout(g, result.name)
    keep = nx.ancestors(g, out_name) | {out_name}
    if "input" not in keep:
        raise FrontendError(f"{where}: its output does not depend on its input")
    g.remove_nodes_from([n for n in list(g) if n not in keep])  # dead code
    verify_lowered(g, where)
    return out_name


def verify_lowered(g: nx.DiGraph, where: str) -> None:
    """A frontend's last check of the graph it lowered: finite values (the model's problem, named),
    then the IR's invariants (a failure there is a frontend bug)."""
    check_finite(g, where)
    try:
        ir.verify(g)
    except ir.IRError as e:  # pragma: no cover - a frontend bug, not a model problem
        raise FrontendError(f"internal error: the lowered graph is invalid: {e}") from e


def check_finite(g: nx.DiGraph, where: str) -> None:
    """Refuse a graph whose op values (weights folded after they were emitted too) are not finite,
    naming the layer: a NaN weight is the model's problem, not an internal error."""
    for n in ir.topo_order(g):
        bad = refuse_non_finite(ir.op_of(g, n))
        if bad:
            raise FrontendError(f"{where}: layer {n!r} ({O.kind(ir.op_of(g, n))}): {bad}")


# ---- ceil_mode pools, shared by the torch and ONNX frontends ---------------------------------------

def ceil_out_hw(hw, k, s, p, d=(1, 1)):
    """A pool's output size with ceil_mode (torch's rule, which ONNX exports follow)."""
    out = []
    for i in range(2):
        o = math.ceil((hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) / s[i]) + 1
        if (o - 1) * s[i] >= hw[i] + p[i]:  # torch: the last window must start inside the input
            o -= 1
        out.append(o)
    return tuple(out)


def _relu_output(g, name) -> bool:
    """``name`` is a converted ReLU's IF layer, or a concatenation of such layers (GoogLeNet's pools
    after an Inception block): non-negative."""
    op = ir.op_of(g, name)
    if isinstance(op, Concat):
        return all(_relu_output(g, p) for p in ir.inputs_of(g, name))
    return O.is_hidden_neuron(op) and op.spike_value is None


def _spiking_copy(ctx, x, moved, suffix):
    """``moved`` (``x``'s values moved by a one-hot conv: padding, upsampling), then an IF copy where
    ``x`` is a ReLU's output (relu of non-negative values), so what reads it reads spikes as SNN form
    wants; any other ``x`` stays a linear value for the conv that reads it."""
    return ctx.emit(O.IF(), [moved], suffix=suffix) if _relu_output(ctx.g, x.name) else moved


def ceil_mode_rows(ctx, x, shape, ceil, k, s, p, d):
    """ceil_mode's partial windows (GoogLeNet): the map gets e zero rows/columns at its bottom/right, so
    that the floor-mode pool has the ceil-mode output. Zeros are the max pool's -inf padding for a
    non-negative input holding one element per window (torch's rule for the last window), so the source
    must be a ReLU's IF layer; the rows come from a depthwise conv whose one-hot kernel, (e+1) wide
    with padding e, keeps every element in place, then an IF layer (relu of non-negative values: a copy)."""
    if not _relu_output(ctx.g, x.name):
        ctx.fail(f"ceil_mode=True adds partial windows on input {shape} (output {ceil} instead of "
                 f"{O.conv_out_hw(shape[1:], k, s, p, d)}), which snnc pads with zeros: only on a ReLU's output "
                 f"(non-negative), and this pool does not read one: put it after the activation")
    e = [(ceil[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - (shape[1 + i] + 2 * p[i]) for i in range(2)]
    c = shape[0]
    w = np.zeros((c, 1, e[0] + 1, e[1] + 1))
    w[:, 0, e[0], e[1]] = 1.0
    padded = ctx.emit(O.Conv2d(weight=w, padding=(e[0], e[1]), groups=c), [x], suffix=".ceil_pad")
    return ctx.emit(O.IF(), [padded], suffix=".ceil_pad.if")


# ---- zero padding of a map (torch F.pad, ONNX Pad, Keras ZeroPadding2D) ----------------------------

def zero_padding_conv(channels, top, bottom, left, right):
    """Zeros around a map, asymmetric too, as a depthwise conv: a one-hot kernel |top - bottom| + 1 by
    |left - right| + 1 with symmetric padding max(top, bottom), max(left, right) keeps every value in
    place (output row i reads input row i - top; rows past the input read the padding's zeros)."""
    w = np.zeros((channels, 1, abs(top - bottom) + 1, abs(left - right) + 1))
    w[:, 0, max(top, bottom) - top, max(left, right) - left] = 1.0
    return O.Conv2d(weight=w, padding=(max(top, bottom), max(left, right)), groups=channels)


def zero_pad(ctx, x, pads):
    """``x`` (a (C, H, W) Act) with ``pads`` = (top, bottom, left, right) zero rows/columns: the
    depthwise conv of :func:`zero_padding_conv`, then an IF copy (relu of non-negative values) when
    ``x`` is a ReLU's output, so what reads the padded map reads spikes as SNN form wants; any other
    input stays a linear value for the conv that reads it."""
    shape = ctx.shape(x)
    if len(shape) != 3:
        ctx.fail(f"zero padding needs a (C, H, W) map, got {shape}")
    if any(p < 0 for p in pads):
        ctx.fail(f"negative padding {tuple(pads)} (cropping) is not supported")
    if not any(pads):
        return x
    padded = ctx.emit(zero_padding_conv(shape[0], *pads), [x], suffix=".pad")
    return _spiking_copy(ctx, x, padded, ".pad.if")


# ---- transposed convolution and nearest upsampling (torch, ONNX, Keras) ---------------------------

def transposed_conv(ctx, w, bias, stride, padding, dilation, groups, output_padding=(0, 0)):
    """``conv_transpose2d(x, w, bias, stride, padding, output_padding, groups, dilation)`` (torch's
    weight layout (in, out/groups, kH, kW)) as the IR's Conv2d with input dilation ``stride``: the
    kernel flipped, in and out swapped per group, padding ``dilation * (k - 1) - padding``. Refused
    where that padding would be negative (a crop) or uneven (``output_padding``: one more row at the
    bottom/right only, where the IR pads symmetrically)."""
    w = np.asarray(w, np.float64)
    if w.ndim != 4:
        ctx.fail(f"only 2-D transposed convolutions are supported (weight {w.shape})")
    if any(output_padding):
        ctx.fail(f"a transposed convolution with output_padding {tuple(output_padding)} adds a row/column at the "
                 f"bottom/right only, and the IR pads symmetrically: use kernel_size = stride + 2 * padding "
                 f"(e.g. kernel 4, stride 2, padding 1) or nearest upsampling then a conv")
    pad = tuple(dilation[i] * (w.shape[2 + i] - 1) - padding[i] for i in range(2))
    if min(pad) < 0:
        ctx.fail(f"a transposed convolution with padding {tuple(padding)} beyond its kernel's reach crops its "
                 f"output, which snnc does not lower")
    i_all, og = w.shape[:2]
    ig = i_all // groups
    flipped = w[:, :, ::-1, ::-1].reshape(groups, ig, og, *w.shape[2:]).transpose(0, 2, 1, 3, 4)
    return O.Conv2d(weight=np.ascontiguousarray(flipped.reshape(groups * og, ig, *w.shape[2:])),
                    bias=bias, stride=(1, 1), padding=pad, dilation=tuple(dilation), groups=groups,
                    input_dilation=tuple(int(s) for s in stride))


def nearest_upsampling_conv(channels, scale):
    """Nearest upsampling by whole factors ``scale`` as a depthwise Conv2d with input dilation
    ``scale``, a kernel of ones ``scale`` wide and padding ``scale - 1``: output row ``y`` sees exactly
    one input row, ``y // scale``."""
    sh, sw = scale
    return O.Conv2d(weight=np.ones((channels, 1, sh, sw)), padding=(sh - 1, sw - 1), groups=channels,
                    input_dilation=(sh, sw))


def upsample_nearest(ctx, x, out_hw):
    """``x`` (a (C, H, W) Act) upsampled to ``out_hw`` by nearest neighbour, whole factors only; an IF
    copy follows a ReLU's output, as for zero padding, so that what reads it reads spikes."""
    shape = ctx.shape(x)
    if len(shape) != 3:
        ctx.fail(f"upsampling needs a (C, H, W) map, got {shape}")
    out_hw = tuple(int(v) for v in out_hw)
    if any(o % i or o < i for o, i in zip(out_hw, shape[1:])):
        ctx.fail(f"nearest upsampling {tuple(shape[1:])} -> {out_hw} is not by whole factors, which snnc "
                 f"does not lower (each output must copy one input pixel a whole number of times)")
    scale = tuple(o // i for o, i in zip(out_hw, shape[1:]))
    if scale == (1, 1):
        return x
    up = ctx.emit(nearest_upsampling_conv(shape[0], scale), [x], suffix=".up")
    return _spiking_copy(ctx, x, up, ".up.if")
