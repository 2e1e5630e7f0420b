"""Keras .h5 files written by hand (the Keras 2 and Keras 3 layouts real files have) and a numpy
forward pass in Keras' own channels-last layout, independent of the IR: what the Keras tests compare
snnc's reading with."""
import json

import h5py
import numpy as np

from snn_compiler import ir
from snn_compiler.frontend.keras import to_channels_first
from snn_compiler.sim.emulator import run_ann

RNG = np.random.default_rng(7)
_DTYPE_K3 = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}


# ---- writing Keras files by hand -----------------------------------------------------------------
# A layer is (class_name, config, [(weight name, array), ...]) in Keras' order of its weights.

def _str_array(names, as_bytes):
    if not names:
        return np.array([], dtype=np.float64)  # what both Keras versions store for "no weights"
    if as_bytes:
        return np.array([n.encode("utf8") for n in names])
    return np.array(names, dtype=h5py.string_dtype())


def _write_weights(f, layers, keras3, model_name):
    mw = f.create_group("model_weights")
    names = [cfg["name"] for _, cfg, _ in layers]
    mw.attrs["layer_names"] = _str_array(names, as_bytes=not keras3)
    mw.attrs["backend"] = "jax" if keras3 else b"tensorflow"
    mw.attrs["keras_version"] = "3.15.1" if keras3 else b"2.15.0"
    for _, cfg, weights in layers:
        grp = mw.create_group(cfg["name"])
        full = [f"{model_name}/{cfg['name']}/{w}" if keras3 else f"{cfg['name']}/{w}:0" for w, _ in weights]
        grp.attrs["weight_names"] = _str_array(full, as_bytes=not keras3)
        for path, (_, arr) in zip(full, weights):
            grp.create_dataset(path, data=np.asarray(arr, np.float32))
    if keras3:
        mw.create_group("top_level_model_weights").attrs["weight_names"] = _str_array([], False)


def _layer_entry(cls, cfg, keras3):
    if keras3:
        return {"module": "keras.layers", "class_name": cls, "config": dict(cfg, trainable=True, dtype=_DTYPE_K3),
                "registered_name": None}
    return {"class_name": cls, "config": dict(cfg, trainable=True, dtype="float32")}


def write_sequential(path, input_shape, layers, keras3=True, input_layer=True):
    """A Sequential model file as Keras 3 (``keras3``) or tf.keras 2 ``model.save("x.h5")`` writes it."""
    model_name = "sequential"
    entries = []
    if input_layer:
        key = "batch_shape" if keras3 else "batch_input_shape"
        entries.append(_layer_entry("InputLayer", {key: [None] + list(input_shape), "dtype": "float32",
                                                   "sparse": False, "name": "input_layer"}, keras3))
    for i, (cls, cfg, _) in enumerate(layers):
        cfg = dict(cfg)
        if not input_layer and i == 0:
            cfg["batch_input_shape"] = [None] + list(input_shape)  # old tf.keras: on the first layer
        entries.append(_layer_entry(cls, cfg, keras3))
    config = {"name": model_name, "layers": entries}
    if keras3:
        config["build_input_shape"] = [None] + list(input_shape)
        model = {"module": "keras", "class_name": "Sequential", "config": config, "registered_name": None}
    else:
        model = {"class_name": "Sequential", "config": config}
    with h5py.File(path, "w") as f:
        text = json.dumps(model)
        f.attrs["model_config"] = text if keras3 else text.encode("utf8")
        f.attrs["keras_version"] = "3.15.1" if keras3 else b"2.15.0"
        f.attrs["backend"] = "jax" if keras3 else b"tensorflow"
        _write_weights(f, layers, keras3, model_name)
    return path


def _inbound(src, keras3, shape=None):
    if keras3:
        return [{"args": [{"class_name": "__keras_tensor__",
                           "config": {"shape": shape, "dtype": "float32", "keras_history": [src, 0, 0]}}],
                 "kwargs": {}}]
    return [[[src, 0, 0, {}]]]


def write_functional(path, input_shape, layers, keras3=True, edges=None):
    """A Functional model; ``edges`` {layer: [source layers]} (default: a chain)."""
    model_name = "functional" if keras3 else "model"
    key = "batch_shape" if keras3 else "batch_input_shape"
    entries = [dict(_layer_entry("InputLayer", {key: [None] + list(input_shape), "dtype": "float32",
                                                "sparse": False, "name": "input_layer"}, keras3),
                    name="input_layer", inbound_nodes=[])]
    prev = "input_layer"
    for cls, cfg, _ in layers:
        srcs = (edges or {}).get(cfg["name"], [prev])
        if keras3:
            nodes = [{"args": [[{"class_name": "__keras_tensor__", "config": {"shape": None, "dtype": "float32",
                                                                              "keras_history": [s, 0, 0]}}
                                for s in srcs]] if len(srcs) > 1 else _inbound(srcs[0], True)[0]["args"],
                      "kwargs": {}}]
        else:
            nodes = [[[s, 0, 0, {}] for s in srcs]]
        entries.append(dict(_layer_entry(cls, cfg, keras3), name=cfg["name"], inbound_nodes=nodes))
        prev = cfg["name"]
    config = {"name": model_name, "trainable": True, "layers": entries,
              "input_layers": [["input_layer", 0, 0]], "output_layers": [[prev, 0, 0]]}
    model = {"class_name": "Functional", "config": config}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(model) if keras3 else json.dumps(model).encode("utf8")
        f.attrs["keras_version"] = "3.15.1" if keras3 else b"2.15.0"
        _write_weights(f, layers, keras3, model_name)
    return path


# layer builders: (class_name, config, weights)
def dense(name, n_in, units, activation="linear", bias=True):
    w = [("kernel", RNG.normal(size=(n_in, units)) / np.sqrt(n_in))]
    if bias:
        w.append(("bias", RNG.normal(size=units) * 0.1))
    return ("Dense", {"name": name, "units": units, "activation": activation, "use_bias": bias}, w)


def conv(name, c_in, filters, k, padding="valid", strides=1, activation="linear", bias=True, fmt="channels_last"):
    w = [("kernel", RNG.normal(size=(k, k, c_in, filters)) / np.sqrt(k * k * c_in))]
    if bias:
        w.append(("bias", RNG.normal(size=filters) * 0.1))
    return ("Conv2D", {"name": name, "filters": filters, "kernel_size": [k, k], "strides": [strides, strides],
                       "padding": padding, "data_format": fmt, "dilation_rate": [1, 1], "groups": 1,
                       "activation": activation, "use_bias": bias}, w)


def bn(name, n, axis=-1):
    return ("BatchNormalization", {"name": name, "axis": axis, "epsilon": 1e-3, "center": True, "scale": True},
            [("gamma", RNG.uniform(0.5, 1.5, n)), ("beta", RNG.normal(size=n) * 0.1),
             ("moving_mean", RNG.normal(size=n) * 0.1), ("moving_variance", RNG.uniform(0.5, 1.5, n))])


def pool(cls, name, k=2, padding="valid", strides=None, fmt="channels_last"):
    return (cls, {"name": name, "pool_size": [k, k], "strides": strides, "padding": padding, "data_format": fmt}, [])


def simple(cls, name, **cfg):
    return (cls, dict(cfg, name=name), [])


# ---- a numpy forward pass in Keras' layout (NHWC), independent of the IR -------------------------

def _same_pads(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def ref_conv(x, kern, bias, stride, padding):
    kh, kw = kern.shape[:2]
    if padding == "same":
        (t, b), (l, r) = _same_pads(x.shape[1], kh, stride), _same_pads(x.shape[2], kw, stride)
        x = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    y = np.zeros((len(x), oh, ow, kern.shape[3]))
    for i in range(kh):
        for j in range(kw):
            y += x[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :] @ kern[i, j]
    return y + (0 if bias is None else bias)


def ref_pool(x, k, s, how, padding="valid"):
    if padding == "same":
        (t, b), (l, r) = _same_pads(x.shape[1], k, s), _same_pads(x.shape[2], k, s)
        # (Keras leaves the padding out: of the max, and of the average's count)
        x = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=-np.inf if how == "max" else np.nan)
    oh, ow = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
    win = np.stack([x[:, i:i + s * oh:s, j:j + s * ow:s, :] for i in range(k) for j in range(k)])
    return win.max(0) if how == "max" else np.nanmean(win, 0)


def reference(x, layers):
    """Keras' forward pass of ``layers`` on channels-last ``x``, logits (softmax left out)."""
    for cls, cfg, weights in layers:
        w = dict(weights)
        w = {k: v.astype(np.float32).astype(np.float64) for k, v in w.items()}
        act = cfg.get("activation")
        if cls == "Dense":
            x = x @ w["kernel"] + w.get("bias", 0)
        elif cls == "Conv2D":
            x = ref_conv(x, w["kernel"], w.get("bias"), cfg["strides"][0], cfg["padding"])
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            k = cfg["pool_size"][0]
            x = ref_pool(x, k, cfg["strides"][0] if cfg["strides"] else k, "max" if cls == "MaxPooling2D" else "avg",
                         cfg["padding"])
        elif cls == "GlobalAveragePooling2D":
            x = x.mean(axis=(1, 2))
        elif cls == "BatchNormalization":
            x = (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"]) * w["gamma"] + w["beta"]
        elif cls == "Flatten":
            x = x.reshape(len(x), -1)  # Keras' order: (H, W, C)
        elif cls == "ReLU":
            act = "relu" if cfg.get("max_value") is None else ("relu", cfg["max_value"])
        if cls in ("Dense", "Conv2D", "Activation", "ReLU") and act in ("relu", "relu6") or isinstance(act, tuple):
            top = {"relu": np.inf, "relu6": 6.0}[act] if isinstance(act, str) else act[1]
            x = np.minimum(np.maximum(x, 0), top)
    return x


def assert_same(g, layers, x_nhwc, layout="channels_last"):
    x_ir = to_channels_first(x_nhwc, ir.op_of(g, "input").shape) if layout == "channels_last" else x_nhwc
    np.testing.assert_allclose(run_ann(g, x_ir), reference(x_nhwc, layers), rtol=1e-9, atol=1e-9)
