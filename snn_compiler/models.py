"""One spec for the network you train and the SNN snnc compiles from it: ``mlp(...)`` and ``cnn(...)``.

    net = models.mlp(64, [128, 64], 10, neuron="lif", num_timesteps=8, tau=10.0)
    loss = snn_compiler.nn.rate_loss(net(x), y, net.num_timesteps)      # train with surrogate gradients
    snn = snn_compiler.convert(net, x_calib, bits=8)                     # same object, same weights

``neuron`` picks the activation of every hidden layer and what ``forward`` computes:

- ``"relu"``: an ANN (logits), converted to IF neurons by rate coding; the last Linear feeds the
  read-out (membrane). Its thresholds come from calibration, so ``threshold`` must stay 1.0.
- ``"qcfs"``: the same ANN with ``snn_compiler.nn.QCFS(levels, theta=threshold)`` activations
  (conversion-aware training, Bu et al. 2022; ``levels`` default 8): each layer's trained theta
  is its IF threshold.
- ``"lif"``: a spiking net, ``snn_compiler.nn.LIF(beta, threshold, reset)`` after every weighted
  layer, the output layer included (it is the read-out; the SNN reads its spike counts).
  ``forward(x)`` presents ``x`` for ``num_timesteps`` steps from rest and returns the output spike
  counts (N, output_size), differentiable through the surrogate gradient, which is what
  ``nn.rate_loss(counts, y, num_timesteps)`` takes and what the compiled SNN's ``run`` returns.
  Under ``torch.export`` (what ``convert``/``snnc compile`` do) ``forward`` is ONE step, so the
  compiler sees each LIF layer once, as one ``snnc::lif`` op.

``num_timesteps`` (default 16): the T the compiled SNN runs for by default (``convert`` reads the
attribute; ``snnc compile`` of an exported file needs ``--timesteps``), and for ``"lif"`` also the T
of training. The leak: ``beta`` directly, or ``tau`` in timesteps with ``beta = exp(-1/tau)``, the
exact decay of dv/dt = -v/tau over one step (snnTorch's and seed 003's convention; forward Euler's
``1 - 1/tau``, SpikingJelly's, is its first-order approximation and also scales the input by
1/tau, so a SpikingJelly tau is not this tau). Default beta 0.9 (tau ~ 9.5).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from . import nn as snn
from .ir.neuron import RESETS

NEURONS = ("relu", "qcfs", "lif")
POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
DEFAULT_TIMESTEPS = 16
DEFAULT_BETA = 0.9
DEFAULT_LEVELS = 8


class Network(nn.Module):
    """``layers`` (an ``nn.Sequential``) and how to run it: ANN forward for ``relu``/``qcfs``; for
    ``lif`` the spike counts of ``num_timesteps`` steps (one step while exporting)."""

    def __init__(self, layers: nn.Sequential, neuron: str, num_timesteps: int):
        super().__init__()
        self.layers, self.neuron, self.num_timesteps = layers, neuron, num_timesteps
        # what convert() reads back: the SNN's default T and read-out
        self.snn_readout = "count" if neuron == "lif" else "membrane"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.neuron != "lif" or torch.compiler.is_exporting():
            return self.layers(x)
        return snn.run(self.layers, x, self.num_timesteps)

    def extra_repr(self) -> str:
        return f"neuron={self.neuron!r}, num_timesteps={self.num_timesteps}"


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _sizes(name: str, values, allow_empty: bool) -> list:
    values = [values] if isinstance(values, int) else list(values)
    if not allow_empty and not values:
        raise ValueError(f"{name} must hold at least one size")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be whole numbers >= 1, got {values!r}")
    return values


def _activation(neuron, num_timesteps, tau, beta, threshold, levels, reset, surrogate):
    """Check the neuron arguments; return a factory of one hidden activation layer and T."""
    if neuron not in NEURONS:
        raise ValueError(f"neuron must be one of {NEURONS}, got {neuron!r}")
    if num_timesteps is None:
        num_timesteps = DEFAULT_TIMESTEPS
    _count("num_timesteps", num_timesteps)
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
    if neuron != "lif":
        unused = {"tau": tau, "beta": beta, "surrogate": surrogate, "reset": None if reset == "subtract" else reset}
        given = [k for k, v in unused.items() if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to neuron='lif' (got neuron={neuron!r}); "
                             f"a converted net's reset is convert(..., reset=...)")
    if neuron != "qcfs" and levels is not None:
        raise ValueError(f"levels only applies to neuron='qcfs' (got neuron={neuron!r})")
    if neuron == "relu":
        if threshold != 1.0:
            raise ValueError("threshold applies to neuron='qcfs' (theta) and 'lif'; a converted ReLU "
                             "net's thresholds come from the calibration data (normalization)")
        return nn.ReLU, num_timesteps
    if neuron == "qcfs":
        levels = DEFAULT_LEVELS if levels is None else levels
        return (lambda: snn.QCFS(levels=levels, theta=float(threshold))), num_timesteps
    if tau is not None and beta is not None:
        raise ValueError(f"give tau or beta, not both (got tau={tau!r}, beta={beta!r}; beta = exp(-1/tau))")
    if tau is not None:
        if not (isinstance(tau, (int, float)) and tau > 0):
            raise ValueError(f"tau must be a number > 0 (timesteps), got {tau!r}")
        beta = math.exp(-1.0 / tau)
    beta = DEFAULT_BETA if beta is None else beta
    if not (isinstance(beta, (int, float)) and 0 <= beta <= 1):
        raise ValueError(f"beta must be a number in [0, 1], got {beta!r}")
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    return (lambda: snn.LIF(float(beta), threshold=float(threshold), reset=reset, surrogate=surrogate)), num_timesteps


def mlp(input_size: int, hidden_sizes: Sequence[int], output_size: int, neuron: str = "relu",
        num_timesteps: Optional[int] = None, tau: Optional[float] = None, beta: Optional[float] = None,
        threshold: float = 1.0, levels: Optional[int] = None, reset: str = "subtract",
        surrogate=None) -> Network:
    """Linear(input_size, h1)-act-...-Linear(hk, output_size) [-LIF read-out for 'lif'] (see the
    module docstring). Inputs (N, input_size), or any shape that flattens to it."""
    act, steps = _activation(neuron, num_timesteps, tau, beta, threshold, levels, reset, surrogate)
    sizes = [_count("input_size", input_size)] + _sizes("hidden_sizes", hidden_sizes, True)
    layers = [nn.Flatten()]
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(sizes[-1], _count("output_size", output_size)))
    if neuron == "lif":
        layers.append(act())
    return Network(nn.Sequential(*layers), neuron, steps)


def cnn(input_shape: Sequence[int], channels: Sequence[int], output_size: int, kernel_size: int = 3,
        hidden: Sequence[int] = (), pool: str = "avg", neuron: str = "relu",
        num_timesteps: Optional[int] = None, tau: Optional[float] = None, beta: Optional[float] = None,
        threshold: float = 1.0, levels: Optional[int] = None, reset: str = "subtract",
        surrogate=None) -> Network:
    """Per entry c of ``channels``: Conv2d(c, kernel_size, 'same' padding)-act-Pool(2); then
    Flatten, Linear(h)-act per entry of ``hidden``, Linear(output_size) [-LIF read-out for 'lif'].
    ``input_shape`` is (C, H, W) with H and W divisible by 2**len(channels), so every pool window
    is whole (the compiler then folds the pools into the next layer's weights exactly)."""
    act, steps = _activation(neuron, num_timesteps, tau, beta, threshold, levels, reset, surrogate)
    shape = _sizes("input_shape", input_shape, False)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    channels = _sizes("channels", channels, False)
    kernel_size, output_size = _count("kernel_size", kernel_size), _count("output_size", output_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same padding keeps the map size), got {kernel_size}")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {tuple(POOLS)}, got {pool!r}")
    if pool == "max" and neuron == "lif":
        raise ValueError("pool='max' with neuron='lif': torch max-pools spikes (an OR) while snnc compiles a "
                         "max-pool into IF layers taking the max of rates, so the SNN would not be the "
                         "trained net; use pool='avg'")
    c, h, w = shape
    k = 2 ** len(channels)
    if h % k or w % k:
        raise ValueError(f"input_shape {tuple(shape)}: H and W must be divisible by 2**len(channels) = {k}")
    layers = []
    for out in channels:
        layers += [nn.Conv2d(c, out, kernel_size, padding=kernel_size // 2), act(), POOLS[pool](2)]
        c = out
    sizes = [c * (h // k) * (w // k)] + _sizes("hidden", hidden, True)
    layers.append(nn.Flatten())
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(sizes[-1], output_size))
    if neuron == "lif":
        layers.append(act())
    return Network(nn.Sequential(*layers), neuron, steps)
