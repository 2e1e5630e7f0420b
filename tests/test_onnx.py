"""The ONNX frontend: torch -> ONNX -> snnc gives what torch -> snnc gives (ANN reading and compiled
integer SNN), hand-built ONNX graphs lower to the ANN onnx's reference evaluator computes, and what
the IR cannot express is refused naming the ONNX node."""
import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import FrontendError  # noqa: E402
from snn_compiler.frontend.errors import NeedsInputShape  # noqa: E402
from snn_compiler.frontend.onnx import from_onnx  # noqa: E402
from snn_compiler.ir import op_of  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- torch -> ONNX -> snnc against torch -> snnc ----------------------------------------------------

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from models import zoo  # noqa: E402
from snn_compiler.frontend import from_module, load_file  # noqa: E402

# How torch 2.13's legacy (TorchScript-based) exporter is asked; the dynamo exporter (the default
# since torch 2.9) needs onnxscript, which snnc does not install.
EXPORTS = {
    "default": {},                                    # BatchNorm folded into Conv by the exporter
    "unfolded": {"do_constant_folding": False},       # BatchNormalization nodes, Transpose on a weight
    "dynamic_batch": {"dynamic_axes": {"x": {0: "batch"}}, "input_names": ["x"]},  # Shape -> Reshape
}


class MaxPoolCNN(nn.Module):
    """conv-bn-relu-maxpool, a padded strided max pool, global max pool, linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(self.features(x))


def _models():
    models = dict(zoo())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        models["maxpool"] = (MaxPoolCNN().eval(), (1, 8, 8))
    return models


def _export(model, shape, how="default") -> bytes:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation note
        torch.onnx.export(model, (torch.zeros((1,) + shape),), f, dynamo=False, opset_version=17, **EXPORTS[how])
    return f.getvalue()


MODELS = ["mlp", "cnn", "resnet", "functional", "dropout", "conv_variants", "maxpool"]


@pytest.mark.parametrize("how", list(EXPORTS))
@pytest.mark.parametrize("name", MODELS)
def test_onnx_route_reads_like_torch_route(name, how):
    model, shape = _models()[name]
    g_onnx, g_torch = from_onnx(_export(model, shape, how)), from_module(model, shape)
    x = torch.randn((7,) + shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x).numpy()
    xs = x.numpy().astype(np.float64)
    got_onnx, got_torch = run_ann(g_onnx, xs), run_ann(g_torch, xs)
    np.testing.assert_allclose(got_onnx, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_onnx, got_torch, rtol=0, atol=1e-5)


@pytest.mark.parametrize("how", ["default", "unfolded"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet", "maxpool"])
def test_onnx_route_compiles_to_the_same_int_snn(name, how):
    model, shape = _models()[name]
    x = np.random.default_rng(0).random((48,) + shape)
    results = []
    for g in (from_onnx(_export(model, shape, how)), from_module(model, shape)):
        q = compile_model(g, CompileConfig(bits=8, calibration=x, timesteps=16))
        results.append(simulate(q, x, timesteps=16))
    np.testing.assert_array_equal(results[0].predictions, results[1].predictions)
    np.testing.assert_array_equal(results[0].scores, results[1].scores)


def test_layer_names_follow_the_torch_module_paths():
    model, shape = _models()["resnet"]
    g = from_onnx(_export(model, shape))
    assert {"stem.0", "stem.1", "layers.0.conv1", "layers.0.relu", "layers.1.relu_1", "pool", "fc"} <= set(g)
    assert set(g) & set(from_module(model, shape)) >= {"stem.1", "layers.0.relu", "layers.1.relu_1"}


def test_load_file_dispatches_on_the_suffix(tmp_path):
    model, shape = _models()["cnn"]
    path = tmp_path / "cnn.onnx"
    path.write_bytes(_export(model, shape))
    g = load_file(path)
    assert g.nodes["input"]["op"].shape == shape
    with pytest.raises(FrontendError, match="does not match"):
        load_file(path, input_shape=(1, 9, 9))
    other = tmp_path / "cnn.bin"  # ONNX without the suffix: the torch loader's error says what it is
    other.write_bytes(path.read_bytes())
    with pytest.raises(FrontendError, match=r"looks like an ONNX model: give it the \.onnx suffix"):
        load_file(other)


def test_cli_compiles_an_onnx_file(tmp_path, capsys):
    from snn_compiler.cli import main
    model, shape = _models()["cnn"]
    (tmp_path / "cnn.onnx").write_bytes(_export(model, shape))
    x = np.random.default_rng(0).random((20,) + shape).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    code = main(["compile", str(tmp_path / "cnn.onnx"), "--calibration", str(tmp_path / "calib.npz"),
                 "-o", str(tmp_path / "net.snnc"), "--no-progress"])
    capsys.readouterr()
    assert code == 0 and (tmp_path / "net.snnc").is_file()


# ---- hand-built graphs -----------------------------------------------------------------------------

RNG = np.random.default_rng(3)


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _model(nodes, inits, in_shape, out_shape, opset=17, in_name="x", out_name="y", batch=None):
    g = helper.make_graph(
        nodes, "hand", [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, [batch or "N"] + list(in_shape))],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch or "N"] + list(out_shape))], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _check_against_reference(model, in_shape, n=5, last_relu=False):
    g = from_onnx(model.SerializeToString())
    x = RNG.normal(size=(n,) + tuple(in_shape)).astype(np.float32)
    (want,) = ReferenceEvaluator(model).run(None, {"x": x})
    got = run_ann(g, x.astype(np.float64))
    if last_relu:  # that ReLU became the read-out, whose ANN reading is its input (as in torch)
        got = np.maximum(got, 0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    return g


def test_hand_built_mlp_gemm_transb0_matmul_add_clip_reshape():
    """Gemm with transB=0 and alpha/beta, MatMul + Add of a bias, Clip(0, inf) with and without a
    max input, a Reshape to (-1, F) of a map, a weight transposed by a folded Transpose."""
    w1, b1 = RNG.normal(size=(12, 8)), RNG.normal(size=8)        # Gemm B stored (in, out): transB=0
    w2t, b2 = RNG.normal(size=(6, 8)), RNG.normal(size=6)        # stored (out, in), transposed by a node
    w3, b3 = RNG.normal(size=(6, 4)), RNG.normal(size=(1, 4))
    nodes = [
        helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([-1, 12], np.int64))),
        helper.make_node("Reshape", ["x", "shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["h1"], name="fc1", transB=0, alpha=0.5, beta=2.0),
        helper.make_node("Clip", ["h1", "zero"], ["a1"], name="relu1"),                 # max absent
        helper.make_node("Transpose", ["w2t"], ["w2"], perm=[1, 0]),                    # folded
        helper.make_node("MatMul", ["a1", "w2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["m2", "b2"], ["h2"], name="fc2_bias"),
        helper.make_node("Clip", ["h2", "zero", "inf"], ["a2"], name="relu2"),          # max = inf
        helper.make_node("MatMul", ["a2", "w3"], ["m3"], name="fc3"),
        helper.make_node("Add", ["b3", "m3"], ["y"], name="fc3_bias"),                  # bias first
    ]
    inits = [_init("w1", w1), _init("b1", b1), _init("w2t", w2t), _init("b2", b2), _init("w3", w3),
             _init("b3", b3), _init("zero", 0.0), _init("inf", np.inf)]
    g = _check_against_reference(_model(nodes, inits, (3, 2, 2), (4,)), (3, 2, 2))
    kinds = [O.kind(op_of(g, n)) for n in g]
    assert kinds.count("Dense") == 3 and kinds.count("IF") == 2 and kinds.count("Flatten") == 1
    assert all(op_of(g, n).bias is not None for n in g if isinstance(op_of(g, n), O.Dense))


def test_hand_built_cnn_conv_batchnorm_pools():
    """Conv (SAME_UPPER with an odd kernel, grouped, strided), BatchNormalization on a map, Relu,
    AveragePool with counted padding, GlobalAveragePool, Flatten, Gemm; Dropout and Identity vanish."""
    c1 = RNG.normal(size=(4, 2, 3, 3))
    c2 = RNG.normal(size=(6, 2, 3, 3))
    bn = [1 + 0.1 * RNG.normal(size=4), 0.1 * RNG.normal(size=4), 0.2 * RNG.normal(size=4), 0.5 + RNG.random(4)]
    fc = RNG.normal(size=(3, 6))
    nodes = [
        helper.make_node("Conv", ["x", "c1"], ["h1"], name="conv1", auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["h1", "s", "b", "m", "v"], ["n1"], name="bn1", epsilon=1e-3),
        helper.make_node("Relu", ["n1"], ["a1"], name="relu1"),
        helper.make_node("Dropout", ["a1"], ["d1"], name="drop"),
        helper.make_node("AveragePool", ["d1"], ["p1"], name="pool1", kernel_shape=[3, 3], strides=[1, 1],
                         pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("Conv", ["p1", "c2"], ["h2"], name="conv2", group=2, strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["a2"], ["gp"], name="gap"),
        helper.make_node("Identity", ["gp"], ["gi"]),
        helper.make_node("Flatten", ["gi"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1),
    ]
    inits = [_init("c1", c1), _init("c2", c2), _init("fc", fc)] + [_init(k, v) for k, v in zip("sbmv", bn)]
    g = _check_against_reference(_model(nodes, inits, (2, 6, 6), (3,)), (2, 6, 6))
    conv2 = op_of(g, "conv2")
    assert conv2.groups == 2 and conv2.stride == (2, 2) and conv2.padding == (1, 1)
    assert op_of(g, "conv1").padding == (1, 1) and isinstance(op_of(g, "bn1"), O.BatchNorm)
    assert op_of(g, "gap").kernel_size == (3, 3)


def test_hand_built_max_pool_and_last_relu_feeds_the_readout():
    nodes = [
        helper.make_node("Conv", ["x", "c"], ["h"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("MaxPool", ["a"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w"], ["z"], name="fc", transB=1),
        helper.make_node("Relu", ["z"], ["y"], name="out_relu"),
    ]
    inits = [_init("c", RNG.normal(size=(3, 1, 3, 3))), _init("w", RNG.normal(size=(4, 12)))]
    g = _check_against_reference(_model(nodes, inits, (1, 4, 4), (4,)), (1, 4, 4), last_relu=True)
    assert isinstance(op_of(g, "pool"), O.MaxPool2d) and O.is_hidden_neuron(op_of(g, "out_relu"))
    assert O.is_readout(op_of(g, next(iter(g.successors("out_relu")))))


def test_static_batch_and_missing_feature_sizes():
    w = RNG.normal(size=(3, 5))
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)]
    g = from_onnx(_model(nodes, [_init("w", w)], (5,), (3,), batch=1).SerializeToString())
    assert g.nodes["input"]["op"].shape == (5,)
    unknown = _model(nodes, [_init("w", w)], ("F",), (3,))
    with pytest.raises(NeedsInputShape):
        from_onnx(unknown.SerializeToString())
    assert from_onnx(unknown.SerializeToString(), input_shape=(5,)).nodes["input"]["op"].shape == (5,)


# ---- refusals ----------------------------------------------------------------------------------------

def _refused(model, *texts, exc=FrontendError):
    with pytest.raises(exc) as e:
        from_onnx(model.SerializeToString())
    msg = str(e.value)
    for t in texts:
        assert t in msg, msg
    return msg


def _conv_model(**attrs):
    nodes = [helper.make_node("Conv", ["x", "c"], ["h"], name="conv", **attrs),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    return _model(nodes, [_init("c", RNG.normal(size=(2, 1, attrs.pop("k", 3), 3)))], (1, 6, 6), [2, "H", "W"])


def test_unsupported_op_names_the_node_and_lists_what_is_supported():
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
             helper.make_node("Sigmoid", ["h"], ["y"], name="/head/act/Sigmoid")]
    msg = _refused(_model(nodes, [_init("w", RNG.normal(size=(3, 4)))], (4,), (3,)),
                   "ONNX node '/head/act/Sigmoid' (Sigmoid): unsupported op", "Gemm", "Conv", "Clip(0, inf)")
    assert "MaxPool" in msg


def test_unnamed_node_is_named_by_position_and_output():
    nodes = [helper.make_node("Tanh", ["x"], ["y"])]
    _refused(_model(nodes, [], (4,), (4,)), "ONNX node #0 (Tanh, output 'y')")


def test_uneven_padding_is_refused():
    _refused(_conv_model(pads=[0, 0, 1, 1]), "ONNX node 'conv' (Conv)", "asymmetric padding pads=[0, 0, 1, 1]",
             "symmetric")
    nodes = [helper.make_node("Conv", ["x", "c"], ["y"], name="conv", auto_pad="SAME_UPPER")]
    even = _model(nodes, [_init("c", RNG.normal(size=(2, 1, 2, 2)))], (1, 6, 6), (2, 6, 6))
    _refused(even, "ONNX node 'conv' (Conv)", "auto_pad=SAME_UPPER", "pads unevenly")


def test_a_conv_group_of_zero_is_refused_not_read_as_one():
    _refused(_conv_model(group=0), "ONNX node 'conv' (Conv)", "group must be a positive integer, got 0")


def test_external_data_is_refused_without_reading_it(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)]
    model = _model(nodes, [_init("w", RNG.normal(size=(30, 40)))], (40,), (30,))
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").is_file()
    with pytest.raises(FrontendError, match=r"'w' \(in 'weights.bin'\) keep their data in external files"):
        load_file(path)
    model = _model(nodes, [_init("w", RNG.normal(size=(30, 40)))], (40,), (30,))
    t = model.graph.initializer[0]  # a location outside the model's folder: refused just the same
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../../../../etc/passwd")
    _refused(model, "external files", "/etc/passwd")


@pytest.mark.parametrize("content,text", [
    (b"", "empty"),
    (b"PK\x03\x04rest-of-a-zip", "zip archive"),
    (b"\x80\x04\x95 pickled", "pickle"),
    (b"\x93NUMPY\x01\x00", "numpy"),
    (b"\x89HDF\r\n\x1a\nkeras", "HDF5"),
    (b"ir_version: 8\ngraph { }\n", "looks like text"),
    (b"\x08\x08\xff\xff\xff", "cannot be parsed"),
    (b"\x10\x05", "no ONNX graph"),
])
def test_non_onnx_content_with_the_suffix_is_refused(tmp_path, content, text):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(FrontendError, match="is not an ONNX model") as e:
        load_file(path)
    assert text in str(e.value) and str(path) in str(e.value)


@pytest.mark.parametrize("attrs, in_hw, out_hw", [
    (dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), (4, 4), (4, 4)),                     # count_include_pad=0
    (dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), (5, 5), (3, 3)),            # a partial last window
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1), (6, 7), (4, 4)),
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1), (6, 6), (4, 4)),
])
def test_average_pools_with_partial_windows_equal_onnxs_reference(attrs, in_hw, out_hw):
    """AveragePool whose border windows divide by fewer values (count_include_pad=0, ONNX's default, or
    ceil_mode=1): a WindowAvgPool2d whose reading equals onnx's reference evaluator."""
    pool = [helper.make_node("AveragePool", ["x"], ["y"], name="pool", **attrs)]
    g = _check_against_reference(_model(pool, [], (2,) + in_hw, (2,) + out_hw), (2,) + in_hw)
    assert isinstance(g.nodes["pool"]["op"], O.WindowAvgPool2d)


def test_more_refusals_name_the_node():
    bn_nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", training_mode=1)]
    bn_inits = [_init(k, np.ones(2)) for k in "sbmv"]
    _refused(_model(bn_nodes, bn_inits, (2, 3, 3), (2, 3, 3)), "ONNX node 'bn' (BatchNormalization)", "training mode")
    flat0 = [helper.make_node("Flatten", ["x"], ["y"], name="flat", axis=0)]
    _refused(_model(flat0, [], (2, 2), (1, 4), batch=1), "ONNX node 'flat' (Flatten)", "merges the batch axis")
    merge = [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")]
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "s")
    msg = _refused(_model(merge, [shape], (2, 2), (8,), batch="N"), "ONNX node 'rs' (Reshape)", "not flatten-like")
    assert "(batch, -1)" in msg  # a literal 1 with a symbolic batch would merge the batch into the features
    relu_bias = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                 helper.make_node("Add", ["r", "c"], ["y"], name="shift")]
    _refused(_model(relu_bias, [_init("c", np.ones(4))], (4,), (4,)), "ONNX node 'shift' (Add)",
             "adding a constant")
    custom = [helper.make_node("Gelu", ["x"], ["y"], name="gelu", domain="com.microsoft")]
    m = _model(custom, [], (4,), (4,))
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _refused(m, "ONNX node 'gelu' (Gelu)", "domain 'com.microsoft'")
    grown = [helper.make_node("Mul", ["a", "b"], ["big"], name="bomb"),
             helper.make_node("Gemm", ["x", "big"], ["y"], name="fc")]
    bomb = [_init("a", np.ones((1, 9000))), _init("b", np.ones((9000, 1)))]
    _refused(_model(grown, bomb, (9000,), (9000,)), "ONNX node 'bomb' (Mul)", "would make a tensor")


def test_two_inputs_and_weights_from_the_input_are_refused():
    g = helper.make_graph([helper.make_node("Add", ["x", "z"], ["y"])], "two",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in "xz"],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    _refused(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "exactly one tensor input")
    nodes = [helper.make_node("MatMul", ["x", "x"], ["y"], name="mm")]
    _refused(_model(nodes, [], (4,), (4,)), "ONNX node 'mm' (MatMul)", "must be a constant")


# ---- no code runs, no torch needed ---------------------------------------------------------------------

def test_from_onnx_runs_without_torch(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    path = tmp_path / "m.onnx"
    onnx.save_model(_model(nodes, [_init("w", RNG.normal(size=(3, 4)))], (4,), (3,)), str(path))
    script = ("import sys; sys.modules['torch'] = None\n"
              "from snn_compiler.frontend.onnx import from_onnx\n"
              f"g = from_onnx({str(path)!r}); print(sorted(g))\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "'relu'" in r.stdout, r.stderr

