"""A zoo of small deterministic torch models (seeded weights, non-trivial BatchNorm statistics).

``zoo()`` -> {name: (model, input_shape)}: models the frontend supports, fresh instances in eval
mode on every call. ``unsupported()`` -> {name: (model, input_shape, op, where)}: models the
frontend must refuse, with a piece of the op's name and of its location the error must contain.
Importing this module needs torch; tests that use it should ``pytest.importorskip("torch")``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _seeded(seed: int, build):
    """Build a model with parameters and BatchNorm statistics drawn from ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.3 * torch.randn(n))
                m.running_var.copy_(0.5 + torch.rand(n))
                if m.affine:
                    with torch.no_grad():
                        m.weight.copy_(1.0 + 0.2 * torch.randn(n))
                        m.bias.copy_(0.2 * torch.randn(n))
    return model.eval()


# ---- supported models ----------------------------------------------------------------------------

def mlp():
    """64-32-16-10 with BatchNorm1d; last Linear without bias."""
    return _seeded(1, lambda: nn.Sequential(
        nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Linear(32, 16), nn.ReLU(inplace=True),
        nn.Linear(16, 10, bias=False)))


class CNN(nn.Module):
    """conv-bn-relu-avgpool-conv-bn-relu-avgpool-flatten-linear-relu-linear on 1x8x8."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class Block(nn.Module):
    """conv-bn-relu-conv-bn plus the identity skip, then relu."""

    def __init__(self, c, functional_add=False, affine=True):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c, affine=affine)
        self.functional_add = functional_add

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = torch.add(out, x) if self.functional_add else out + x
        return self.relu(out)


class ResNet(nn.Module):
    """conv-relu, two residual blocks (operator + and torch.add; one BN affine=False), global
    average pool, view-flatten, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.layers = nn.Sequential(Block(8), Block(8, functional_add=True, affine=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(x.view(x.size(0), -1))


class Functional(nn.Module):
    """F.relu / torch.relu / F.avg_pool2d / F.adaptive_avg_pool2d / torch.flatten; conv padding='same'."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding="same")
        self.fc1 = nn.Linear(6 * 2 * 2, 12)
        self.fc2 = nn.Linear(12, 10)

    def forward(self, x):
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        x = F.adaptive_avg_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x), inplace=True)
        return self.fc2(x.view(x.size(0), -1))  # a no-op view on vectors


class WithDropout(nn.Module):
    """Dropout, Dropout2d and Identity (all removed in eval), reshape-flatten, padded AvgPool2d,
    nested Sequentials."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout2d(0.3), nn.Identity(),
            nn.AvgPool2d(2, stride=2, padding=1))
        self.head = nn.Sequential(
            nn.Dropout(0.5),
            nn.Sequential(nn.Linear(4 * 4 * 4, 16), nn.ReLU(), nn.Identity()),
            nn.Linear(16, 10))

    def forward(self, x):
        x = self.body(x)
        return self.head(x.reshape(x.size(0), -1))


class ConvVariants(nn.Module):
    """Strided, dilated, grouped and depthwise convolutions, a 3x3/stride-1 padded pool."""

    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(),                  # 12 -> 6
            nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2), nn.ReLU(),      # 6 -> 6
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.ReLU(),      # depthwise
            nn.Conv2d(8, 6, (1, 3), stride=(1, 2), padding=(0, 1)), nn.ReLU(),   # 6x6 -> 6x3
            nn.AvgPool2d(3, stride=1, padding=1))
        self.fc = nn.Linear(6 * 6 * 3, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.convs(x), 1))


def zoo() -> dict:
    """{name: (model in eval mode, input_shape without batch)}; fresh deterministic instances."""
    return {
        "mlp": (mlp(), (64,)),
        "cnn": (_seeded(2, CNN), (1, 8, 8)),
        "resnet": (_seeded(3, ResNet), (1, 8, 8)),
        "functional": (_seeded(4, Functional), (1, 8, 8)),
        "dropout": (_seeded(5, WithDropout), (1, 8, 8)),
        "conv_variants": (_seeded(6, ConvVariants), (2, 12, 12)),
    }


# ---- models the frontend must refuse ----------------------------------------------------------------

class _Mul(nn.Module):
    def forward(self, x):
        return x * 2.0


class _Cat(nn.Module):
    def forward(self, x):
        return torch.cat([x, x], dim=1)


class _LSTMHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 4, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0].flatten(1)


class _Features(nn.Module):
    def __init__(self, layer, tail=()):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), layer, *tail)

    def forward(self, x):
        return self.features(x)


def unsupported() -> dict:
    """{name: (model, input_shape, op text, location text)} the frontend must refuse."""
    return {
        "sigmoid": (_seeded(10, lambda: _Features(nn.Sigmoid())), (1, 8, 8), "sigmoid", "features.3"),
        "tanh": (_seeded(11, lambda: _Features(nn.Tanh())), (1, 8, 8), "tanh", "features.3"),
        "elu": (_seeded(12, lambda: _Features(nn.ELU())), (1, 8, 8), "elu", "features.3"),
        "mul": (_seeded(13, lambda: _Features(_Mul())), (1, 8, 8), "mul", "features.3"),
        "cat": (_seeded(14, lambda: _Features(_Cat())), (1, 8, 8), "cat", "features.3"),
        "lstm": (_seeded(15, _LSTMHead), (3, 8), "lstm", "lstm"),
    }
