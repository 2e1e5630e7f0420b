"""Lowering Keras layers into the IR's own ops, one method per layer class (``_Dense``,
``_Conv2D``, ...): only the weight and layout conversions live here, no op's arithmetic (see
:mod:`.load` for the table and the layout rules)."""
from __future__ import annotations

import math

import numpy as np

from ... import ir, origins
from ...ir import ops as O
from ...ir.routing import Concat
from ..lowering import refuse_non_finite, zero_padding_conv
from ..pool_windows import average_pool, keras_same_windows
from .upsampling import conv_2d_transpose, moved, up_sampling_2d
from ..unconverted import why_keras
from .read import _Layer, _Reader

IDENTITIES = ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout")
MODELS = ("Sequential", "Functional", "Model")
_LINEAR = (None, "linear")
_SOFTMAX = "softmax"


class _Lower:
    """Emits IR ops layer by layer; tracks the current node, its shape and the Flatten permutation."""

    def __init__(self, rd: _Reader, layout: str):
        self.rd, self.layout = rd, layout
        self.g = ir.new_graph()
        self.cur, self.shape = None, None
        self.perm = None           # IR feature index of each Keras feature after a Flatten of a map
        self.softmax_at = None     # the layer whose softmax was dropped (nothing may follow it)
        self.layer = None
        self.shapes = {}           # IR node -> shape
        self.branches = []         # the values a layer joining branches reads (Add, Concatenate)

    def value(self) -> tuple:
        """What the last layer lowered outputs: (IR node, shape, Flatten permutation)."""
        return self.cur, self.shape, self.perm

    def enter(self, values) -> None:
        """Lower the next layer on ``values`` (one, or the branches an Add or Concatenate joins)."""
        self.cur, self.shape, self.perm = values[0]
        self.branches = list(values)

    def fail(self, msg: str):
        self.rd.fail(f"{self.layer}: {msg}")

    def emit(self, name: str, op, inputs=None) -> None:
        """Add ``op`` reading ``inputs`` (IR nodes; default: the current one) and make it current."""
        if self.softmax_at is not None:
            self.fail(f"follows the softmax of {self.softmax_at}; softmax is dropped only on the last layer "
                      f"(it does not change the predicted class there), elsewhere it is not supported")
        name = ir.unique_name(self.g, name)
        bad = refuse_non_finite(op)
        if bad:
            self.fail(bad)
        ins = ([self.cur] if self.cur is not None else []) if inputs is None else list(inputs)
        try:
            shape = O.infer_shape(op, [self.shapes[i] for i in ins])
        except ValueError as e:
            self.fail(str(e))
        ir.add_op(self.g, name, op, ins)
        self.shapes[name] = tuple(int(d) for d in shape)
        if hasattr(self.layer, "cls"):  # a Keras layer (not "the input"): its name and class, for reports
            origins.record(self.g, name, self.layer.name, self.layer.cls)
        self.cur, self.shape = name, tuple(int(d) for d in shape)

    # -- helpers
    def weights(self, required=(), optional=()):
        w = self.rd.weights(self.layer)
        unknown = sorted(set(w) - set(required) - set(optional))
        if unknown:
            self.fail(f"has weights {', '.join(unknown)} snnc does not know for this layer (a quantized or "
                      f"otherwise modified layer?)")
        missing = [k for k in required if k not in w]
        if missing:
            self.fail(f"lacks its weight(s) {', '.join(missing)} in model_weights/{self.layer.name}")
        return w

    def map_input(self):
        if len(self.shape) != 3:
            self.fail(f"needs an image (H, W, C) input, got a tensor of shape {self._keras_shape()}")
        self.check_format()

    def check_format(self):
        fmt = self.layer.data_format()
        if fmt != self.layout:
            self.fail(f"has data_format={fmt!r} while the model's other layers use {self.layout!r}; snnc needs "
                      f"one layout throughout")

    def _keras_shape(self):
        s = self.shape
        return (s[1], s[2], s[0]) if len(s) == 3 and self.layout == "channels_last" else s

    def pairs(self, key, default=None):
        v = self.layer.config.get(key, default)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return (v, v)
        if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(d, int) and d > 0 for d in v):
            return (int(v[0]), int(v[1]))
        self.fail(f"{key} must be one or two positive integers, got {v!r}")

    def same_padding(self, kernel, stride, dilation=(1, 1)):
        """Keras/TensorFlow 'same': out = ceil(in / stride), total padding split with the extra
        row/column after; the IR pads symmetrically, so only even totals are taken."""
        pads, totals = [], []
        for i in range(2):
            size = self.shape[1 + i]
            out = -(-size // stride[i])
            total = max((out - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1 - size, 0)
            totals.append(total)
            pads.append(total // 2)
        if any(t % 2 for t in totals):
            self.fail(f"padding='same' pads unevenly on the {self.shape[1]}x{self.shape[2]} map (kernel "
                      f"{tuple(kernel)}, strides {tuple(stride)}{', dilation ' + str(tuple(dilation)) if dilation != (1, 1) else ''}: "
                      f"{tuple(totals)} rows/columns, Keras puts the extra one at the bottom/right); the IR has "
                      f"symmetric padding only: use an odd kernel with strides 1, or a map size that makes the "
                      f"padding even")
        return tuple(pads)

    def padding(self, kernel, stride, dilation=(1, 1)):
        pad = str(self.layer.config.get("padding", "valid")).lower()
        if pad == "valid":
            return (0, 0)
        if pad == "same":
            return self.same_padding(kernel, stride, dilation)
        self.fail(f"padding={pad!r} is not supported (valid, or same when symmetric)")

    def activation(self, act, base):
        """The activation ``act`` applied after the op just emitted (``base`` names the IF node)."""
        if isinstance(act, dict):  # a serialized function: {"class_name": "function", "config": "relu"} ...
            act = act.get("config") if isinstance(act.get("config"), str) else act.get("class_name")
        if act in _LINEAR:
            return
        if act in ("relu", "relu6"):
            self.emit(base, O.IF(clip=6.0 if act == "relu6" else None))
            return
        if act == _SOFTMAX:
            if self.softmax_at is None:
                self.softmax_at = str(self.layer)
            return
        why = why_keras(act)
        self.fail(f"activation {act!r} is not supported{': ' + why if why else ''} (snnc converts 'relu' and 'relu6' "
                  f"into integrate-and-fire neurons; 'linear' needs nothing; 'softmax' is dropped on the last layer)")

    # -- layers
    def lower(self, lay: _Layer):
        self.layer = lay
        cls, cfg = lay.cls, lay.config
        if cls == "InputLayer" or cls in IDENTITIES:
            self.weights()
            return
        if cls in MODELS:
            self.fail("is a nested model; snnc reads one flat Sequential or chain-like Functional model: "
                      "rebuild it with the inner model's layers in place")
        handler = getattr(self, "_" + cls, None)
        if handler is None:
            why = why_keras(cls)
            self.fail(f"unsupported layer{': ' + why if why else ''} (snnc reads {supported()})")
        handler(lay, cfg)

    def _Dense(self, lay, cfg):
        if len(self.shape) != 1:
            self.fail(f"Dense on an input of shape {self._keras_shape()} acts on its last axis only; the IR's "
                      f"Dense takes vectors: add a Flatten before it")
        w = self.weights(["kernel"] + (["bias"] if cfg.get("use_bias", True) else []))
        k = w["kernel"]
        if k.ndim != 2 or k.shape[0] != self.shape[0]:
            self.fail(f"kernel of shape {k.shape} does not take {self.shape[0]} inputs")
        weight = k.T.copy()
        if self.perm is not None:
            weight = np.empty_like(weight)
            weight[:, self.perm] = k.T
            self.perm = None
        bias = w.get("bias")
        if bias is not None and bias.shape != (k.shape[1],):
            self.fail(f"bias of shape {bias.shape} does not match {k.shape[1]} units")
        self.emit(lay.name, O.Dense(weight=weight, bias=bias))
        self.activation(cfg.get("activation"), f"{lay.name}.relu")

    def _Conv2D(self, lay, cfg):
        self.map_input()
        w = self.weights(["kernel"] + (["bias"] if cfg.get("use_bias", True) else []))
        k = w["kernel"]
        groups = cfg.get("groups", 1)
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            self.fail(f"groups must be a positive integer, got {groups!r}")
        if k.ndim != 4:
            self.fail(f"kernel of shape {k.shape} is not (kH, kW, in, out)")
        stride, dil = self.pairs("strides", 1), self.pairs("dilation_rate", 1)
        kernel = (int(k.shape[0]), int(k.shape[1]))
        pad = self.padding(kernel, stride, dil)
        bias = w.get("bias")
        self.emit(lay.name, O.Conv2d(weight=np.ascontiguousarray(k.transpose(3, 2, 0, 1)), bias=bias,
                                     stride=stride, padding=pad, dilation=dil, groups=groups))
        self.activation(cfg.get("activation"), f"{lay.name}.relu")

    def _depthwise(self, k, name, bias):
        """A DepthwiseConv2D kernel (kH, kW, in, multiplier) as the IR's grouped Conv2d: output channel
        ``c * multiplier + m`` filters input channel c with ``k[:, :, c, m]`` (Keras' order)."""
        if k.ndim != 4 or k.shape[2] != self.shape[0]:
            self.fail(f"depthwise kernel of shape {k.shape} is not (kH, kW, {self.shape[0]}, multiplier)")
        stride, dil = self.pairs("strides", 1), self.pairs("dilation_rate", 1)
        kernel = (int(k.shape[0]), int(k.shape[1]))
        c, m = int(k.shape[2]), int(k.shape[3])
        weight = np.ascontiguousarray(k.transpose(2, 3, 0, 1)).reshape(c * m, 1, *kernel)
        self.emit(name, O.Conv2d(weight=weight, bias=bias, stride=stride, padding=self.padding(kernel, stride, dil),
                                 dilation=dil, groups=c))

    def _DepthwiseConv2D(self, lay, cfg):
        self.map_input()
        w = self.weights(["depthwise_kernel"] + (["bias"] if cfg.get("use_bias", True) else []))
        self._depthwise(w["depthwise_kernel"], lay.name, w.get("bias"))
        self.activation(cfg.get("activation"), f"{lay.name}.relu")

    def _SeparableConv2D(self, lay, cfg):
        """A depthwise conv then a pointwise one, no activation between (compose_linear makes them one conv)."""
        self.map_input()
        w = self.weights(["depthwise_kernel", "pointwise_kernel"] + (["bias"] if cfg.get("use_bias", True) else []))
        self._depthwise(w["depthwise_kernel"], f"{lay.name}.depthwise", None)
        p = w["pointwise_kernel"]
        if p.ndim != 4 or p.shape[:3] != (1, 1, self.shape[0]):
            self.fail(f"pointwise kernel of shape {p.shape} is not (1, 1, {self.shape[0]}, filters)")
        self.emit(lay.name, O.Conv2d(weight=np.ascontiguousarray(p.transpose(3, 2, 0, 1)), bias=w.get("bias")))
        self.activation(cfg.get("activation"), f"{lay.name}.relu")

    def _ZeroPadding2D(self, lay, cfg):
        """Zeros around the map (asymmetric too): lowering.zero_padding_conv; after a ReLU an IF copy
        follows (relu of non-negative values), so what reads the padded map reads spikes."""
        self.map_input()
        self.weights()
        v = cfg.get("padding", 1)
        pads = ((v, v), (v, v)) if isinstance(v, int) else tuple(
            (int(p), int(p)) if isinstance(p, int) else tuple(int(q) for q in p) for p in v)
        if len(pads) != 2 or any(len(p) != 2 or min(p) < 0 for p in pads):
            self.fail(f"padding must be an int, (rows, cols) or ((top, bottom), (left, right)) of integers >= 0, got {v!r}")
        (top, bottom), (left, right) = pads
        moved(self, lay.name, zero_padding_conv(self.shape[0], top, bottom, left, right))

    def _joined(self, what):
        """The distinct IR nodes the branches end at, and their (common) Flatten permutation."""
        nodes = [b[0] for b in self.branches]
        if len(set(nodes)) != len(nodes):
            self.fail(f"{what} one tensor with itself; not supported")
        return nodes

    def _Add(self, lay, cfg):
        """A residual sum of branches of one shape (and one feature order)."""
        self.weights()
        nodes = self._joined("adds")
        if len({b[1] for b in self.branches}) != 1 or any(b[2] is not None for b in self.branches):
            self.fail(f"adds tensors of shapes {[b[1] for b in self.branches]}; snnc adds tensors of one shape, "
                      f"not flattened maps")
        self.emit(lay.name, O.Add(), nodes)

    def _Concatenate(self, lay, cfg):
        """Branches joined on the channel axis (the last one channels-last, axis 1 channels-first) or
        the feature axis of vectors; flattened maps keep their Keras feature order."""
        self.weights()
        nodes = self._joined("concatenates")
        rank = len(self.branches[0][1]) + 1
        axis = cfg.get("axis", -1)
        if not isinstance(axis, int) or isinstance(axis, bool) or not -rank <= axis < rank:
            self.fail(f"axis must be an axis of a rank-{rank} tensor, got {axis!r}")
        channel = 1 if rank == 4 and self.layout == "channels_first" else rank - 1
        if axis % rank != channel:
            self.fail(f"concatenates along axis {axis}; snnc concatenates channels (or features): axis {channel}")
        if any(b[2] is not None for b in self.branches):  # Keras features of each part, placed after the ones before
            offsets = np.cumsum([0] + [b[1][0] for b in self.branches])
            self.perm = np.concatenate([(np.arange(b[1][0]) if b[2] is None else b[2]) + o
                                        for b, o in zip(self.branches, offsets)])
        self.emit(lay.name, Concat(), nodes)

    def _pool_args(self):
        self.map_input()
        k = self.pairs("pool_size", 2)
        s = self.pairs("strides") if self.layer.config.get("strides") is not None else k
        return k, s

    def _AveragePooling2D(self, lay, cfg):
        """An AvgPool2d; with padding='same' over a map it pads, a WindowAvgPool2d (Keras leaves the
        padding out of each border window's mean), folded into the Dense after it."""
        k, s = self._pool_args()
        self.weights()
        if str(cfg.get("padding", "valid")).lower() == "same":
            rows, cols = (keras_same_windows(self.shape[1 + i], k[i], s[i]) for i in range(2))
            self.emit(lay.name, average_pool(rows, cols, k, s, (0, 0)))
            return
        self.emit(lay.name, O.AvgPool2d(kernel_size=k, stride=s, padding=self.padding(k, s)))

    def _MaxPooling2D(self, lay, cfg):
        if not hasattr(O, "MaxPool2d"):  # pragma: no cover - an IR without max pooling
            self.fail("max pooling is not supported by this IR")
        k, s = self._pool_args()
        self.weights()
        self.emit(lay.name, O.MaxPool2d(kernel_size=k, stride=s, padding=self.padding(k, s)))

    def _GlobalAveragePooling2D(self, lay, cfg):
        self.map_input()
        if cfg.get("keepdims"):
            self.fail("keepdims=True keeps a 1x1 map whose Flatten order snnc does not track; use keepdims=False")
        self.weights()
        hw = self.shape[1:]
        self.emit(lay.name, O.AvgPool2d(kernel_size=hw, stride=hw))
        self.emit(f"{lay.name}.flatten", O.Flatten())

    def _BatchNormalization(self, lay, cfg):
        axis = cfg.get("axis", -1)
        if isinstance(axis, list):
            if len(axis) != 1:
                self.fail(f"normalizes over axes {axis}; only the channel axis is supported")
            axis = axis[0]
        rank = len(self.shape) + 1
        if not isinstance(axis, int) or not -rank <= axis < rank:
            self.fail(f"axis {axis!r} is not an axis of its {rank - 1}-d input")
        channel = 1 if len(self.shape) == 1 or self.layout == "channels_first" else 3
        if axis % rank != channel:
            self.fail(f"normalizes axis {axis} of an input of shape {self._keras_shape()}; only the channel "
                      f"(feature) axis is supported")
        if cfg.get("renorm"):
            self.fail("renorm=True is not supported")
        w = self.weights(["moving_mean", "moving_variance"], ["gamma", "beta"])
        n = self.shape[0]
        mean, var = w["moving_mean"], w["moving_variance"]
        gamma = w.get("gamma", np.ones(n)) if cfg.get("scale", True) else np.ones(n)
        beta = w.get("beta", np.zeros(n)) if cfg.get("center", True) else np.zeros(n)
        if any(a.shape != (n,) for a in (mean, var, gamma, beta)):
            self.fail(f"statistics of shapes {[a.shape for a in (mean, var, gamma, beta)]} do not match {n} channels")
        if self.perm is not None:  # per feature of a flattened map: move each to the IR's feature order
            mean, var, gamma, beta = (_scatter(a, self.perm) for a in (mean, var, gamma, beta))
        eps = float(cfg.get("epsilon", 1e-3))
        self.emit(lay.name, O.BatchNorm(mean=mean, var=var, weight=gamma, bias=beta, eps=eps))

    def _Flatten(self, lay, cfg):
        self.weights()
        if len(self.shape) == 1:
            return
        if len(self.shape) != 3:
            self.fail(f"Flatten of a tensor of shape {self.shape} is not supported")
        c, h, wd = self.shape
        index = np.arange(c * h * wd).reshape(c, h, wd)                      # IR feature index per element
        keras = index.transpose(1, 2, 0) if self.layout == "channels_last" else index  # as Keras stores it
        if lay.data_format() == "channels_first":
            keras = np.moveaxis(keras, 0, -1)                                  # Keras' Flatten moves axis 1 last
        perm = keras.reshape(-1)
        self.emit(lay.name, O.Flatten())
        self.perm = None if np.array_equal(perm, np.arange(perm.size)) else perm

    def _Activation(self, lay, cfg):
        self.weights()
        self.activation(cfg.get("activation"), lay.name)

    def _ReLU(self, lay, cfg):
        self.weights()
        # max_value 0 clamps every output to 0: only None is "no maximum"; a zero slope or threshold is ReLU's own
        extra = {k: cfg.get(k) for k in ("negative_slope", "threshold") if cfg.get(k) is not None and cfg.get(k) != 0}
        if extra:
            self.fail(f"ReLU with {extra} is not a plain ReLU; only ReLU() and ReLU(max_value=a) are supported")
        top = cfg.get("max_value")
        if top is not None and (isinstance(top, bool) or not isinstance(top, (int, float))
                                or not (math.isfinite(top) and top > 0)):
            self.fail(f"ReLU with max_value {top!r}: a clipped ReLU needs a finite number > 0 (or None: no maximum)")
        self.emit(lay.name, O.IF(clip=None if top is None else float(top)))

    def _Softmax(self, lay, cfg):
        self.weights()
        self.activation(_SOFTMAX, lay.name)

    _UpSampling2D = up_sampling_2d
    _Conv2DTranspose = conv_2d_transpose


_FORMS = {"Activation": "Activation('relu', 'relu6' or 'softmax')", "ReLU": "ReLU (max_value too)",
          "ZeroPadding2D": "ZeroPadding2D (after a ReLU, or before a linear op)",
          "Softmax": "Softmax (last layer)"}


def supported() -> str:
    """What a refusal says snnc reads: the layer methods of :class:`_Lower` (its handler table)."""
    layers = [n[1:] for n in vars(_Lower) if n.startswith("_") and n[1:2].isupper()]
    names = ["InputLayer"] + [_FORMS.get(n, n) for n in layers] + list(IDENTITIES)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _scatter(a, perm):
    out = np.empty_like(a)
    out[perm] = a
    return out
