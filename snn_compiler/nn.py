"""Torch building blocks for training spiking networks that snnc can compile.

- ``fast_sigmoid`` / ``sigmoid_surrogate``: Heaviside spike with a smooth surrogate gradient.
- ``LIF``: a stateful leaky integrate-and-fire layer, one timestep per ``forward`` call.
- ``reset(net)`` clears all LIF state; ``run(net, x, timesteps)`` rate-decodes (sums output spikes).

Export: under ``torch.export.export`` each ``LIF`` becomes ONE node, the custom op
``torch.ops.snnc.lif.default(x, beta, threshold, reset)``, so the compiler sees the layer and its
parameters rather than unrolled arithmetic. Importing this module registers that op; it must be
imported before ``torch.export.load`` of a program that contains it.

Torch is required here only; the rest of ``snn_compiler`` does not import this module.
"""
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .ir.neuron import RESETS


class _Spike(torch.autograd.Function):
    """Heaviside forward; backward ``grad * derivative(x, slope)`` (the surrogate's derivative)."""

    @staticmethod
    def forward(ctx, x, slope, derivative):
        ctx.save_for_backward(x)
        ctx.slope, ctx.derivative = slope, derivative
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.derivative(x, ctx.slope), None, None


def _fast_sigmoid_grad(x, slope):
    return slope / (1 + slope * x.abs()) ** 2


def _sigmoid_grad(x, slope):
    sig = torch.sigmoid(slope * x)
    return slope * sig * (1 - sig)


def fast_sigmoid(x: Tensor, slope: float = 25.0) -> Tensor:
    """Heaviside spike with the fast-sigmoid surrogate gradient (Zenke & Ganguli, SuperSpike).

    forward:  H(x) = 1 if x >= 0 else 0
    backward: dH/dx := slope / (1 + slope * |x|)^2
    """
    return _Spike.apply(x, slope, _fast_sigmoid_grad)


def sigmoid_surrogate(x: Tensor, slope: float = 5.0) -> Tensor:
    """Heaviside spike with the logistic-sigmoid surrogate gradient.

    forward:  H(x) = 1 if x >= 0 else 0
    backward: dH/dx := slope * sig(slope x) * (1 - sig(slope x)),  sig(z) = 1 / (1 + exp(-z))
    """
    return _Spike.apply(x, slope, _sigmoid_grad)


# The export-time stand-in for one LIF layer. Its eager meaning is one step from zero state
# (v = x); beta is irrelevant there but is carried so the compiler can read it from the graph.
@torch.library.custom_op("snnc::lif", mutates_args=())
def lif(x: Tensor, beta: Tensor, threshold: float, reset: str) -> Tensor:
    return (x >= threshold).to(x.dtype)


@lif.register_fake
def _lif_fake(x, beta, threshold, reset):
    return torch.empty_like(x)


class LIF(nn.Module):
    """Leaky integrate-and-fire neurons, one timestep per call (discrete-time NIR ``LIF``/``CubaLIF``
    without synaptic current; the input ``x`` is the already-weighted synaptic drive).

        v[t] = beta * v[t-1] + x[t]                     v[-1] = 0
        s[t] = H(v[t] - threshold)                      spike when v[t] >= threshold
        v[t] <- v[t] - s[t] * threshold                 reset="subtract"
        v[t] <- v[t] * (1 - s[t])                       reset="zero"

    ``H`` is the Heaviside step in the forward pass; ``surrogate`` (default ``fast_sigmoid``, slope
    25) supplies its gradient. As is common practice the reset term's gradient is detached (``s`` in
    the reset lines is a constant for autograd); gradient still flows through the leak ``beta * v``.

    ``beta`` in [0, 1]: a float, or one value per channel (input axis 1: F for (B, F), C for
    (B, C, H, W)). It is a buffer of shape (1,) or (C,), or a Parameter when ``learn_beta``. A
    learned beta is clamped to [0, 1] in the step but exported as stored, so clamp the Parameter
    itself (``lif.beta.data.clamp_(0, 1)``) before export if training pushed it out.

    State ``self.v`` is None until the first call and restarts from zero whenever the input's shape
    changes (e.g. a smaller last batch); call ``reset`` between sequences. Under ``torch.export``
    the layer emits the single op ``torch.ops.snnc.lif`` and leaves the state alone.
    """

    def __init__(self, beta: Union[float, Sequence[float], Tensor], threshold: float = 1.0,
                 reset: str = "subtract", surrogate: Optional[Callable[[Tensor], Tensor]] = None,
                 learn_beta: bool = False):
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        if not float(threshold) > 0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        b = torch.as_tensor(beta, dtype=torch.float32).detach().clone().reshape(-1)
        if b.numel() == 0 or ((b < 0) | (b > 1)).any():
            raise ValueError(f"beta must lie in [0, 1], got {beta!r}")
        if learn_beta:
            self.beta = nn.Parameter(b)
        else:
            self.register_buffer("beta", b)
        self.threshold = float(threshold)
        self.reset = reset
        self.surrogate = surrogate if surrogate is not None else fast_sigmoid
        self.v: Optional[Tensor] = None

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_exporting():
            # the compiler wants one node with beta as a (1,)/(C,) buffer, not the unrolled step
            return torch.ops.snnc.lif(x, self.beta, self.threshold, self.reset)
        beta = self.beta.clamp(0, 1) if isinstance(self.beta, nn.Parameter) else self.beta
        if x.dim() >= 2:  # per-channel beta lines up with axis 1
            beta = beta.reshape(-1, *([1] * (x.dim() - 2)))
        v = x if self.v is None or self.v.shape != x.shape else beta * self.v + x
        s = self.surrogate(v - self.threshold)
        sd = s.detach()
        self.v = v - sd * self.threshold if self.reset == "subtract" else v * (1 - sd)
        return s

    def extra_repr(self) -> str:
        return f"beta={self.beta.tolist()}, threshold={self.threshold}, reset={self.reset!r}"


def reset(net: nn.Module) -> nn.Module:
    """Clear the membrane state of every ``LIF`` in ``net``; returns ``net``."""
    for m in net.modules():
        if isinstance(m, LIF):
            m.v = None
    return net


def run(net: nn.Module, x: Tensor, timesteps: int) -> Tensor:
    """Rate decoding: reset ``net``, present the same ``x`` for ``timesteps`` steps and return the
    sum of the outputs over the steps (output spike counts). Differentiable; works under no_grad."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps!r}")
    reset(net)
    total = 0
    for _ in range(timesteps):
        total = total + net(x)
    return total
