"""compose_linear: linear chains between neuron layers fold into the connections (issue 19, item 1's
linear bottleneck): a residual sum with no activation read by a pool and the classifier."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from snn_compiler import ir  # noqa: E402
from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import from_module  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.passes import STRUCTURAL, run_pipeline  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class _BottleneckThenPool(nn.Module):
    """stem, one inverted residual whose sum has no activation, then the global pool and the classifier
    right on that sum (the case 'AvgPool2d follows Add, not a ReLU' refused)."""

    def __init__(self, pool):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU6())
        self.body = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU6(),
                                  nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.BatchNorm2d(16), nn.ReLU6(),
                                  nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8))
        self.pool = pool
        self.fc = nn.Linear(8 * 4, 5)

    def forward(self, x):
        h = self.stem(x)
        return self.fc(torch.flatten(self.pool(h + self.body(h)), 1))


@pytest.mark.parametrize("pool", [nn.AdaptiveAvgPool2d(2), nn.AvgPool2d(4)], ids=["adaptive", "avgpool"])
def test_a_pool_and_classifier_on_a_linear_sum_compile_and_agree(pool):
    torch.manual_seed(0)
    net = _BottleneckThenPool(pool).eval()
    x = torch.rand(64, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        want = net(x).numpy()
    g = from_module(net, (3, 16, 16))
    run_pipeline(g, CompileConfig(), STRUCTURAL)
    np.testing.assert_allclose(run_ann(g, x.numpy()), want, rtol=0, atol=1e-5)
    # the classifier reads each neuron layer the sum is made of, through a Flatten: one Dense per source
    dense = [n for n in g if isinstance(ir.op_of(g, n), O.Dense)]
    assert sorted(dense) == ["fc.via.body.5", "fc.via.stem.2"]
    assert not any(isinstance(ir.op_of(g, n), O.AvgPool2d) for n in g)
    q = compile_model(from_module(net, (3, 16, 16)), CompileConfig(bits=8, calibration=x.numpy()))
    ann = run_ann(q, x.numpy())
    snn = simulate(q, x.numpy(), timesteps=64).scores
    assert np.corrcoef(snn.ravel(), ann.ravel())[0, 1] > 0.99


def test_a_spatial_conv_after_a_pooled_linear_value_is_refused_naming_the_ops():
    """A 3x3 conv reading the pool of a conv with no activation does not compose (its padding would
    have to carry the bias); the refusal names the two ops."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 2 * 2, 3)).eval()
    with pytest.raises(Exception, match="1 feeds 2 without an activation"):
        compile_model(from_module(net, (1, 6, 6)), CompileConfig(calibration=np.random.rand(4, 1, 6, 6)))


def test_a_pointwise_conv_after_a_pooled_sum_is_refused_not_composed_into_a_non_snn_form():
    """1x1 conv <- pool <- sum with no activation: the pool's conv is no connection (it reads the sum),
    so the composition stops and check_snn_form names the ops instead of leaving a conv that reads an Add."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
            self.body = nn.Conv2d(4, 4, 3, padding=1)
            self.head = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 9, 3))

        def forward(self, x):
            h = self.stem(x)
            return self.head(h + self.body(h))

    torch.manual_seed(2)
    with pytest.raises(Exception, match="head.0 feeds head.1 without an activation"):
        compile_model(from_module(Net().eval(), (1, 6, 6)), CompileConfig(calibration=np.random.rand(4, 1, 6, 6)))


def test_two_linears_with_no_activation_between_compose_into_one():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.Linear(5, 3)).eval()
    x = torch.rand(16, 6)
    g = from_module(net, (6,))
    run_pipeline(g, CompileConfig(), STRUCTURAL)
    assert sorted(n for n in g if isinstance(ir.op_of(g, n), O.Dense)) == ["0", "3"]
    assert ir.op_of(g, "3").weight.shape == (3, 8)
    with torch.no_grad():
        np.testing.assert_allclose(run_ann(g, x.numpy()), net(x).numpy(), rtol=0, atol=1e-6)


def _composes_exactly(rng, inner, outer, features):
    """in -> IF -> ``inner`` -> ``outer`` (two linear convs, no activation between) -> IF -> classifier;
    compose_linear makes the pair one Conv2d and the ANN reading stays what it was."""
    from snn_compiler.passes.compose_linear import compose_linear
    g = ir.new_graph()
    x = ir.add_op(g, "in", O.Input((4, 6, 6)))
    r = ir.add_op(g, "r", O.IF(), [ir.add_op(g, "c0", O.Conv2d(rng.normal(size=(4, 4, 3, 3)), padding=(1, 1)), [x])])
    r2 = ir.add_op(g, "r2", O.IF(), [ir.add_op(g, "outer", outer, [ir.add_op(g, "inner", inner, [r])])])
    ir.add_op(g, "out", O.Output(), [ir.add_op(g, "fc", O.Dense(rng.normal(size=(3, features))),
                                                [ir.add_op(g, "flat", O.Flatten(), [r2])])])
    ir.verify(g)
    xs = rng.normal(size=(5, 4, 6, 6))
    before = run_ann(g, xs)
    assert compose_linear(g, CompileConfig())
    ir.verify(g)
    assert "inner" not in g and O.kind(ir.op_of(g, ir.inputs_of(g, "r2")[0])) == "Conv2d"
    np.testing.assert_allclose(run_ann(g, xs), before, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("inner_groups", [1, 2])
def test_a_depthwise_pool_over_pointwise_convs_composes_channel_by_channel(inner_groups):
    """DenseNet's transition (1x1 conv, then a 2x2 average pool lowered to a depthwise conv): the composed
    weight is outer[o] * inner[o, i] (a diagonal outer, no sum over channels)."""
    rng = np.random.default_rng(inner_groups)
    _composes_exactly(rng, O.Conv2d(rng.normal(size=(6, 4 // inner_groups, 1, 1)), bias=None, groups=inner_groups),
                      O.Conv2d(rng.uniform(0.1, 1, size=(6, 1, 2, 2)), stride=(2, 2), groups=6), 6 * 9)


def test_a_per_channel_scale_over_a_spatial_conv_composes_row_by_row():
    """A BatchNorm turned into a depthwise 1x1 conv (affine_as_conv) over a linear 3x3 conv (DenseNet's
    pre-activation BN over an earlier layer's output): w[o] = s[o] * inner[o]."""
    rng = np.random.default_rng(3)
    _composes_exactly(rng, O.Conv2d(rng.normal(size=(6, 4, 3, 3)), bias=rng.normal(size=6), padding=(1, 1)),
                      O.Conv2d(rng.uniform(0.5, 2, size=(6, 1, 1, 1)), bias=rng.normal(size=6), groups=6), 6 * 36)
