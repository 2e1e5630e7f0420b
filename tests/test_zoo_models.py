"""Whole zoo architectures as torchvision lays them out (defined here: torchvision's compiled ops do not
load against this torch), random weights and randomised BatchNorm statistics, 64 px (issue 19's
'Done when'). MobileNetV2 so far; the others need torch.cat (DenseNet, Inception, SqueezeNet,
ShuffleNet, GoogLeNet) or adaptive pools of any size (AlexNet/VGG at 64 px)."""
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import from_module  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _cbr(i, o, k=3, s=1, groups=1):
    return nn.Sequential(nn.Conv2d(i, o, k, s, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(o),
                         nn.ReLU6(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, i, o, stride, t):
        super().__init__()
        h = i * t
        self.use_res_connect = stride == 1 and i == o
        layers = ([_cbr(i, h, 1)] if t != 1 else []) + [_cbr(h, h, 3, stride, h), nn.Conv2d(h, o, 1, bias=False),
                                                        nn.BatchNorm2d(o)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (width 1.0): its inverted-residual settings (t, c, n, s), the 1280 head."""

    SETTINGS = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                [6, 320, 1, 1]]

    def __init__(self, num_classes=1000):
        super().__init__()
        features, c = [_cbr(3, 32, 3, 2)], 32
        for t, o, n, s in self.SETTINGS:
            for i in range(n):
                features.append(_InvertedResidual(c, o, s if i == 0 else 1, t))
                c = o
        features.append(_cbr(c, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def _randomised(net, seed):
    torch.manual_seed(seed)
    net = net()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.4)
    return net.eval()


def test_mobilenetv2_compiles_at_64px_and_its_int8_snn_follows_its_ann():
    net = _randomised(MobileNetV2, 0)
    x = torch.rand(32, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        want = net(x).numpy()
    t0 = time.perf_counter()
    q = compile_model(from_module(net, (3, 64, 64)), CompileConfig(bits=8, calibration=x.numpy()))
    print(f"MobileNetV2 64 px: compile {time.perf_counter() - t0:.2f} s")
    ann = run_ann(q, x.numpy())  # int8 weights
    np.testing.assert_allclose(ann, want, rtol=0, atol=0.01 * np.abs(want).max())
    snn = simulate(q, x[:16].numpy(), timesteps=64)
    assert np.corrcoef(snn.scores.ravel(), ann[:16].ravel())[0, 1] > 0.99
    assert (snn.predictions == want[:16].argmax(1)).mean() >= 0.9


def test_mobilenetv2_compiles_through_onnx_and_its_int8_snn_follows_its_ann():
    import io
    import warnings
    from snn_compiler.frontend.onnx.graph import from_onnx
    net = _randomised(MobileNetV2, 0)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 64, 64),), f, dynamo=False, opset_version=17)
    x = torch.rand(32, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        want = net(x).numpy()
    q = compile_model(from_onnx(f.getvalue()), CompileConfig(bits=8, calibration=x.numpy()))
    ann = run_ann(q, x.numpy())
    np.testing.assert_allclose(ann, want, rtol=0, atol=0.01 * np.abs(want).max())
    snn = simulate(q, x[:16].numpy(), timesteps=64)
    assert (snn.predictions == ann[:16].argmax(1)).mean() >= 0.9
