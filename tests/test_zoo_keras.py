"""Keras layers of the zoo (issue 19): DepthwiseConv2D, SeparableConv2D (MobileNet, Xception) and
ZeroPadding2D, in .h5 files written by hand (keras_helpers) and checked against a numpy forward pass
in Keras' own layout written here; compiled, they are in SNN form and read as the file."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

pytest.importorskip("h5py")
sys.path.insert(0, os.path.dirname(__file__))
from keras_helpers import RNG, conv, dense, pool, reference, simple, write_sequential  # noqa: E402

from snn_compiler import ir  # noqa: E402
from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend.errors import FrontendError  # noqa: E402
from snn_compiler.frontend.keras import from_keras_h5, to_channels_first  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.sim.emulator import run_ann  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def depthwise(name, c, k, mult=1, padding="valid", strides=1, activation="linear", bias=True):
    w = [("depthwise_kernel", RNG.normal(size=(k, k, c, mult)) / k)]
    if bias:
        w.append(("bias", RNG.normal(size=c * mult) * 0.1))
    return ("DepthwiseConv2D", {"name": name, "kernel_size": [k, k], "strides": [strides, strides], "padding": padding,
                                "depth_multiplier": mult, "data_format": "channels_last", "dilation_rate": [1, 1],
                                "activation": activation, "use_bias": bias}, w)


def separable(name, c, filters, k, mult=1, padding="same", activation="relu"):
    w = [("depthwise_kernel", RNG.normal(size=(k, k, c, mult)) / k),
         ("pointwise_kernel", RNG.normal(size=(1, 1, c * mult, filters)) / np.sqrt(c * mult)),
         ("bias", RNG.normal(size=filters) * 0.1)]
    return ("SeparableConv2D", {"name": name, "filters": filters, "kernel_size": [k, k], "strides": [1, 1],
                                "padding": padding, "depth_multiplier": mult, "data_format": "channels_last",
                                "dilation_rate": [1, 1], "activation": activation, "use_bias": True}, w)


def _depthwise_ref(x, kern, stride, padding):
    """Keras' depthwise conv on NHWC ``x``: output channel c * mult + m filters channel c with kern[:, :, c, m]."""
    kh, kw, c, mult = kern.shape
    if padding == "same":
        x = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    y = np.zeros((len(x), oh, ow, c, mult))
    for i in range(kh):
        for j in range(kw):
            y += x[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :, None] * kern[i, j]
    return y.reshape(len(x), oh, ow, c * mult)


def _reference(x, layers):
    """keras_helpers.reference, with the layers of this file."""
    for lay in layers:
        cls, cfg, weights = lay
        w = {k: v.astype(np.float32).astype(np.float64) for k, v in dict(weights).items()}
        if cls == "ZeroPadding2D":
            (t, b), (l, r) = cfg["padding"]
            x = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
            continue
        if cls in ("DepthwiseConv2D", "SeparableConv2D"):
            x = _depthwise_ref(x, w["depthwise_kernel"], cfg["strides"][0], cfg["padding"])
            if cls == "SeparableConv2D":
                x = x @ w["pointwise_kernel"][0, 0]
            x = x + w.get("bias", 0)
            if cfg["activation"] == "relu":
                x = np.maximum(x, 0)
            continue
        x = reference(x, [lay])
    return x


MODELS = {  # name: layers on an (8, 8, 3) image
    "depthwise_x2_then_pointwise": lambda: [conv("c0", 3, 4, 3, padding="same", activation="relu"),
                                            depthwise("dw", 4, 3, mult=2, padding="same"),
                                            conv("pw", 8, 6, 1, activation="relu"), simple("Flatten", "flat"),
                                            dense("fc", 6 * 64, 5)],
    "separable": lambda: [conv("c0", 3, 4, 3, padding="same", activation="relu"), separable("sep", 4, 6, 3),
                          simple("GlobalAveragePooling2D", "gap", data_format="channels_last"), dense("fc", 6, 5)],
    "zero_padding_asymmetric_then_strided_conv": lambda: [
        conv("c0", 3, 4, 3, padding="same", activation="relu"),
        simple("ZeroPadding2D", "pad", padding=[[0, 1], [0, 1]], data_format="channels_last"),
        conv("c1", 4, 6, 3, strides=2, activation="relu"), simple("Flatten", "flat"), dense("fc", 6 * 16, 5)],
    "zero_padding_then_maxpool": lambda: [
        conv("c0", 3, 4, 3, activation="relu"),
        simple("ZeroPadding2D", "pad", padding=[[1, 1], [1, 1]], data_format="channels_last"),
        pool("MaxPooling2D", "max", k=2), simple("Flatten", "flat"), dense("fc", 4 * 16, 5)],
}


@pytest.mark.parametrize("name", list(MODELS))
def test_keras_zoo_layers_read_as_keras_and_compile(tmp_path, name):
    layers = MODELS[name]()
    path = write_sequential(tmp_path / "m.h5", (8, 8, 3), layers)
    g = from_keras_h5(path)
    x = RNG.random((6, 8, 8, 3))
    want = _reference(x, layers)
    x_ir = to_channels_first(x, ir.op_of(g, "input").shape)
    np.testing.assert_allclose(run_ann(g, x_ir), want, rtol=1e-9, atol=1e-9)
    q = compile_model(g, CompileConfig(bits=8, calibration=x_ir))
    np.testing.assert_allclose(run_ann(q, x_ir), want, rtol=0, atol=1e-6 * np.abs(want).max())
    if name == "separable":  # depthwise then pointwise with no activation between: one conv
        assert not any(n.endswith(".depthwise") for n in q)


def test_a_depthwise_kernel_of_the_wrong_shape_is_refused(tmp_path):
    layers = [conv("c0", 3, 4, 3, activation="relu"), depthwise("dw", 5, 3)]
    with pytest.raises(FrontendError, match=r"dw.*depthwise kernel of shape \(3, 3, 5, 1\)"):
        from_keras_h5(write_sequential(tmp_path / "m.h5", (8, 8, 3), layers))


def _functional_ref(x, layers, edges):
    """The numpy Keras forward of a Functional model: each layer on its inputs' outputs (Add sums,
    Concatenate joins the last axis)."""
    from keras_helpers import write_functional  # noqa: F401  (the writer these models go through)
    out = {"input_layer": x}
    for lay in layers:
        cls, cfg, _ = lay
        srcs = [out[s] for s in edges.get(cfg["name"], [])] or [x]
        if cls == "Add":
            out[cfg["name"]] = sum(srcs[1:], srcs[0])
        elif cls == "Concatenate":
            out[cfg["name"]] = np.concatenate(srcs, axis=-1)
        else:
            out[cfg["name"]] = _reference(srcs[0], [lay])
    return out[layers[-1][1]["name"]]


def _fire_and_residual():
    """A SqueezeNet Fire (Concatenate) and a residual Add on a map, then flatten (Keras order) and Dense."""
    layers = [conv("c0", 3, 4, 3, padding="same", activation="relu"),
              conv("e1", 4, 3, 1, activation="relu"), conv("e3", 4, 3, 3, padding="same", activation="relu"),
              simple("Concatenate", "cat", axis=-1), conv("c1", 6, 6, 1), simple("Add", "add"),
              simple("ReLU", "relu"), simple("Flatten", "flat"), conv("v", 6, 2, 1, activation="relu"),
              simple("Flatten", "flat2"), simple("Concatenate", "cat2", axis=-1), dense("fc", 6 * 64 + 2 * 64, 5)]
    edges = {"c0": ["input_layer"], "e1": ["c0"], "e3": ["c0"], "cat": ["e1", "e3"], "c1": ["cat"],
             "add": ["cat", "c1"], "relu": ["add"], "flat": ["relu"], "v": ["relu"], "flat2": ["v"],
             "cat2": ["flat", "flat2"], "fc": ["cat2"]}
    return layers, edges


@pytest.mark.parametrize("keras3", [False, True], ids=["keras2", "keras3"])
def test_keras_functional_branches_joined_by_concatenate_and_add_compile(tmp_path, keras3):
    from keras_helpers import write_functional
    layers, edges = _fire_and_residual()
    g = from_keras_h5(write_functional(tmp_path / "fire.h5", (8, 8, 3), layers, keras3=keras3, edges=edges))
    x = RNG.random((6, 8, 8, 3))
    want = _functional_ref(x, layers, edges)
    x_ir = to_channels_first(x, ir.op_of(g, "input").shape)
    np.testing.assert_allclose(run_ann(g, x_ir), want, rtol=1e-9, atol=1e-9)
    q = compile_model(g, CompileConfig(bits=8, calibration=x_ir))
    np.testing.assert_allclose(run_ann(q, x_ir), want, rtol=0, atol=1e-6 * np.abs(want).max())
