"""The concatenating architectures of issue 19's 'Done when' as torchvision lays them out (defined
here: torchvision's compiled ops do not load against this torch): DenseNet-121, GoogLeNet, SqueezeNet
1.1 and ShuffleNetV2 x0.5, random weights and randomised BatchNorm statistics, 64 px. Each compiles
from torch.export, its compiled ANN reading is the torch net, and its int8 SNN agrees with that ANN's
class on >= 90% of random images at T = 64."""
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


NETS = {"densenet121": DenseNet121, "googlenet": GoogLeNet, "squeezenet1_1": SqueezeNet11,
        "shufflenet_v2_x0_5": ShuffleNetV2x05}


# GoogLeNet at 64 px: its last Inception's pool branch max-pools a 2x2 map with 3x3 windows, where one
# layer of lower_maxpool's tree only ever sees float32 rounding; normalize counts it silent (ROUNDING_NOISE)
_CASES = list(NETS)


@pytest.mark.parametrize("route", ["torch", "onnx"])
@pytest.mark.parametrize("name", _CASES)
def test_concatenating_zoo_nets_compile_at_64px_and_their_int8_snn_agrees(name, route):
    if route == "onnx" and name == "googlenet":
        pytest.skip("through ONNX at full size: DenseNet, SqueezeNet and ShuffleNet (the issue's list; Inception "
                    "blocks through ONNX: test_zoo_concat.py)")
    net = _randomised(NETS[name], 0)
    x = torch.rand(32, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        want = net(x).numpy()
    t0 = time.perf_counter()
    if route == "onnx":
        from snn_compiler.frontend.onnx.graph import from_onnx
        from test_zoo_concat import _onnx
        graph = from_onnx(_onnx(net, (3, 64, 64)))
    else:
        graph = from_module(net, (3, 64, 64))
    q = compile_model(graph, CompileConfig(bits=8, calibration=x.numpy()))
    print(f"{name} 64 px: compile {time.perf_counter() - t0:.2f} s, {len(q)} nodes")
    ann = run_ann(q, x.numpy())  # int8 weights
    np.testing.assert_allclose(ann, want, rtol=0, atol=0.01 * np.abs(want).max())
    n = 8 if name == "densenet121" else 16  # DenseNet-121's 662 layers simulate at ~20 s an image on 2 busy cores
    snn = simulate(q, x[:n].numpy(), timesteps=64)
    agree = (snn.predictions == ann[:n].argmax(1)).mean()
    print(f"{name}: int8 SNN agrees with the ANN on {agree:.0%} at T = 64")
    assert agree >= 0.9
