"""Concatenation (issue 19): torch.cat / ONNX Concat become the IR's Concat, which split_concat takes
apart before SNN form; DenseNet-, Inception- and SqueezeNet-style blocks (defined here: torchvision's
compiled ops do not load against this torch) compile and their int8 SNN agrees with their ANN."""
from __future__ import annotations

import io
import os
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from frontend_helpers import _lower  # noqa: E402

from snn_compiler import ir  # noqa: E402
from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import FrontendError, from_module  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.ir.routing import Concat  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _bn_stats(net):
    """BatchNorm statistics of a trained net (random), so folding them is tested, not the identity."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


class Fire(nn.Module):
    """SqueezeNet's Fire module: squeeze 1x1 -> ReLU, then expand 1x1 and 3x3 (each -> ReLU), concatenated."""

    def __init__(self, i, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(i, squeeze, 1), nn.ReLU(inplace=True))
        self.expand1x1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU(inplace=True))
        self.expand3x3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x):
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)


def squeezenet():
    """SqueezeNet 1.1's layout in small: ceil-mode max pools between Fires, a 1x1 conv classifier, then
    ReLU, global average pool and flatten (the read-out reads pooled spikes)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
                         Fire(16, 4, 8), Fire(16, 4, 8), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(16, 8, 16),
                         nn.Dropout(0.5), nn.Conv2d(32, 10, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten()).eval()


class DenseLayer(nn.Module):
    """DenseNet's layer: BN -> ReLU -> 1x1 conv -> BN -> ReLU -> 3x3 conv on the concatenation of all
    earlier outputs (whose parts are convolutions read by many later layers: pre-activation BNs)."""

    def __init__(self, i, growth):
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(i), nn.Conv2d(i, 4 * growth, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(4 * growth), nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features):
        x = torch.cat(features, 1)
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class DenseNet(nn.Module):
    """Two dense blocks joined by a transition (BN -> ReLU -> 1x1 conv -> 2x2 average pool), a
    torchvision-style stem (conv, BN, ReLU, max pool) and head (BN, ReLU, global pool, Linear)."""

    def __init__(self, growth=4):
        super().__init__()
        self.conv0, self.norm0 = nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8)
        self.block1 = nn.ModuleList([DenseLayer(8 + growth * i, growth) for i in range(3)])
        self.transition = nn.Sequential(nn.BatchNorm2d(20), nn.ReLU(), nn.Conv2d(20, 10, 1, bias=False),
                                        nn.AvgPool2d(2, 2))
        self.block2 = nn.ModuleList([DenseLayer(10 + growth * i, growth) for i in range(2)])
        self.norm5, self.classifier = nn.BatchNorm2d(18), nn.Linear(18, 10)

    def forward(self, x):
        features = [F.max_pool2d(F.relu(self.norm0(self.conv0(x))), 3, 2, 1)]
        for layer in self.block1:
            features.append(layer(features))
        features = [self.transition(torch.cat(features, 1))]
        for layer in self.block2:
            features.append(layer(features))
        x = F.relu(self.norm5(torch.cat(features, 1)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _cbr(i, o, k, **kw):
    return nn.Sequential(nn.Conv2d(i, o, k, bias=False, **kw), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class Inception(nn.Module):
    """GoogLeNet's Inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3 max pool -> 1x1, concatenated;
    ``avg_branch`` swaps the pool for Inception-v3's 3x3 average pool."""

    def __init__(self, i, c1, c3r, c3, c5r, c5, pool, avg_branch=False):
        super().__init__()
        self.branch1 = _cbr(i, c1, 1)
        self.branch2 = nn.Sequential(_cbr(i, c3r, 1), _cbr(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(_cbr(i, c5r, 1), _cbr(c5r, c5, 3, padding=1))
        pool_op = nn.AvgPool2d(3, 1, 1) if avg_branch else nn.MaxPool2d(3, 1, 1, ceil_mode=True)
        self.branch4 = nn.Sequential(pool_op, _cbr(i, pool, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def googlenet():
    torch.manual_seed(2)
    net = nn.Sequential(_cbr(3, 16, 3, stride=2, padding=1), nn.MaxPool2d(3, 2, ceil_mode=True),
                        Inception(16, 8, 6, 8, 2, 4, 4), Inception(24, 8, 8, 12, 2, 4, 4, avg_branch=True),
                        nn.MaxPool2d(3, 2, ceil_mode=True), Inception(28, 8, 6, 8, 2, 4, 4),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(24, 10))
    return _bn_stats(net)


class InceptionE(nn.Module):
    """Inception-v3's last block: branches that themselves end in a concatenation (1x3 and 3x1 convs),
    a 3x3 average pool branch (zero padding counted, as torchvision's F.avg_pool2d(x, 3, 1, 1))."""

    def __init__(self, i):
        super().__init__()
        self.branch1x1 = _cbr(i, 8, 1)
        self.branch3x3_1 = _cbr(i, 8, 1)
        self.branch3x3_2a, self.branch3x3_2b = _cbr(8, 6, (1, 3), padding=(0, 1)), _cbr(8, 6, (3, 1), padding=(1, 0))
        self.branch_pool = _cbr(i, 4, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        pool = self.branch_pool(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([self.branch1x1(x), b3, pool], 1)


def inception_v3_tail():
    torch.manual_seed(6)
    net = nn.Sequential(_cbr(3, 12, 3, stride=2), InceptionE(12), InceptionE(24), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(24, 10))
    return _bn_stats(net)


def _check_compiles(net, shape, graph=None, n=64):
    """The compiled graph reads as the torch net (ANN, 1e-4); its int8 SNN at T = 64 agrees with that
    ANN's class on >= 90% of random inputs (the issue's criterion)."""
    torch.manual_seed(5)
    x = torch.rand((n,) + shape)
    graph = from_module(net, shape) if graph is None else graph
    assert any(isinstance(ir.op_of(graph, m), Concat) for m in graph)
    q = compile_model(graph, CompileConfig(bits=8, calibration=x.numpy()))
    assert not any(isinstance(ir.op_of(q, m), Concat) for m in q)
    ann = run_ann(q, x.numpy())
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(ann, want, rtol=0, atol=1e-4 * max(1.0, np.abs(want).max()))
    snn = simulate(q, x.numpy(), timesteps=64).scores
    agree = (snn.argmax(1) == ann.argmax(1)).mean()
    assert agree >= 0.9, agree
    return q


def test_squeezenet_fire_modules_compile_and_their_int8_snn_agrees_with_their_ann():
    q = _check_compiles(squeezenet(), (3, 36, 36))  # 36 px: the second ceil-mode pool has partial windows
    assert any(".part" in n for n in q)


def test_densenet_blocks_compile_through_torch_export_and_their_int8_snn_agrees(tmp_path):
    torch.manual_seed(1)
    net = _bn_stats(DenseNet())
    _check_compiles(net, (3, 32, 32), graph=_lower(net, (3, 32, 32), "export", tmp_path))


def test_googlenet_inception_blocks_compile_and_their_int8_snn_agrees_with_their_ann():
    _check_compiles(googlenet(), (3, 32, 32))


def test_inception_v3_blocks_with_nested_concatenations_compile_and_agree():
    _check_compiles(inception_v3_tail(), (3, 24, 24))


def _onnx(model, shape) -> bytes:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros((1,) + shape),), f, dynamo=False, opset_version=17)
    return f.getvalue()


@pytest.mark.parametrize("name", ["squeezenet", "densenet"])
def test_concatenating_nets_compile_through_onnx(name):
    from snn_compiler.frontend.onnx.graph import from_onnx
    torch.manual_seed(1)
    net, shape = (squeezenet(), (3, 36, 36)) if name == "squeezenet" else (_bn_stats(DenseNet()), (3, 32, 32))
    _check_compiles(net, shape, graph=from_onnx(_onnx(net, shape)))


class _Cat(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.register_buffer("const", torch.ones(1, 2, 4, 4))
        self.fn = fn

    def forward(self, x):
        return self.fn(F.relu(self.conv(x)), self.const)


@pytest.mark.parametrize("fn, match", [
    (lambda y, c: torch.cat([y, F.relu(y)], 2), "along axis 2 .* dim=1"),
    (lambda y, c: torch.cat([y, y], 1), "with itself"),
    (lambda y, c: torch.cat([y, c.expand(y.shape[0], -1, -1, -1)], 1), "tensor 1 must be an activation"),
])
def test_concatenations_snnc_cannot_take_apart_are_refused_naming_the_op(fn, match):
    with pytest.raises(FrontendError, match=match):
        from_module(_Cat(fn).eval(), (1, 4, 4))


def test_a_single_tensor_cat_is_that_tensor():
    g = from_module(_Cat(lambda y, c: torch.cat([y], 1)).eval(), (1, 4, 4))
    assert not any(isinstance(ir.op_of(g, m), Concat) for m in g)
