"""The concatenating architectures of issue 19's 'Done when' as torchvision lays them out (defined
here: torchvision's compiled ops do not load against this torch): DenseNet-121, GoogLeNet, SqueezeNet
1.1 and ShuffleNetV2 x0.5 at 64 px, Inception-v3 at 96 px, random weights and randomised BatchNorm
statistics. Each compiles from torch.export (DenseNet, SqueezeNet and ShuffleNet through ONNX too),
its compiled ANN reading is the torch net, and its int8 SNN agrees with that ANN's class on >= 90% of
random images at T = 64."""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from test_zoo_concat import DenseLayer, Fire, Inception  # noqa: E402
from test_zoo_shuffle import InvertedResidual  # noqa: E402
from test_zoo_models import _randomised  # noqa: E402

from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import from_module  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.slow]


class DenseNet121(nn.Module):
    """torchvision's densenet121: growth 32, blocks (6, 12, 24, 16), bottleneck 4 x growth, 64 stem
    channels, transitions halving the channels and the map."""

    def __init__(self, growth=32, blocks=(6, 12, 24, 16), init=64, num_classes=1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, init, 7, 2, 3, bias=False), nn.BatchNorm2d(init), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        self.blocks, self.transitions, c = nn.ModuleList(), nn.ModuleList(), init
        for i, n in enumerate(blocks):
            self.blocks.append(nn.ModuleList([DenseLayer(c + growth * j, growth) for j in range(n)]))
            c += growth * n
            if i < len(blocks) - 1:
                self.transitions.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                                      nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2, 2)))
                c //= 2
        self.norm5, self.classifier = nn.BatchNorm2d(c), nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            features = [x]
            for layer in block:
                features.append(layer(features))
            x = torch.cat(features, 1)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        x = F.relu(self.norm5(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SqueezeNet11(nn.Module):
    """torchvision's squeezenet1_1."""

    def __init__(self, num_classes=1000):
        super().__init__()
        pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.features = nn.Sequential(nn.Conv2d(3, 64, 3, 2), nn.ReLU(inplace=True), pool, Fire(64, 16, 64),
                                      Fire(128, 16, 64), pool, Fire(128, 32, 128), Fire(256, 32, 128), pool,
                                      Fire(256, 48, 192), Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


def _cbr(i, o, k, **kw):
    return nn.Sequential(nn.Conv2d(i, o, k, bias=False, **kw), nn.BatchNorm2d(o, eps=0.001), nn.ReLU(inplace=True))


class GoogLeNet(nn.Module):
    """torchvision's googlenet without its auxiliary classifiers (training only) and input transform."""

    CFG = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), "pool",
           (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64), (512, 128, 128, 256, 24, 64, 64),
           (512, 112, 144, 288, 32, 64, 64), (528, 256, 160, 320, 32, 128, 128), "pool",
           (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)]

    def __init__(self, num_classes=1000):
        super().__init__()
        layers = [_cbr(3, 64, 7, stride=2, padding=3), nn.MaxPool2d(3, 2, ceil_mode=True), _cbr(64, 64, 1),
                  _cbr(64, 192, 3, padding=1), nn.MaxPool2d(3, 2, ceil_mode=True)]
        for cfg in self.CFG:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True) if cfg == "pool" else Inception(*cfg))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.fc(F.dropout(torch.flatten(x, 1), 0.2, self.training))


class ShuffleNetV2x05(nn.Module):
    """torchvision's shufflenet_v2_x0_5: stages of 4, 8, 4 units, channels 24, 48, 96, 192, 1024."""

    def __init__(self, repeats=(4, 8, 4), channels=(24, 48, 96, 192, 1024), num_classes=1000):
        super().__init__()
        self.conv1 = _cbr(3, channels[0], 3, stride=2, padding=1)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, c = [], channels[0]
        for r, o in zip(repeats, channels[1:4]):
            stages.append(nn.Sequential(InvertedResidual(c, o, 2), *[InvertedResidual(o, o, 1) for _ in range(r - 1)]))
            c = o
        self.stages = nn.Sequential(*stages)
        self.conv5 = _cbr(c, channels[-1], 1)
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x):
        return self.fc(self.conv5(self.stages(self.maxpool(self.conv1(x)))).mean([2, 3]))


class _InceptionA(nn.Module):
    def __init__(self, i, pool):
        super().__init__()
        self.b1, self.b5 = _cbr(i, 64, 1), nn.Sequential(_cbr(i, 48, 1), _cbr(48, 64, 5, padding=2))
        self.b3 = nn.Sequential(_cbr(i, 64, 1), _cbr(64, 96, 3, padding=1), _cbr(96, 96, 3, padding=1))
        self.bp = _cbr(i, pool, 1)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b5(x), self.b3(x), self.bp(F.avg_pool2d(x, 3, 1, 1))], 1)


class _InceptionB(nn.Module):
    def __init__(self, i):
        super().__init__()
        self.b3 = _cbr(i, 384, 3, stride=2)
        self.bd = nn.Sequential(_cbr(i, 64, 1), _cbr(64, 96, 3, padding=1), _cbr(96, 96, 3, stride=2))

    def forward(self, x):
        return torch.cat([self.b3(x), self.bd(x), F.max_pool2d(x, 3, 2)], 1)


def _c17(i, o, k):  # Inception-v3's factorised 1x7 / 7x1 convs
    return _cbr(i, o, k, padding=(k[0] // 2, k[1] // 2))


class _InceptionC(nn.Module):
    def __init__(self, i, c7):
        super().__init__()
        self.b1 = _cbr(i, 192, 1)
        self.b7 = nn.Sequential(_cbr(i, c7, 1), _c17(c7, c7, (1, 7)), _c17(c7, 192, (7, 1)))
        self.bd = nn.Sequential(_cbr(i, c7, 1), _c17(c7, c7, (7, 1)), _c17(c7, c7, (1, 7)), _c17(c7, c7, (7, 1)),
                                _c17(c7, 192, (1, 7)))
        self.bp = _cbr(i, 192, 1)

    def forward(self, x):
        return torch.cat([self.b1(x), self.b7(x), self.bd(x), self.bp(F.avg_pool2d(x, 3, 1, 1))], 1)


class _InceptionD(nn.Module):
    def __init__(self, i):
        super().__init__()
        self.b3 = nn.Sequential(_cbr(i, 192, 1), _cbr(192, 320, 3, stride=2))
        self.b7 = nn.Sequential(_cbr(i, 192, 1), _c17(192, 192, (1, 7)), _c17(192, 192, (7, 1)),
                                _cbr(192, 192, 3, stride=2))

    def forward(self, x):
        return torch.cat([self.b3(x), self.b7(x), F.max_pool2d(x, 3, 2)], 1)


class _InceptionE(nn.Module):
    def __init__(self, i):
        super().__init__()
        self.b1, self.b3_1, self.bd_1 = _cbr(i, 320, 1), _cbr(i, 384, 1), nn.Sequential(_cbr(i, 448, 1),
                                                                                        _cbr(448, 384, 3, padding=1))
        self.b3_2a, self.b3_2b = _c17(384, 384, (1, 3)), _c17(384, 384, (3, 1))
        self.bd_3a, self.bd_3b = _c17(384, 384, (1, 3)), _c17(384, 384, (3, 1))
        self.bp = _cbr(i, 192, 1)

    def forward(self, x):
        b3, bd = self.b3_1(x), self.bd_1(x)
        return torch.cat([self.b1(x), torch.cat([self.b3_2a(b3), self.b3_2b(b3)], 1),
                          torch.cat([self.bd_3a(bd), self.bd_3b(bd)], 1), self.bp(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionV3(nn.Module):
    """torchvision's inception_v3 without its auxiliary classifier (training only) and input transform."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(
            _cbr(3, 32, 3, stride=2), _cbr(32, 32, 3), _cbr(32, 64, 3, padding=1), nn.MaxPool2d(3, 2), _cbr(64, 80, 1),
            _cbr(80, 192, 3), nn.MaxPool2d(3, 2), _InceptionA(192, 32), _InceptionA(256, 64), _InceptionA(288, 64),
            _InceptionB(288), _InceptionC(768, 128), _InceptionC(768, 160), _InceptionC(768, 160),
            _InceptionC(768, 192), _InceptionD(768), _InceptionE(1280), _InceptionE(2048))
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.fc(F.dropout(torch.flatten(x, 1), 0.5, self.training))


NETS = {"densenet121": DenseNet121, "googlenet": GoogLeNet, "squeezenet1_1": SqueezeNet11,
        "shufflenet_v2_x0_5": ShuffleNetV2x05, "inception_v3": InceptionV3}
SIZE = {"inception_v3": 96}  # the size for it (torchvision's needs 75 px at least); 64 px for the rest


# GoogLeNet at 64 px: its last Inception's pool branch max-pools a 2x2 map with 3x3 windows, where one
# layer of lower_maxpool's tree only ever sees float32 rounding; normalize counts it silent (ROUNDING_NOISE)
_CASES = list(NETS)


@pytest.mark.parametrize("route", ["torch", "onnx"])
@pytest.mark.parametrize("name", _CASES)
def test_concatenating_zoo_nets_compile_at_64px_and_their_int8_snn_agrees(name, route):
    if route == "onnx" and name in ("googlenet", "inception_v3"):
        pytest.skip("through ONNX at full size: DenseNet, SqueezeNet and ShuffleNet (the issue's list; Inception "
                    "blocks through ONNX: test_zoo_concat.py)")
    net = _randomised(NETS[name], 0)
    px = SIZE.get(name, 64)
    x = torch.rand(32, 3, px, px) * 2 - 1
    with torch.no_grad():
        want = net(x).numpy()
    t0 = time.perf_counter()
    if route == "onnx":
        from snn_compiler.frontend.onnx.graph import from_onnx
        from test_zoo_concat import _onnx
        graph = from_onnx(_onnx(net, (3, px, px)))
    else:
        graph = from_module(net, (3, px, px))
    q = compile_model(graph, CompileConfig(bits=8, calibration=x.numpy()))
    print(f"{name} {px} px: compile {time.perf_counter() - t0:.2f} s, {len(q)} nodes")
    ann = run_ann(q, x.numpy())  # int8 weights
    np.testing.assert_allclose(ann, want, rtol=0, atol=0.01 * np.abs(want).max())
    n = 8 if name == "densenet121" else 16  # DenseNet-121's 662 layers: ~20 s an image on 2 busy cores
    snn = simulate(q, x[:n].numpy(), timesteps=64)
    agree = (snn.predictions == ann[:n].argmax(1)).mean()
    print(f"{name}: int8 SNN agrees with the ANN on {agree:.0%} at T = 64")
    assert agree >= 0.9
