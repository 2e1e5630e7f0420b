"""Channel split and shuffle (issue 19: ShuffleNetV2): chunk/split/slice/narrow/index_select and the
view-transpose-view shuffle become SelectChannels, which split_concat composes into the weights that
read it or moves past per-channel ops; a ShuffleNetV2 (defined here as torchvision lays it out)
compiles through torch.export and ONNX and its int8 SNN agrees with its ANN."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from frontend_helpers import _lower  # noqa: E402
from test_zoo_concat import _bn_stats, _check_compiles, _onnx  # noqa: E402

from snn_compiler import ir  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import FrontendError, from_module  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.ir.routing import ROUTING_KINDS, SelectChannels  # noqa: E402
from snn_compiler.passes import STRUCTURAL, run_pipeline, split_concat  # noqa: E402
from snn_compiler.sim.emulator import run_ann  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def channel_shuffle(x, groups):
    """torchvision's channel_shuffle."""
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


def _dw(c, stride):
    return nn.Conv2d(c, c, 3, stride, 1, bias=False, groups=c)


class InvertedResidual(nn.Module):
    """ShuffleNetV2's unit: stride 1 splits the channels in two halves (x.chunk(2, 1)), one passing
    through; stride 2 runs two branches on the whole input; then cat and channel shuffle."""

    def __init__(self, i, o, stride):
        super().__init__()
        self.stride, half = stride, o // 2
        self.branch1 = nn.Sequential(_dw(i, stride), nn.BatchNorm2d(i), nn.Conv2d(i, half, 1, bias=False),
                                     nn.BatchNorm2d(half), nn.ReLU(inplace=True)) if stride > 1 else nn.Sequential()
        self.branch2 = nn.Sequential(nn.Conv2d(i if stride > 1 else half, half, 1, bias=False), nn.BatchNorm2d(half),
                                     nn.ReLU(inplace=True), _dw(half, stride), nn.BatchNorm2d(half),
                                     nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, repeats=(2, 3), channels=(8, 16, 32, 64)):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]),
                                   nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, i = [], channels[0]
        for r, o in zip(repeats, channels[1:]):
            stages.append(nn.Sequential(InvertedResidual(i, o, 2), *[InvertedResidual(o, o, 1) for _ in range(r - 1)]))
            i = o
        self.stages = nn.Sequential(*stages)
        self.conv5 = nn.Sequential(nn.Conv2d(i, channels[-1], 1, bias=False), nn.BatchNorm2d(channels[-1]),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(channels[-1], 10)

    def forward(self, x):
        return self.fc(self.conv5(self.stages(self.maxpool(self.conv1(x)))).mean([2, 3]))


def shufflenet():
    torch.manual_seed(3)
    return _bn_stats(ShuffleNetV2())


def test_shufflenetv2_compiles_through_torch_export_and_its_int8_snn_agrees(tmp_path):
    net = shufflenet()
    g = _lower(net, (3, 32, 32), "export", tmp_path)
    assert any(isinstance(ir.op_of(g, n), SelectChannels) for n in g)
    _check_compiles(net, (3, 32, 32), graph=g)


def test_shufflenetv2_compiles_through_onnx():
    from snn_compiler.frontend.onnx.graph import from_onnx
    net = shufflenet()
    _check_compiles(net, (3, 32, 32), graph=from_onnx(_onnx(net, (3, 32, 32))))


class _Route(nn.Module):
    """conv -> ReLU -> ``fn`` (channel routing) -> 1x1 conv -> ReLU -> flatten -> Linear."""

    def __init__(self, fn, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1)
        self.fn = fn
        self.head = nn.Sequential(nn.Conv2d(out_channels, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3))

    def forward(self, x):
        return self.head(self.fn(torch.relu(self.conv(x))))


ROUTES = {
    "chunk3": (lambda y: torch.cat(y.chunk(3, 1)[::-1], 1), 6),
    "split_sizes": (lambda y: torch.cat(torch.split(y, [1, 5], 1)[::-1], 1), 6),
    "split_int": (lambda y: torch.split(y, 4, 1)[1], 2),
    "slice_step": (lambda y: y[:, 1:6:2], 3),
    "slices_keeping_other_axes_whole": (lambda y: y[:, :, :, 0:4][:, 2:], 4),
    "narrow": (lambda y: y.narrow(1, 2, 3), 3),
    "index_select_repeats": (lambda y: y.index_select(1, torch.tensor([5, 0, 0, 3])), 4),
    "channel_shuffle_module": (nn.ChannelShuffle(3), 6),
    "shuffle_permute": (lambda y: y.view(y.shape[0], 2, 3, 4, 4).permute(0, 2, 1, 3, 4).reshape(y.shape[0], 6, 4, 4), 6),
    "shuffle_flatten": (lambda y: y.view(y.shape[0], 3, 2, 4, 4).transpose(1, 2).flatten(1, 2), 6),
    "shuffle_then_pool": (lambda y: nn.functional.avg_pool2d(channel_shuffle(y, 2), 3, 1, 1), 6),
}


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("name", list(ROUTES))
def test_channel_routing_ops_read_like_torch_and_compose_away(name):
    fn, c = ROUTES[name]
    torch.manual_seed(4)
    net = _Route(fn if isinstance(fn, nn.Module) else _Fn(fn), c).eval()
    g = from_module(net, (2, 4, 4))
    x = torch.randn(16, 2, 4, 4)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_ann(g, x.numpy().astype(np.float64)), want, rtol=0, atol=1e-5)
    run_pipeline(g, CompileConfig(), STRUCTURAL)  # SNN form, no routing op left
    assert not any(isinstance(ir.op_of(g, n), ROUTING_KINDS) for n in g)
    np.testing.assert_allclose(run_ann(g, x.numpy().astype(np.float64)), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fn, match", [
    (lambda y: y[:, :, 1:3], "slicing axis 2 .* channels"),
    (lambda y: y.transpose(2, 3), "transposing activations is not supported"),
    (lambda y: y.view(y.shape[0], 2, 3, 4, 4).transpose(1, 2).reshape(y.shape[0], 3, 2, 16), "read back as"),
])
def test_routing_snnc_cannot_compose_is_refused_naming_the_op(fn, match):
    with pytest.raises(FrontendError, match=match):
        from_module(_Fn(lambda x: fn(torch.relu(x))).eval(), (6, 4, 4))


def _select_graph(index, reader):
    """Input (4, 3, 3) -> conv -> IF 'a' -> SelectChannels(index) -> ``reader`` ... -> read-out."""
    rng = np.random.default_rng(1)
    g = ir.new_graph()
    ir.add_op(g, "input", O.Input(shape=(4, 3, 3)))
    ir.add_op(g, "conv", O.Conv2d(weight=rng.normal(size=(4, 4, 3, 3)), bias=rng.normal(size=4), padding=(1, 1)),
              ["input"])
    ir.add_op(g, "a", O.IF(), ["conv"])
    ir.add_op(g, "sel", SelectChannels(index=np.asarray(index)), ["a"])
    ir.add_readout(g, reader(g, len(index), rng))
    ir.verify(g)
    return g


READERS = {  # what reads the selection, and the op the rewrite must leave where the reader was
    "conv": (lambda g, c, rng: ir.add_op(g, "r", O.Conv2d(weight=rng.normal(size=(3, c, 3, 3))), ["sel"]), O.Conv2d),
    "if": (lambda g, c, rng: ir.add_op(g, "head", O.Conv2d(weight=rng.normal(size=(2, c, 1, 1))), [ir.add_op(
        g, "r", O.IF(), [ir.add_op(g, "bn", O.Affine(scale=rng.normal(size=c), shift=rng.normal(size=c)), ["sel"])])]),
        O.Conv2d),
    "depthwise_x2": (lambda g, c, rng: ir.add_op(g, "r", O.Conv2d(weight=rng.normal(size=(2 * c, 1, 3, 3)),
                                                                  groups=c), ["sel"]), O.Conv2d),
    "flatten_dense": (lambda g, c, rng: ir.add_op(g, "r", O.Dense(weight=rng.normal(size=(2, c * 9))), [
        ir.add_op(g, "flat", O.Flatten(), ["sel"])]), O.Dense),
}


@pytest.mark.parametrize("index", [[3, 1, 0, 2], [2, 0], [1, 1, 3]], ids=["permutation", "slice", "repeats"])
@pytest.mark.parametrize("reader", list(READERS))
def test_split_concat_composes_selections_exactly(index, reader):
    build, kind = READERS[reader]
    g = _select_graph(index, build)
    x = np.random.default_rng(2).random((5, 4, 3, 3))
    before = run_ann(g, x)
    split_concat(g, CompileConfig())
    ir.verify(g)
    assert not any(isinstance(ir.op_of(g, n), ROUTING_KINDS) for n in g)
    assert isinstance(ir.op_of(g, ir.inputs_of(g, ir.output_node(g))[0]), kind)
    np.testing.assert_allclose(run_ann(g, x), before, rtol=0, atol=1e-12 * np.abs(before).max())
    # a neuron layer moves past a permutation (no neuron added), else reads the 0/1 embedding
    if reader == "if":
        assert any(n.endswith(".embed") for n in g) == (index != [3, 1, 0, 2])


class _Padded(nn.Module):
    """Keras-style 'correct pad' before a strided valid conv (MobileNet in Keras): F.pad(x, (0, 1, 0, 1))."""

    def __init__(self, pads):
        super().__init__()
        self.pads = pads
        self.conv0, self.conv1 = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 3, 3, stride=2)
        self.fc = nn.Linear(3 * 16, 5)

    def forward(self, x):
        y = nn.functional.pad(torch.relu(self.conv0(x)), self.pads)
        return self.fc(torch.flatten(torch.relu(self.conv1(y)), 1))


@pytest.mark.parametrize("pads", [(0, 1, 0, 1), (1, 1, 2, 0)], ids=["bottom_right", "asymmetric"])
@pytest.mark.parametrize("route", ["torch", "onnx"])
def test_zero_padding_reads_like_torch_and_compiles(pads, route):
    from snn_compiler.frontend.onnx.graph import from_onnx
    torch.manual_seed(5)
    net = _Padded(pads).eval()
    shape = (2, 8, 8) if pads == (0, 1, 0, 1) else (2, 7, 8)
    g = from_module(net, shape) if route == "torch" else from_onnx(_onnx(net, shape))
    x = torch.randn((16,) + shape)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_ann(g, x.numpy().astype(np.float64)), want, rtol=0, atol=1e-5)
    run_pipeline(g, CompileConfig(), STRUCTURAL)
    np.testing.assert_allclose(run_ann(g, x.numpy().astype(np.float64)), want, rtol=0, atol=1e-5)


def test_padding_other_than_zeros_is_refused():
    with pytest.raises(FrontendError, match="only zero padding"):
        from_module(_Fn(lambda x: nn.functional.pad(torch.relu(x), (1, 1, 1, 1), mode="reflect")).eval(), (2, 4, 4))


def test_a_traced_channel_shuffle_that_torch_cannot_convert_says_to_export_instead(tmp_path):
    """torch's TorchScript converter turns ShuffleNet's c // groups of x.size() into a data-dependent value."""
    with pytest.raises(FrontendError, match=r"torch\.export \(\.pt2\)"):
        _lower(shufflenet(), (3, 32, 32), "trace", tmp_path)
