"""Keras frontend: a Keras ``.h5`` model file -> IR graph, read with h5py alone (no TensorFlow).

Reads what ``model.save("model.h5")`` writes in Keras 2 (tf.keras) and Keras 3, as ANNarchy's
converter does: the model's config JSON (the file's ``model_config`` attribute) and the weights
under ``model_weights/<layer>/``. Both versions list a layer's weights in that group's
``weight_names`` attribute (Keras 2: ``dense/kernel:0`` at ``model_weights/dense/dense/kernel:0``;
Keras 3: ``sequential/dense/kernel`` at ``model_weights/dense/sequential/dense/kernel``), which is
how Keras itself loads them; a weight is known by the last part of its name (``kernel``, ``bias``,
``gamma``, ``beta``, ``moving_mean``, ``moving_variance``). Nothing in the file is executed.

Models: ``Sequential``, and ``Functional`` (Keras 2: ``Model``/``Functional``) models that are a
single chain of layers; anything else (branches, joins, shared or nested models) is refused.
Layers become the IR's own ops (``snn_compiler.ir.ops``; this module holds no copy of any op's
arithmetic, only the weight and layout conversions):

============================ ==============================================================
Keras layer                  IR
============================ ==============================================================
InputLayer                   the ``Input`` (its shape; nothing else)
Dense                        ``Dense`` (kernel ``(in, out)`` -> weight ``(out, in)``)
Conv2D                       ``Conv2d`` (kernel HWIO -> OIHW; strides, dilation, groups;
                             padding ``valid``, or ``same`` when it pads symmetrically)
AveragePooling2D             ``AvgPool2d`` (``same`` only when it adds no padding: Keras
                             leaves padding out of the mean, the IR counts it)
MaxPooling2D                 ``MaxPool2d`` (``same`` when symmetric; lowered by lower_maxpool)
GlobalAveragePooling2D       ``AvgPool2d`` over the whole map + ``Flatten``
BatchNormalization           ``BatchNorm`` (channel axis only; folded by fold_batchnorm)
Flatten                      ``Flatten`` (see the layout below)
Activation('relu'), ReLU()   ``IF``; so does ``activation="relu"`` inside a layer
Dropout, SpatialDropout2D,   nothing (identities at inference)
GaussianNoise/-Dropout
============================ ==============================================================

``activation="linear"`` needs nothing. ``softmax`` (an activation, an ``Activation`` or a
``Softmax`` layer) is dropped when nothing but identities follows it: it is monotone, so the
predicted class (the argmax) is unchanged, and the read-out then gives the logits, not
probabilities. Every other activation is refused naming the layer (its Keras name and class).
A model whose last layer ends in a ReLU gets that IF layer as its read-out (as the torch
frontend does): the read-out is the identity, which changes no positive output.

Layout. The IR is channels-first (``(C, H, W)``, torch's order); a Keras image model normally
takes channels-last data (``(N, H, W, C)``, ``data_format="channels_last"``, Keras' default).
Weights are converted so the IR computes the same function on channels-first data: conv
kernels are transposed, and because Keras' ``Flatten`` orders features as ``(H, W, C)`` while
the IR's flattens ``(C, H, W)``, the columns of the ``Dense`` after a ``Flatten`` (and any
per-feature ``BatchNormalization`` between them) are permuted to match. The graph records the
layout its data comes in: ``graph.graph["snnc"]["input_layout"]`` is ``"channels_last"`` (or
``"channels_first"`` for a model built with ``data_format="channels_first"``) for an image
input, and ``["keras_input_shape"]`` the shape as Keras declares it (batch axis excluded);
:func:`to_channels_first` converts such data once, explicitly. Vector inputs have no layout.
"""
from __future__ import annotations

import io
import json
import os
from typing import Optional

import numpy as np

from ... import ir
from ...ir import ops as O
from ..errors import FrontendError, NeedsInputShape

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

LAYOUTS = ("channels_last", "channels_first")
MAX_WEIGHT_ELEMENTS = 1 << 28  # one weight array (2 GiB as float64): far above any network snnc maps

SUPPORTED = ("InputLayer, Dense, Conv2D, AveragePooling2D, MaxPooling2D, GlobalAveragePooling2D, "
             "BatchNormalization, Flatten, Activation('relu'), ReLU, Dropout, SpatialDropout2D, "
             "GaussianNoise and GaussianDropout")
_IDENTITIES = ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout")
_SPATIAL = ("Conv2D", "AveragePooling2D", "MaxPooling2D", "GlobalAveragePooling2D")
_MODELS = ("Sequential", "Functional", "Model")
_LINEAR = (None, "linear")
_SOFTMAX = "softmax"
_ALIASES = {"Convolution2D": "Conv2D", "AvgPool2D": "AveragePooling2D", "MaxPool2D": "MaxPooling2D",
            "GlobalAvgPool2D": "GlobalAveragePooling2D"}


def is_hdf5(head: bytes) -> bool:
    """Whether a file's first bytes are HDF5's signature (Keras .h5 files start with it)."""
    return head.startswith(HDF5_MAGIC)


def to_channels_first(x, shape=None) -> np.ndarray:
    """Channels-last samples ``(N, H, W, C)`` -> channels-first ``(N, C, H, W)``, one contiguous copy.

    ``shape``: the IR's ``(C, H, W)`` input shape; when given, ``x`` must be ``(N, H, W, C)`` for it.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"channels-last image data must be (N, H, W, C), got shape {x.shape}")
    if shape is not None:
        c, h, w = (int(d) for d in shape)
        if tuple(x.shape[1:]) != (h, w, c):
            raise ValueError(f"channels-last samples for a (C, H, W) = {(c, h, w)} input must be (H, W, C) = "
                             f"{(h, w, c)}, got {tuple(x.shape[1:])}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# ---- reading the file ----------------------------------------------------------------------------

def _text(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _text(v.item())
    return str(v)


def _names(attr) -> list:
    """A ``weight_names`` / ``layer_names`` attribute as a list of str (an empty one is stored as a
    float64 array of length 0)."""
    if attr is None:
        return []
    return [_text(v) for v in np.asarray(attr).reshape(-1)] if np.asarray(attr).size else []


class _Reader:
    """The open file: messages name it; weights are read per layer."""

    def __init__(self, f, where: str):
        self.f = f
        self.where = where

    def fail(self, msg: str):
        raise FrontendError(f"{self.where}: {msg}")

    def config(self) -> dict:
        raw = self.f.attrs.get("model_config")
        if raw is None:
            if "layers" in self.f or "model_weights" not in self.f and "layer_names" in self.f.attrs:
                self.fail("holds weights only (model.save_weights), not a model: it has no architecture "
                          "(model_config). Save the whole model with model.save('model.h5')")
            self.fail("is an HDF5 file but not a Keras model (no model_config attribute); snnc reads Keras "
                      "files written by model.save('model.h5')")
        try:
            cfg = json.loads(_text(raw))
        except (ValueError, UnicodeDecodeError) as e:
            self.fail(f"its model_config is not valid JSON ({e})")
        if not isinstance(cfg, dict) or "class_name" not in cfg or "config" not in cfg:
            self.fail("its model_config is not a Keras model config (no class_name/config)")
        return cfg

    def version(self) -> Optional[str]:
        mw = self._child(self.f, "model_weights", "model_weights")
        for holder in (self.f.attrs, mw.attrs if mw is not None else {}):
            if "keras_version" in holder:
                return _text(holder["keras_version"])
        return None

    def _child(self, parent, name: str, what: str):
        """``parent[name]`` when it is stored in this file (a hard link), None when absent. Soft and
        external links are refused, so a file cannot make snnc read other files."""
        import h5py
        link = parent.get(name, getlink=True)
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            self.fail(f"{what} is a {type(link).__name__} to another place or file; snnc reads models stored "
                      f"in the file itself")
        return parent[name]

    def _dataset(self, grp, full: str, layer):
        """The dataset ``grp/full``, its data stored in this file, of a sane size."""
        import h5py
        node = grp
        for part in full.split("/"):
            node = self._child(node, part, f"{layer}: weight {full!r}") if isinstance(node, h5py.Group) else None
            if node is None:
                self.fail(f"{layer}: weight {full!r} is listed but missing from model_weights/{layer.name}")
        if not isinstance(node, h5py.Dataset):
            self.fail(f"{layer}: weight {full!r} is not a dataset")
        if node.external or node.is_virtual:
            self.fail(f"{layer}: weight {full!r} keeps its data outside the file (external or virtual dataset); "
                      f"snnc reads weights stored in the file itself")
        if node.size > MAX_WEIGHT_ELEMENTS:
            self.fail(f"{layer}: weight {full!r} has {node.size:,} elements, more than snnc reads "
                      f"({MAX_WEIGHT_ELEMENTS:,})")
        return node

    def weights(self, layer: "_Layer") -> dict:
        """{short name: float64 array} of ``layer``'s weights (``kernel``, ``bias``, ...)."""
        mw = self._child(self.f, "model_weights", "model_weights")
        if mw is None:
            self.fail("has no model_weights group, so no weights; snnc reads files written by model.save('model.h5')")
        grp = self._child(mw, layer.name, f"model_weights/{layer.name}")
        if grp is None:
            return {}
        names = _names(grp.attrs.get("weight_names"))
        if not names and "weight_names" not in grp.attrs:  # not written by Keras: every dataset, in order
            names = []
            grp.visititems(lambda n, o: names.append(n) if hasattr(o, "shape") else None)  # hard links only
        out = {}
        for full in names:
            ds = self._dataset(grp, full, layer)
            short = full.rsplit("/", 1)[-1].split(":", 1)[0]
            if short in out:
                self.fail(f"{layer}: two weights are named {short!r}")
            arr = np.asarray(ds[()])
            if arr.dtype.kind not in "fiu":
                self.fail(f"{layer}: weight {full!r} is not numeric ({arr.dtype})")
            arr = arr.astype(np.float64)
            if not np.all(np.isfinite(arr)):
                self.fail(f"{layer}: weight {full!r} holds NaN or infinite values")
            out[short] = arr
        return out


class _Layer:
    def __init__(self, entry: dict):
        self.cls = str(entry.get("class_name"))
        self.cls = _ALIASES.get(self.cls, self.cls)
        self.config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        self.name = str(self.config.get("name", entry.get("name", "?")))
        self.entry = entry

    def __str__(self):
        return f"layer {self.name!r} ({self.cls})"


# ---- the model's layers in order -----------------------------------------------------------------

def _history(v, found):
    """Names of the layers whose outputs ``v`` (a Keras 2 or 3 inbound-node structure) refers to."""
    if isinstance(v, dict):
        if v.get("class_name") == "__keras_tensor__":
            hist = (v.get("config") or {}).get("keras_history")
            if isinstance(hist, list) and hist:
                found.append(str(hist[0]))
            return
        for x in v.values():
            _history(x, found)
    elif isinstance(v, list):
        if len(v) >= 3 and isinstance(v[0], str) and isinstance(v[1], int) and isinstance(v[2], int):
            found.append(v[0])  # Keras 2: [layer name, node index, tensor index, kwargs]
            return
        for x in v:
            _history(x, found)


def _endpoints(v) -> list:
    """``input_layers`` / ``output_layers``: [[name, node, tensor], ...] or one [name, node, tensor]."""
    if isinstance(v, list) and len(v) == 3 and isinstance(v[0], str):
        return [v[0]]
    if isinstance(v, dict):  # a nested structure of endpoints
        return [n for x in v.values() for n in _endpoints(x)]
    return [x[0] for x in v] if isinstance(v, list) else []


def _chain(rd: _Reader, cfg: dict) -> list:
    """The layers of a Functional model that is a chain, input first; refuse anything else."""
    entries = cfg.get("layers") or []
    layers = {}
    for e in entries:
        lay = _Layer(e)
        lay.name = str(e.get("name", lay.name))
        layers[lay.name] = lay
    ins, outs = _endpoints(cfg.get("input_layers")), _endpoints(cfg.get("output_layers"))
    if len(ins) != 1 or len(outs) != 1:
        rd.fail(f"the model has {len(ins)} inputs and {len(outs)} outputs; snnc reads models with one input "
                f"and one output")
    sources = {}
    for name, lay in layers.items():
        nodes = lay.entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            rd.fail(f"{lay} is called {len(nodes)} times (a shared layer); snnc reads Sequential models and "
                    f"Functional models that are a single chain of layers")
        found = []
        _history(nodes, found)
        if lay.cls != "InputLayer" and len(found) != 1:
            rd.fail(f"{lay} takes {len(found)} inputs ({', '.join(found) or 'none'}); snnc reads Sequential "
                    f"models and Functional models that are a single chain of layers")
        sources[name] = found[0] if found else None
    consumers = {}
    for name, src in sources.items():
        if src is not None:
            consumers.setdefault(src, []).append(name)
    order, name = [], outs[0]
    while name is not None:
        if name not in layers:
            rd.fail(f"the model config refers to a layer {name!r} it does not define")
        if name in order:
            rd.fail("the model config's layers form a cycle")
        if len(consumers.get(name, [])) > 1 and name != outs[0]:
            rd.fail(f"{layers[name]} feeds {len(consumers[name])} layers ({', '.join(consumers[name])}); snnc "
                    f"reads Sequential models and Functional models that are a single chain of layers")
        order.append(name)
        name = sources[name]
    order.reverse()
    if order[0] != ins[0]:
        rd.fail(f"the model's output does not depend on its input {ins[0]!r}")
    extra = [n for n in layers if n not in order]
    if extra:
        rd.fail(f"layers {', '.join(extra)} are not on the path from the input to the output; snnc reads "
                f"Sequential models and Functional models that are a single chain of layers")
    return [layers[n] for n in order]


def _layers(rd: _Reader, cfg: dict) -> tuple:
    """(kind, [layers in order], model config) of the top-level model."""
    kind, inner = str(cfg["class_name"]), cfg["config"]
    if kind == "Sequential":
        entries = inner if isinstance(inner, list) else inner.get("layers")  # Keras <= 2.2: a plain list
        if not isinstance(entries, list):
            rd.fail("its Sequential config has no list of layers")
        return kind, [_Layer(e) for e in entries if isinstance(e, dict)], (inner if isinstance(inner, dict) else {})
    if kind in ("Functional", "Model"):
        return kind, _chain(rd, inner), inner
    rd.fail(f"holds a {kind} model; snnc reads Sequential models and Functional models that are a single "
            f"chain of layers")


def _declared_shape(layers, model_cfg) -> Optional[list]:
    """The input shape as Keras declares it (batch axis excluded; None for a free size)."""
    for lay in layers:
        for key in ("batch_shape", "batch_input_shape"):
            if isinstance(lay.config.get(key), list):
                return list(lay.config[key][1:])
        if lay.cls == "InputLayer" and isinstance(lay.config.get("input_shape"), list):
            return list(lay.config["input_shape"])
        if lay.cls != "InputLayer":
            break
    b = model_cfg.get("build_input_shape")
    if isinstance(b, list) and b and not isinstance(b[0], list):
        return list(b[1:])
    return None


# ---- lowering ------------------------------------------------------------------------------------

class _Lower:
    """Emits IR ops layer by layer; tracks the current node, its shape and the Flatten permutation."""

    def __init__(self, rd: _Reader, layout: str):
        self.rd, self.layout = rd, layout
        self.g = ir.new_graph()
        self.cur, self.shape = None, None
        self.perm = None           # IR feature index of each Keras feature after a Flatten of a map
        self.softmax_at = None     # the layer whose softmax was dropped (nothing may follow it)
        self.layer = None

    def fail(self, msg: str):
        self.rd.fail(f"{self.layer}: {msg}")

    def emit(self, name: str, op) -> None:
        if self.softmax_at is not None:
            self.fail(f"follows the softmax of {self.softmax_at}; softmax is dropped only on the last layer "
                      f"(it does not change the predicted class there), elsewhere it is not supported")
        name = ir.unique_name(self.g, name)
        try:
            shape = O.infer_shape(op, [self.shape] if self.cur is not None else [])
        except ValueError as e:
            self.fail(str(e))
        ir.add_op(self.g, name, op, [self.cur] if self.cur is not None else [])
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
        fmt = self.layer.config.get("data_format") or "channels_last"
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

    def same_padding(self, kernel, stride, dilation=(1, 1), pool=None):
        """Keras/TensorFlow 'same': out = ceil(in / stride), total padding split with the extra
        row/column after; the IR pads symmetrically, so only even totals are taken."""
        pads, totals = [], []
        for i in range(2):
            size = self.shape[1 + i]
            out = -(-size // stride[i])
            total = max((out - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1 - size, 0)
            totals.append(total)
            pads.append(total // 2)
        if pool == "avg" and any(totals):
            self.fail(f"padding='same' pads the {self.shape[1]}x{self.shape[2]} map by {tuple(totals)} rows/columns; "
                      f"Keras leaves padding out of the average, the IR's AvgPool2d counts it: use padding='valid' "
                      f"or a map size the pool divides")
        if any(t % 2 for t in totals):
            self.fail(f"padding='same' pads unevenly on the {self.shape[1]}x{self.shape[2]} map (kernel "
                      f"{tuple(kernel)}, strides {tuple(stride)}{', dilation ' + str(tuple(dilation)) if dilation != (1, 1) else ''}: "
                      f"{tuple(totals)} rows/columns, Keras puts the extra one at the bottom/right); the IR has "
                      f"symmetric padding only: use an odd kernel with strides 1, or a map size that makes the "
                      f"padding even")
        return tuple(pads)

    def padding(self, kernel, stride, dilation=(1, 1), pool=None):
        pad = str(self.layer.config.get("padding", "valid")).lower()
        if pad == "valid":
            return (0, 0)
        if pad == "same":
            return self.same_padding(kernel, stride, dilation, pool)
        self.fail(f"padding={pad!r} is not supported (valid, or same when symmetric)")

    def activation(self, act, base):
        """The activation ``act`` applied after the op just emitted (``base`` names the IF node)."""
        if isinstance(act, dict):  # a serialized function: {"class_name": "function", "config": "relu"} ...
            act = act.get("config") if isinstance(act.get("config"), str) else act.get("class_name")
        if act in _LINEAR:
            return
        if act == "relu":
            self.emit(base, O.IF())
            return
        if act == _SOFTMAX:
            if self.softmax_at is None:
                self.softmax_at = str(self.layer)
            return
        self.fail(f"activation {act!r} is not supported (snnc converts 'relu' into integrate-and-fire neurons; "
                  f"'linear' needs nothing; 'softmax' is dropped on the last layer)")

    # -- layers
    def lower(self, lay: _Layer):
        self.layer = lay
        cls, cfg = lay.cls, lay.config
        if cls == "InputLayer" or cls in _IDENTITIES:
            self.weights()
            return
        if cls in _MODELS:
            self.fail("is a nested model; snnc reads one flat Sequential or chain-like Functional model: "
                      "rebuild it with the inner model's layers in place")
        handler = getattr(self, "_" + cls, None)
        if handler is None:
            self.fail(f"unsupported layer (snnc reads {SUPPORTED})")
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
        groups = int(cfg.get("groups", 1) or 1)
        if k.ndim != 4:
            self.fail(f"kernel of shape {k.shape} is not (kH, kW, in, out)")
        stride, dil = self.pairs("strides", 1), self.pairs("dilation_rate", 1)
        kernel = (int(k.shape[0]), int(k.shape[1]))
        pad = self.padding(kernel, stride, dil)
        bias = w.get("bias")
        self.emit(lay.name, O.Conv2d(weight=np.ascontiguousarray(k.transpose(3, 2, 0, 1)), bias=bias,
                                     stride=stride, padding=pad, dilation=dil, groups=groups))
        self.activation(cfg.get("activation"), f"{lay.name}.relu")

    def _pool_args(self):
        self.map_input()
        k = self.pairs("pool_size", 2)
        s = self.pairs("strides") if self.layer.config.get("strides") is not None else k
        return k, s

    def _AveragePooling2D(self, lay, cfg):
        k, s = self._pool_args()
        self.weights()
        self.emit(lay.name, O.AvgPool2d(kernel_size=k, stride=s, padding=self.padding(k, s, pool="avg")))

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
        if (cfg.get("data_format") or "channels_last") == "channels_first":
            keras = np.moveaxis(keras, 0, -1)                                  # Keras' Flatten moves axis 1 last
        perm = keras.reshape(-1)
        self.emit(lay.name, O.Flatten())
        self.perm = None if np.array_equal(perm, np.arange(perm.size)) else perm

    def _Activation(self, lay, cfg):
        self.weights()
        self.activation(cfg.get("activation"), lay.name)

    def _ReLU(self, lay, cfg):
        self.weights()
        extra = {k: cfg.get(k) for k in ("max_value", "negative_slope", "threshold") if cfg.get(k) not in (None, 0, 0.0)}
        if extra:
            self.fail(f"ReLU with {extra} is not a plain ReLU; only ReLU() is supported")
        self.emit(lay.name, O.IF())

    def _Softmax(self, lay, cfg):
        self.weights()
        self.activation(_SOFTMAX, lay.name)


def _scatter(a, perm):
    out = np.empty_like(a)
    out[perm] = a
    return out


def _layout(rd, layers) -> str:
    for lay in layers:
        if lay.cls in _SPATIAL:
            fmt = lay.config.get("data_format") or "channels_last"
            if fmt not in LAYOUTS:
                rd.fail(f"{lay}: data_format {fmt!r} is not one of {', '.join(LAYOUTS)}")
            return fmt
    return "channels_last"  # Keras' default image_data_format


def _input_shape(rd, declared, layout, input_shape) -> tuple:
    """(IR input shape, Keras input shape). An (H, W) input without a channel axis becomes (1, H, W)."""
    if declared is not None and len(declared) not in (1, 2, 3):
        rd.fail(f"takes inputs of shape {tuple(declared)}; snnc reads vector (F,) and image inputs")
    if declared is None:
        if input_shape is None:
            raise NeedsInputShape(f"{rd.where}: the model config records no input shape: {NeedsInputShape.HOW}")
        ir_shape = [None] * len(tuple(input_shape))
    elif len(declared) == 3 and layout == "channels_last":
        ir_shape = [declared[2], declared[0], declared[1]]
    elif len(declared) == 2:
        ir_shape = [1] + list(declared)
    else:
        ir_shape = list(declared)
    if input_shape is not None:
        given = tuple(int(d) for d in input_shape)
        if len(given) != len(ir_shape) or any(d is not None and d != e for d, e in zip(ir_shape, given)):
            shown = tuple("?" if d is None else d for d in ir_shape)
            rd.fail(f"input_shape {given} does not match the model's input {shown}"
                    f"{' (C, H, W)' if len(ir_shape) == 3 else ''}")
        ir_shape = list(given)
    if any(d is None for d in ir_shape):
        raise NeedsInputShape(f"{rd.where}: the model's input {tuple(declared)} has free sizes: {NeedsInputShape.HOW}")
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in ir_shape):
        rd.fail(f"input shape {tuple(declared)} is not a shape of positive sizes")
    ir_shape = tuple(ir_shape)
    if declared is not None and len(declared) == 2:
        keras_shape = ir_shape[1:]
    elif len(ir_shape) == 3 and layout == "channels_last":
        keras_shape = (ir_shape[1], ir_shape[2], ir_shape[0])
    else:
        keras_shape = ir_shape
    return ir_shape, keras_shape


def from_keras_h5(source, input_shape: Optional[tuple] = None, name: Optional[str] = None):
    """IR graph of a Keras model saved as ``.h5`` (``model.save("model.h5")``, Keras 2 or 3).

    ``source``: a path, the file's bytes, or a binary file object (``name`` names it in messages).
    ``input_shape``: the IR's input shape, channels first (``(C, H, W)`` or ``(F,)``); needed only
    when the model does not record one. The graph records ``input_layout`` and
    ``keras_input_shape`` in ``graph.graph["snnc"]`` (see the module docstring): image data for a
    channels-last model must go through :func:`to_channels_first` once before it reaches the IR.
    A last-layer softmax is dropped (the argmax is unchanged; the outputs are the logits).
    """
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency of the interop extra
        raise FrontendError("reading Keras .h5 files needs h5py (pip install h5py)") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        where, handle = name or "the Keras file", io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        where, handle = name or getattr(source, "name", "the Keras file"), source
    else:
        where = name or os.fspath(source)
        if not os.path.isfile(where):
            raise FrontendError(f"{where}: no such file")
        handle = os.fspath(source)
    try:
        f = h5py.File(handle, "r")
    except (OSError, ValueError) as e:
        raise FrontendError(f"{where}: not a readable HDF5 file ({' '.join(str(e).split())})") from None
    with f:
        rd = _Reader(f, where)
        cfg = rd.config()
        kind, layers, model_cfg = _layers(rd, cfg)
        layout = _layout(rd, layers)
        ir_shape, keras_shape = _input_shape(rd, _declared_shape(layers, model_cfg), layout, input_shape)
        low = _Lower(rd, layout)
        low.layer = "the input"
        low.emit("input", O.Input(shape=ir_shape))
        for lay in layers:
            low.lower(lay)
        low.layer = "the model's output"
        if low.cur == "input":
            rd.fail("the model computes nothing from its input (no layer snnc converts)")
        if low.perm is not None:
            rd.fail("the model ends in a Flatten of a multi-channel map: its feature order (H, W, C) differs "
                    "from the IR's (C, H, W) Flatten, and only a following Dense can absorb the difference")
        g = low.g
        out = ir.add_readout(g, low.cur)
        meta = g.graph["snnc"]
        meta["source_format"] = "keras-h5"
        version = rd.version()
        if version:
            meta["keras_version"] = version
        meta["keras_input_shape"] = [int(d) for d in keras_shape]
        if len(keras_shape) == 3:
            meta["input_layout"] = layout
        if low.softmax_at is not None:
            meta["dropped"] = [f"softmax of {low.softmax_at}"]
    try:
        ir.verify(g)
    except ir.IRError as e:  # pragma: no cover - a frontend bug, not a model problem
        raise FrontendError(f"internal error: the lowered graph is invalid: {e}") from e
    return g
