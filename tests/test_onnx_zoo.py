"""The ONNX route of the model zoo (issue 19): ReLU6 as Clip(0, 6), MobileNetV2's and MnasNet's layouts
(linear bottlenecks, ReduceMean) compiled from torch's ONNX export."""
import numpy as np
import pytest

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from onnx import helper  # noqa: E402
from torch import nn  # noqa: E402

from test_onnx import RNG, _check_against_reference, _export, _init, _model, _refused  # noqa: E402
from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import from_module  # noqa: E402
from snn_compiler.frontend.onnx import from_onnx  # noqa: E402
from snn_compiler.ir import op_of  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402


def test_relu6_clip_is_a_clipped_if_layer():
    """Clip(0, a) (ReLU6 as exported) is an IF layer whose clip is a, both Clip forms; other bounds are refused."""
    w = _init("w", RNG.normal(size=(4, 5)) * 4)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
             helper.make_node("Clip", ["h", "lo", "hi"], ["a"], name="act"),
             helper.make_node("Gemm", ["a", "w2"], ["y"], name="fc2", transB=1)]
    inits = [w, _init("lo", 0.0), _init("hi", 6.0), _init("w2", RNG.normal(size=(3, 4)))]
    g = _check_against_reference(_model(nodes, inits, (5,), (3,)), (5,), n=20)
    assert op_of(g, "act").clip == 6.0
    old = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc", transB=1),  # opset 9: C required
           helper.make_node("Clip", ["h"], ["a"], name="act", min=0.0, max=2.5),
           helper.make_node("Gemm", ["a", "w2", "b2"], ["y"], name="fc2", transB=1)]
    biases = [_init("b", RNG.normal(size=4)), _init("b2", np.zeros(3))]
    g = _check_against_reference(_model(old, [w, inits[3]] + biases, (5,), (3,), opset=9), (5,), n=20)
    assert op_of(g, "act").clip == 2.5
    clip_only = [helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="act")]
    _refused(_model(clip_only, [_init("lo", -1.0), _init("hi", np.inf)], (4,), (4,)), "Clip(-1, inf) is not a ReLU")
    _refused(_model(clip_only, [_init("lo", 0.0), _init("hi", 0.0)], (4,), (4,)), "Clip(0, 0) is no clipped ReLU")


@pytest.mark.parametrize("how", ["default", "unfolded"])
def test_mobilenet_style_relu6_net_reads_like_the_torch_route(how):
    """torch exports ReLU6 as Clip(0, 6): the same clipped IF layers as the torch route."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 6, 1), nn.BatchNorm2d(6), nn.ReLU6(inplace=True),
                        nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6), nn.ReLU6(inplace=True),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4)).eval()
    g_onnx, g_torch = from_onnx(_export(net, (2, 6, 6), how)), from_module(net, (2, 6, 6))
    clips = [op_of(g_onnx, n).clip for n in g_onnx if O.is_hidden_neuron(op_of(g_onnx, n))]
    assert clips == [6.0, 6.0]
    x = torch.randn(9, 2, 6, 6) * 8
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_ann(g_onnx, x.numpy().astype(np.float64)), want, rtol=0, atol=1e-4)
    np.testing.assert_allclose(run_ann(g_torch, x.numpy().astype(np.float64)), want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["mobilenetv2", "mnasnet"])
def test_mobilenetv2_and_mnasnet_layouts_compile_through_onnx(name):
    """ReLU6 as Clip(0, 6), the linear bottlenecks (composed at compile) and MnasNet's mean over H, W
    (ReduceMean) through the ONNX route; the int8 SNN's scores follow the ANN's at T = 64."""
    from test_zoo_ops import _MnasNet, _mobilenet
    torch.manual_seed(0)
    net, shape = (_mobilenet(False), (3, 16, 16)) if name == "mobilenetv2" else (_MnasNet().eval(), (3, 32, 32))
    x = torch.rand((32,) + shape) * 2 - 1
    q = compile_model(from_onnx(_export(net, shape)), CompileConfig(bits=8, calibration=x.numpy()))
    with torch.no_grad():
        want = net(x).numpy()
    ann = run_ann(q, x.numpy())
    np.testing.assert_allclose(ann, want, rtol=0, atol=0.01 * np.abs(want).max())
    snn = simulate(q, x.numpy(), timesteps=64).scores
    assert np.corrcoef(ann.ravel(), snn.ravel())[0, 1] > 0.99


def test_reduce_mean_over_other_axes_is_refused():
    nodes = [helper.make_node("Conv", ["x", "c"], ["h"], name="conv"),
             helper.make_node("ReduceMean", ["h"], ["y"], name="mean", axes=[1], keepdims=0)]
    _refused(_model(nodes, [_init("c", RNG.normal(size=(2, 1, 3, 3)))], (1, 6, 6), (4, 4)),
             "ONNX node 'mean' (ReduceMean)", "only the mean over both spatial axes")


@pytest.mark.parametrize("padding,hw", [(0, 16), (1, 10)])
def test_max_pool_with_ceil_mode_through_onnx(padding, hw):
    """SqueezeNet's and GoogLeNet's MaxPool2d(3, 2, ceil_mode=True) exported to ONNX: the same appended
    zero rows as the torch route, the same reading as torch."""
    torch.manual_seed(hw)
    body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=padding, ceil_mode=True),
                         nn.Flatten())
    with torch.no_grad():
        n = body(torch.zeros(1, 1, hw, hw)).shape[1]
    net = nn.Sequential(*body, nn.Linear(n, 4)).eval()
    g = from_onnx(_export(net, (1, hw, hw)))
    assert any(n.endswith("ceil_pad.if") for n in g)
    x = torch.rand(8, 1, hw, hw)
    with torch.no_grad():
        np.testing.assert_allclose(run_ann(g, x.numpy().astype(np.float64)), net(x).numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("op,why", [("HardSwish", "retrain with ReLU6"), ("Sigmoid", "retrain with ReLU"),
                                    ("Softmax", "leave it out of the exported model")])
def test_unconverted_onnx_ops_say_why_and_what_instead(op, why):
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
             helper.make_node(op, ["h"], ["y"], name="act")]
    _refused(_model(nodes, [_init("w", RNG.normal(size=(3, 4)))], (4,), (3,)),
             f"ONNX node 'act' ({op}): unsupported op: ", why, "MaxPool")
