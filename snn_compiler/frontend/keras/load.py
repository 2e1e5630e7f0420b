"""Keras frontend: a Keras ``.h5`` model file -> IR graph, read with h5py alone (no TensorFlow).

Reads what ``model.save("model.h5")`` writes in Keras 2 (tf.keras) and Keras 3, as ANNarchy's
converter does: the model's config JSON (the file's ``model_config`` attribute) and the weights
under ``model_weights/<layer>/``. Both versions list a layer's weights in that group's
``weight_names`` attribute (Keras 2: ``dense/kernel:0`` at ``model_weights/dense/dense/kernel:0``;
Keras 3: ``sequential/dense/kernel`` at ``model_weights/dense/sequential/dense/kernel``), which is
how Keras itself loads them; a weight is known by the last part of its name (``kernel``, ``bias``,
``gamma``, ``beta``, ``moving_mean``, ``moving_variance``). Nothing in the file is executed.

Models: ``Sequential``, and ``Functional`` (Keras 2: ``Model``/``Functional``) models with one input
and one output whose layers each read one layer, but ``Add`` (a residual sum) and ``Concatenate`` (on
the channel axis), which join branches; shared or nested models are refused.
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
DepthwiseConv2D              ``Conv2d`` with groups = channels (multiplier m: output c*m + j)
SeparableConv2D              depthwise ``Conv2d`` then a 1x1 ``Conv2d`` (composed into one)
ZeroPadding2D                a one-hot depthwise ``Conv2d`` (asymmetric too), then an ``IF``
                             copy when it pads a ReLU's output
Add                          ``Add`` of branches of one shape (a residual sum)
Concatenate                  ``Concat`` on the channel (feature) axis (split_concat)
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
import os
from typing import Optional

import numpy as np

from ... import ir
from ...ir import ops as O
from ..errors import FrontendError
from ..lowering import verify_lowered
from .lower import _Lower
from .model import _declared_shape, _input_shape, _layers, _layout
from .read import _Reader


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
        values, last = {}, low.value()  # what each layer outputs: (IR node, shape, Flatten permutation)
        for lay in layers:
            if lay.cls == "InputLayer":
                values[lay.name] = last
                continue
            srcs = [last] if lay.inputs is None else [values[s] for s in lay.inputs]  # None: Sequential
            low.enter(srcs)
            low.lower(lay)
            values[lay.name] = last = low.value()
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
    verify_lowered(g, where)
    return g
