"""The Keras .h5 frontend (snn_compiler/frontend/keras/), read with h5py alone.

Small Keras files are written by hand (keras_helpers.py), in the Keras 2 (tf.keras) and Keras 3 layouts the
real files have, and the IR's ANN reading is checked against a numpy forward pass of the same
weights in Keras' own (channels-last) layout. The real Keras 3 files (trained on scikit-learn's
digits, see ../shared/data/keras) are then compiled and simulated at T = 64; they are read from
tests/fixtures/keras (or $SNNC_KERAS_DIR), never from ../shared at run time.
"""
import os
import zipfile

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from snn_compiler import ir  # noqa: E402
from snn_compiler.frontend.errors import FrontendError, NeedsInputShape  # noqa: E402
from snn_compiler.frontend.keras import from_keras_h5, to_channels_first  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402
from keras_helpers import (RNG, assert_same, bn, conv, dense, pool, reference, simple,  # noqa: E402
                           write_functional, write_sequential)



# ---- Keras 2 and Keras 3 layouts against the reference ------------------------------------------

CNN2 = [conv("conv2d", 3, 4, 3, padding="same", activation="relu"), pool("AveragePooling2D", "average_pooling2d"),
        bn("batch_normalization", 4), simple("Activation", "activation", activation="relu"),
        simple("Flatten", "flatten", data_format="channels_last"), simple("Dropout", "dropout", rate=0.5),
        dense("dense", 36, 5, activation="softmax")]


@pytest.mark.parametrize("keras3", [False, True], ids=["keras2", "keras3"])
def test_sequential_cnn_matches_keras_forward(tmp_path, keras3):
    path = write_sequential(tmp_path / "cnn.h5", (6, 6, 3), CNN2, keras3=keras3)
    g = from_keras_h5(path)
    meta = g.graph["snnc"]
    assert ir.op_of(g, "input").shape == (3, 6, 6)
    assert meta["input_layout"] == "channels_last" and meta["keras_input_shape"] == [6, 6, 3]
    assert meta["keras_version"] == ("3.15.1" if keras3 else "2.15.0")
    assert any("softmax" in d and "dense" in d for d in meta["dropped"])
    kinds = [O.kind(ir.op_of(g, n)) for n in ir.topo_order(g)]
    assert kinds.count("IF") == 2 and "BatchNorm" in kinds and "AvgPool2d" in kinds
    assert_same(g, CNN2, RNG.random((20, 6, 6, 3)))


CNN3 = [conv("conv2d", 2, 4, 3, padding="same", strides=2, activation="relu"),   # 7x7 -> 4x4, pads (1, 1)
        pool("MaxPooling2D", "max_pooling2d"),
        conv("conv2d_1", 4, 3, 1, bias=False), bn("batch_normalization", 3), simple("ReLU", "re_lu"),
        simple("Flatten", "flatten", data_format="channels_last"),
        dense("dense", 12, 6, activation="relu"), dense("dense_1", 6, 3)]


@pytest.mark.parametrize("keras3", [False, True], ids=["keras2", "keras3"])
def test_strided_same_conv_maxpool_and_bn_after_conv(tmp_path, keras3):
    g = from_keras_h5(write_sequential(tmp_path / "cnn.h5", (7, 7, 2), CNN3, keras3=keras3))
    conv_op = ir.op_of(g, "conv2d")
    assert conv_op.padding == (1, 1) and conv_op.stride == (2, 2) and conv_op.weight.shape == (4, 2, 3, 3)
    assert isinstance(ir.op_of(g, "max_pooling2d"), O.MaxPool2d)
    assert "dropped" not in g.graph["snnc"]
    assert_same(g, CNN3, RNG.random((20, 7, 7, 2)))


def test_compiled_keras_cnn_runs_as_snn(tmp_path):
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    g = from_keras_h5(write_sequential(tmp_path / "cnn.h5", (7, 7, 2), CNN3))
    x = to_channels_first(RNG.random((64, 7, 7, 2)), ir.op_of(g, "input").shape)
    q = compile_model(g, CompileConfig(bits=8, calibration=x, timesteps=64))
    agree = (simulate(q, x, timesteps=64).predictions == run_ann(g, x).argmax(1)).mean()
    assert agree >= 0.8, agree


FLAT_BN = [simple("Flatten", "flatten", data_format="channels_last"), bn("batch_normalization", 32),
           dense("dense", 32, 8, activation="relu"), simple("Dropout", "dropout", rate=0.1), dense("dense_1", 8, 3)]


@pytest.mark.parametrize("keras3", [False, True], ids=["keras2", "keras3"])
def test_functional_chain_flatten_of_the_input_and_bn_on_features(tmp_path, keras3):
    """Flatten right on a 2-channel input: the Dense columns (and the BatchNorm's features) are
    permuted from Keras' (H, W, C) order to the IR's (C, H, W)."""
    g = from_keras_h5(write_functional(tmp_path / "mlp.h5", (4, 4, 2), FLAT_BN, keras3=keras3))
    assert ir.op_of(g, "input").shape == (2, 4, 4)
    assert_same(g, FLAT_BN, RNG.random((16, 4, 4, 2)))


def test_vector_input_keras2_without_input_layer(tmp_path):
    layers = [dense("dense", 10, 8, activation="relu"), bn("batch_normalization", 8), dense("dense_1", 8, 4)]
    g = from_keras_h5(write_sequential(tmp_path / "mlp.h5", (10,), layers, keras3=False, input_layer=False))
    assert ir.op_of(g, "input").shape == (10,) and "input_layout" not in g.graph["snnc"]
    x = RNG.random((16, 10))
    np.testing.assert_allclose(run_ann(g, x), reference(x, layers), rtol=1e-9, atol=1e-9)


def test_global_average_pooling(tmp_path):
    layers = [conv("conv2d", 3, 5, 3, activation="relu"), simple("GlobalAveragePooling2D", "gap",
                                                                  data_format="channels_last", keepdims=False),
              dense("dense", 5, 2)]
    g = from_keras_h5(write_sequential(tmp_path / "gap.h5", (4, 4, 3), layers))
    assert_same(g, layers, RNG.random((8, 4, 4, 3)))


def test_average_pooling_same_leaves_the_padding_out_and_compiles(tmp_path):
    """AveragePooling2D(padding='same') on a map it pads: Keras divides each border window by the values
    it holds, a WindowAvgPool2d, which fold_adaptive_pools composes into the Dense after the Flatten."""
    layers = [conv("conv2d", 2, 3, 3, activation="relu"), pool("AveragePooling2D", "avg", k=3, strides=[2, 2],
                                                                padding="same"),
              simple("Flatten", "f", data_format="channels_last"), dense("d", 27, 4)]
    g = from_keras_h5(write_sequential(tmp_path / "same.h5", (7, 7, 2), layers))
    assert isinstance(ir.op_of(g, "avg"), O.WindowAvgPool2d)
    x = RNG.random((40, 7, 7, 2))
    assert_same(g, layers, x)
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    q = compile_model(g, CompileConfig(bits=8, calibration=to_channels_first(x, (2, 7, 7))))
    assert not any(isinstance(ir.op_of(q, n), O.WindowAvgPool2d) for n in q)
    r = simulate(q, to_channels_first(x, (2, 7, 7)), timesteps=64)
    want = reference(x, layers).argmax(1)
    assert (r.predictions == want).mean() >= 0.85


def test_channels_first_model_takes_nchw_data(tmp_path):
    layers = [conv("conv2d", 2, 3, 3, activation="relu", fmt="channels_first"),
              simple("Flatten", "flatten", data_format="channels_first"), dense("dense", 27, 4)]
    g = from_keras_h5(write_sequential(tmp_path / "cf.h5", (2, 5, 5), layers, keras3=False))
    assert ir.op_of(g, "input").shape == (2, 5, 5) and g.graph["snnc"]["input_layout"] == "channels_first"
    x_nchw = RNG.random((8, 2, 5, 5))
    # Keras computes the conv in NCHW and its channels_first Flatten moves the channels last: (H, W, C)
    np.testing.assert_allclose(run_ann(g, x_nchw), reference(x_nchw.transpose(0, 2, 3, 1), layers), rtol=1e-9, atol=1e-9)


def test_last_relu_feeds_the_readout_and_load_file_dispatches(tmp_path):
    """As every frontend does (ir.add_readout): a converted ReLU is integrated by an Output node."""
    from snn_compiler.frontend import load_file
    layers = [dense("dense", 6, 4, activation="relu")]
    path = write_sequential(tmp_path / "m.h5", (6,), layers)
    g = load_file(path)
    assert O.is_hidden_neuron(ir.op_of(g, "dense.relu")) and O.is_readout(ir.op_of(g, "output")) and len(g) == 4
    assert load_file(path, input_shape=(6,)).nodes["input"]["shape"] == (6,)
    with pytest.raises(FrontendError, match=r"input_shape \(7,\) does not match the model's input \(6,\)"):
        load_file(path, input_shape=(7,))


def test_to_channels_first():
    x = RNG.random((2, 5, 4, 3))
    y = to_channels_first(x, (3, 5, 4))
    assert y.shape == (2, 3, 5, 4) and y.flags.c_contiguous and y[1, 2, 3, 1] == x[1, 3, 1, 2]
    with pytest.raises(ValueError, match=r"must be \(H, W, C\) = \(5, 4, 3\)"):
        to_channels_first(x.transpose(0, 3, 1, 2), (3, 5, 4))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        to_channels_first(x[0])


def test_free_input_sizes_need_an_input_shape(tmp_path):
    layers = [conv("conv2d", 3, 2, 3, activation="relu"), simple("Flatten", "flatten"), dense("dense", 32, 2)]
    path = write_functional(tmp_path / "free.h5", (None, None, 3), layers)
    with pytest.raises(NeedsInputShape, match="free sizes"):
        from_keras_h5(path)
    g = from_keras_h5(path, input_shape=(3, 6, 6))
    assert g.graph["snnc"]["keras_input_shape"] == [6, 6, 3]
    assert_same(g, layers, RNG.random((4, 6, 6, 3)))


CLIPPED = [conv("conv2d", 2, 4, 3, padding="same", activation="relu6"), simple("ReLU", "re_lu", max_value=6.0),
           conv("conv2d_1", 4, 3, 1), simple("ReLU", "re_lu_1", max_value=2.5),
           simple("Flatten", "flatten", data_format="channels_last"), dense("dense", 75, 3)]


@pytest.mark.parametrize("keras3", [False, True], ids=["keras2", "keras3"])
def test_relu6_and_relu_max_value_are_clipped_if_layers(tmp_path, keras3):
    """activation='relu6' and ReLU(max_value=a) (MobileNet's ReLU6 in Keras) are IF layers whose clip is a."""
    g = from_keras_h5(write_sequential(tmp_path / "clip.h5", (5, 5, 2), CLIPPED, keras3=keras3))
    clips = [ir.op_of(g, n).clip for n in ir.topo_order(g) if O.is_hidden_neuron(ir.op_of(g, n))]
    assert clips == [6.0, 6.0, 2.5]
    assert_same(g, CLIPPED, RNG.normal(size=(20, 5, 5, 2)) * 10)


# ---- refusals: one clear line naming the layer -----------------------------------------------------

def _with(layer, **cfg):
    cls, config, weights = layer
    return cls, dict(config, **cfg), weights


@pytest.mark.parametrize("layers, shape, match", [
    ([dense("dense", 4, 3, activation="sigmoid")], (4,),
     r"layer 'dense' \(Dense\): activation 'sigmoid' is not supported: sigmoid is not a ReLU.*retrain with ReLU"),
    ([simple("Activation", "act", activation="tanh"), dense("dense", 4, 3)], (4,),
     r"layer 'act' \(Activation\): activation 'tanh' is not supported"),
    ([("LSTM", {"name": "lstm", "units": 3}, [])], (4, 4),
     r"layer 'lstm' \(LSTM\): unsupported layer: lstm is a gated recurrent cell.*"
     r"\(snnc reads InputLayer, Dense, Conv2D"),
    ([conv("conv2d", 1, 2, 2, padding="same"), simple("Flatten", "f"), dense("d", 50, 2)], (5, 5, 1),
     r"layer 'conv2d' \(Conv2D\): padding='same' pads unevenly .*symmetric padding only"),
    ([dense("dense", 4, 3, activation="softmax"), dense("dense_1", 3, 2)], (4,),
     r"layer 'dense_1' \(Dense\): follows the softmax of layer 'dense'.*only on the last layer"),
    ([conv("conv2d", 1, 2, 3), dense("dense", 2, 2)], (5, 5, 1),
     r"layer 'dense' \(Dense\): Dense on an input of shape \(3, 3, 2\) acts on its last axis only.*Flatten"),
    ([conv("conv2d", 1, 2, 3), bn("bn", 3, axis=1), simple("Flatten", "f"), dense("d", 18, 2)], (5, 5, 1),
     r"layer 'bn' \(BatchNormalization\): normalizes axis 1 .* only the channel"),
    ([("ReLU", {"name": "leaky", "negative_slope": 0.1}, []), dense("dense", 4, 2)], (4,),
     r"layer 'leaky' \(ReLU\): ReLU with \{'negative_slope': 0.1\} is not a plain ReLU"),
    ([("Sequential", {"name": "inner", "layers": []}, [])], (4,), r"layer 'inner' \(Sequential\): is a nested model"),
    ([conv("conv2d", 1, 2, 3), conv("conv2d_1", 2, 2, 1, fmt="channels_first"), simple("Flatten", "f"),
      dense("d", 18, 2)], (5, 5, 1), r"layer 'conv2d_1' \(Conv2D\): has data_format='channels_first'"),
    ([conv("conv2d", 1, 2, 3, activation="relu"), simple("Flatten", "f")], (5, 5, 1),
     r"ends in a Flatten of a multi-channel map"),
    # a value given is checked, never replaced: groups 0 was read as 1, max_value 0 (outputs all 0) as no maximum
    ([_with(conv("conv2d", 2, 2, 3), groups=0), simple("Flatten", "f"), dense("d", 18, 2)], (5, 5, 2),
     r"layer 'conv2d' \(Conv2D\): groups must be a positive integer, got 0"),
    ([("ReLU", {"name": "relu0", "max_value": 0}, []), dense("dense", 4, 2)], (4,),
     r"layer 'relu0' \(ReLU\): ReLU with max_value 0: a clipped ReLU needs a finite number > 0"),
    ([_with(conv("conv2d", 1, 2, 3), data_format=""), simple("Flatten", "f"), dense("d", 18, 2)], (5, 5, 1),
     r"data_format '' is not one of channels_last, channels_first"),
], ids=["sigmoid", "tanh-layer", "lstm", "uneven-same", "softmax-inside", "dense-on-map",
        "bn-axis", "leaky-relu", "nested", "mixed-format", "ends-in-flatten", "groups-0", "relu-max-0", "format-empty"])
def test_unsupported_models_are_refused_naming_the_layer(tmp_path, layers, shape, match):
    for keras3 in (False, True):
        path = write_sequential(tmp_path / f"bad{keras3}.h5", shape, layers, keras3=keras3)
        with pytest.raises(FrontendError, match=match) as e:
            from_keras_h5(path)
        assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


@pytest.mark.parametrize("keras3", [False, True], ids=["keras2", "keras3"])
def test_functional_branches_joined_by_anything_but_add_or_concatenate_are_refused(tmp_path, keras3):
    layers = [dense("a", 4, 3), dense("b", 4, 3), ("Multiply", {"name": "mul"}, []), dense("c", 3, 2)]
    edges = {"a": ["input_layer"], "b": ["input_layer"], "mul": ["a", "b"], "c": ["mul"]}
    path = write_functional(tmp_path / "branch.h5", (4,), layers, keras3=keras3, edges=edges)
    with pytest.raises(FrontendError, match=r"layer 'mul' \(Multiply\) takes 2 inputs \(a, b\).*Add and Concatenate"):
        from_keras_h5(path)


def test_files_that_are_not_keras_models(tmp_path):
    from snn_compiler.frontend import load_file
    with h5py.File(tmp_path / "weights.weights.h5", "w") as f:  # Keras 3 model.save_weights
        f.create_group("layers/dense/vars").create_dataset("0", data=np.zeros((2, 2)))
    with pytest.raises(FrontendError, match=r"weights only \(model.save_weights\)"):
        load_file(tmp_path / "weights.weights.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(FrontendError, match="HDF5 file but not a Keras model"):
        load_file(tmp_path / "other.h5")
    with h5py.File(tmp_path / "badjson.h5", "w") as f:
        f.attrs["model_config"] = "{not json"
    with pytest.raises(FrontendError, match="not valid JSON"):
        from_keras_h5(tmp_path / "badjson.h5")
    (tmp_path / "trunc.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(FrontendError, match="not a readable HDF5 file"):
        load_file(tmp_path / "trunc.h5")
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as z:
        z.writestr("metadata.json", "{}")
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"")
    with pytest.raises(FrontendError, match=r"Keras 3 .keras archive.*model.save\('model.h5'\)"):
        load_file(tmp_path / "model.keras")
    path = write_sequential(tmp_path / "m.h5", (4,), [dense("dense", 4, 2)])
    with h5py.File(path, "a") as f:
        f["model_weights/dense/sequential/dense/kernel"][0, 0] = np.nan
    with pytest.raises(FrontendError, match=r"layer 'dense' \(Dense\): weight .*kernel.* NaN"):
        from_keras_h5(path)


@pytest.mark.parametrize("how", ["external-link", "soft-link", "external-storage"])
def test_weights_outside_the_file_are_refused(tmp_path, how):
    """A file cannot make snnc read another file (or another place) as weights."""
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("secret", data=np.ones((4, 2), np.float32))
    path = write_sequential(tmp_path / "m.h5", (4,), [dense("dense", 4, 2)])
    with h5py.File(path, "a") as f:
        grp = f["model_weights/dense/sequential/dense"]
        del grp["kernel"]
        if how == "external-link":
            grp["kernel"] = h5py.ExternalLink(str(other), "/secret")
        elif how == "soft-link":
            f.create_dataset("elsewhere", data=np.ones((4, 2), np.float32))
            grp["kernel"] = h5py.SoftLink("/elsewhere")
        else:
            (tmp_path / "raw.bin").write_bytes(np.ones((4, 2), np.float32).tobytes())
            grp.create_dataset("kernel", shape=(4, 2), dtype=np.float32, external=[(str(tmp_path / "raw.bin"), 0, 32)])
    match = "outside the file" if how == "external-storage" else "Link to another place or file"
    with pytest.raises(FrontendError, match=rf"layer 'dense' \(Dense\): weight .*kernel.*{match}"):
        from_keras_h5(path)


# ---- the real Keras 3 files: accuracy of the ANN reading and of the integer SNN at T = 64 ----------

FIXTURES = os.environ.get("SNNC_KERAS_DIR") or os.path.join(os.path.dirname(__file__), "fixtures", "keras")
# test accuracy recorded when the files were trained (../shared/data/keras, README)
RECORDED = {"digits_mlp.h5": 96.1, "digits_cnn_maxpool.h5": 98.0}


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images / 16.0)[..., None]  # as the files were trained: channels-last, in [0, 1]
    return train_test_split(x, d.target, test_size=0.3, random_state=1, stratify=d.target)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_real_keras_files_keep_their_accuracy_at_T64(name, digits):
    path = os.path.join(FIXTURES, name)
    if not os.path.isfile(path):
        pytest.skip(f"{path} missing (copy ../shared/data/keras/*.h5 to tests/fixtures/keras, or set SNNC_KERAS_DIR)")
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from snn_compiler.frontend import load_file
    x_train, x_test, _, y_test = digits
    g = load_file(path)
    shape = ir.op_of(g, "input").shape
    assert g.graph["snnc"]["input_layout"] == "channels_last" and shape == (1, 8, 8)
    x_calib, x_test = to_channels_first(x_train[:500], shape), to_channels_first(x_test, shape)
    ann = 100 * (run_ann(g, x_test).argmax(1) == y_test).mean()
    assert round(ann, 1) == RECORDED[name]
    q = compile_model(g, CompileConfig(bits=8, calibration=x_calib, timesteps=64))
    assert q.graph["snnc"]["input_layout"] == "channels_last"
    snn = 100 * (simulate(q, x_test, timesteps=64).predictions == y_test).mean()
    assert snn >= ann - 1.0, (name, ann, snn)
