"""Torch building blocks for training spiking networks that snnc can compile.

- ``fast_sigmoid`` / ``sigmoid_surrogate``: Heaviside spike with a smooth surrogate gradient.
- ``LIF``: a stateful leaky integrate-and-fire layer, one timestep per ``forward`` call;
  ``CubaLIF``: the same with a decaying synaptic current (current-based, NIR's CubaLIF).
- ``reset(net)`` clears all LIF state; ``run(net, x, timesteps)`` rate-decodes (sums output spikes);
  ``rate_loss(counts, target, timesteps)`` is a loss on those counts for direct training.
- ``QCFS``: the quantization-clip-floor-shift activation (Bu et al., ICLR 2022) that an ANN is
  fine-tuned with so that its converted SNN needs few timesteps; ``replace_relu(model, levels)``
  swaps a trained model's ReLUs for it.

Export: under ``torch.export.export`` each ``LIF`` becomes ONE node, the custom op
``torch.ops.snnc.lif.default(x, beta, threshold, reset)`` (``CubaLIF``:
``torch.ops.snnc.cubalif.default(x, alpha, beta, threshold, reset)``; a recurrent one
``torch.ops.snnc.rcubalif.default(x, w_rec, alpha, beta, threshold, reset)``), and each ``QCFS`` the custom op
``torch.ops.snnc.qcfs.default(x, theta, levels)``, so the compiler sees the layer and its
parameters rather than unrolled arithmetic. Importing this module registers these ops; it must be
imported before ``torch.export.load`` of a program that contains them.

Torch is required here only; the rest of ``snn_compiler`` does not import this module.
"""
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

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


# The export-time stand-in for one CubaLIF layer (as snnc::lif for LIF): one step from zero state.
@torch.library.custom_op("snnc::cubalif", mutates_args=())
def cubalif(x: Tensor, alpha: float, beta: Tensor, threshold: float, reset: str) -> Tensor:
    return (x >= threshold).to(x.dtype)


@cubalif.register_fake
def _cubalif_fake(x, alpha, beta, threshold, reset):
    return torch.empty_like(x)


# A recurrent CubaLIF at export: one node carrying its recurrent weights (the compiler makes the cycle).
@torch.library.custom_op("snnc::rcubalif", mutates_args=())
def rcubalif(x: Tensor, w_rec: Tensor, alpha: float, beta: Tensor, threshold: float, reset: str) -> Tensor:
    return (x >= threshold).to(x.dtype)


@rcubalif.register_fake
def _rcubalif_fake(x, w_rec, alpha, beta, threshold, reset):
    return torch.empty_like(x)


class CubaLIF(LIF):
    """Current-based LIF neurons (NIR ``CubaLIF``; snnTorch's ``Synaptic``), one timestep per call:
    the input ``x`` (the weighted synaptic drive) charges a synaptic current ``i`` that decays by
    ``alpha``, and the current charges the membrane:

        i[t] = alpha * i[t-1] + x[t]                    i[-1] = 0
        v[t] = beta * v[t-1] + i[t]                     v[-1] = 0
        s[t] = H(v[t] - threshold), reset as in LIF     (the current is not reset)

    ``alpha`` in [0, 1] is one float per layer (Loihi's current decay is one register per
    compartment group); the compiler keeps it as ``decay_u = round((1 - alpha) * 4096)``, so an
    alpha that is a multiple of 1/4096 (``1 - 41/4096``: a slow synapse) compiles exactly and any
    other is rounded with a warning. ``beta``, ``threshold``, ``reset``, ``surrogate`` and
    ``learn_beta`` are LIF's; the surrogate gradient flows through both decays. Under
    ``torch.export`` the layer emits the single op ``torch.ops.snnc.cubalif``.

    ``recurrent=N`` (the layer's N neurons, vector input (B, N)): each neuron also reads the
    layer's own spikes of the previous step through the learned weights ``rec.weight`` (N, N),
    as snnTorch's ``RSynaptic`` and NIR's cycles do:

        i[t] = alpha * i[t-1] + x[t] + rec.weight @ s[t-1]          s[-1] = 0

    exported as ``torch.ops.snnc.rcubalif`` with those weights; the compiler makes the cycle
    (a one-step Delay of the spikes, then a Dense, into the layer).
    """

    def __init__(self, alpha: float, beta: Union[float, Sequence[float], Tensor], threshold: float = 1.0,
                 reset: str = "subtract", surrogate: Optional[Callable[[Tensor], Tensor]] = None,
                 learn_beta: bool = False, recurrent: int = 0):
        super().__init__(beta, threshold=threshold, reset=reset, surrogate=surrogate, learn_beta=learn_beta)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be one number in [0, 1] (one current decay per layer), got {alpha!r}")
        if isinstance(recurrent, bool) or not isinstance(recurrent, int) or recurrent < 0:
            raise ValueError(f"recurrent must be the layer's number of neurons (0: no recurrence), got {recurrent!r}")
        self.alpha = float(alpha)
        self.rec = nn.Linear(recurrent, recurrent, bias=False) if recurrent else None
        if self.rec is not None:
            nn.init.normal_(self.rec.weight, 0.0, 0.5 / recurrent ** 0.5)  # weak: the feed-forward drive leads
        self.i: Optional[Tensor] = None
        self.s: Optional[Tensor] = None

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_exporting():
            if self.rec is not None:
                return torch.ops.snnc.rcubalif(x, self.rec.weight, self.alpha, self.beta, self.threshold, self.reset)
            return torch.ops.snnc.cubalif(x, self.alpha, self.beta, self.threshold, self.reset)
        if self.rec is not None and (x.dim() != 2 or x.shape[1] != self.rec.in_features):
            raise ValueError(f"a recurrent CubaLIF of {self.rec.in_features} neurons takes (B, "
                             f"{self.rec.in_features}) inputs, got {tuple(x.shape)}")
        fresh = self.i is None or self.i.shape != x.shape
        if self.rec is not None and not fresh:
            x = x + self.rec(self.s)
        self.i = x if fresh else self.alpha * self.i + x
        if fresh:
            self.v = None  # both states restart together
        self.s = super().forward(self.i)
        return self.s

    def extra_repr(self) -> str:
        rec = f", recurrent={self.rec.in_features}" if self.rec is not None else ""
        return f"alpha={self.alpha}, " + super().extra_repr() + rec


def reset(net: nn.Module) -> nn.Module:
    """Clear the state of every ``LIF`` (membrane) and ``CubaLIF`` (membrane and current) in ``net``;
    returns ``net``."""
    for m in net.modules():
        if isinstance(m, LIF):
            m.v = None
        if isinstance(m, CubaLIF):
            m.i = m.s = None
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


def rate_loss(counts: Tensor, target: Tensor, timesteps: int, kind: str = "ce", on_rate: float = 1.0,
              off_rate: float = 0.0) -> Tensor:
    """A loss on rate-decoded output spike counts (e.g. ``run(net, x, timesteps)``), for direct training.

    With ``r = counts / timesteps`` (firing rates in [0, 1]):

    - ``kind="ce"``: ``cross_entropy(r, target)``, the rates read as logits; ``target`` holds class
      indices (N,). Because the rates lie in [0, 1] the loss cannot reach 0 (it is at least
      ``log(1 + (C-1)/e)`` for C classes); its gradient still drives the right neuron up and the
      others down, and the prediction (argmax of the counts) is what is trained.
    - ``kind="mse"``: ``mean((r - r*)^2)`` against a target firing rate ``r*``: ``on_rate`` for the
      label's neuron and ``off_rate`` for the others when ``target`` holds class indices (N,), or
      ``target`` itself when it is a float tensor shaped like ``counts`` (rates per neuron).
    """
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps!r}")
    if counts.dim() != 2:
        raise ValueError(f"counts must be (N, classes), got shape {tuple(counts.shape)}")
    rates = counts / timesteps
    if kind == "ce":
        if target.dtype.is_floating_point or target.shape != counts.shape[:1]:
            raise ValueError(f"kind='ce' needs class indices of shape ({counts.shape[0]},), got "
                             f"{target.dtype} {tuple(target.shape)}")
        return F.cross_entropy(rates, target)
    if kind == "mse":
        if target.dtype.is_floating_point:
            if target.shape != counts.shape:
                raise ValueError(f"target rates must be shaped like counts {tuple(counts.shape)}, "
                                 f"got {tuple(target.shape)}")
            want = target
        else:
            if target.shape != counts.shape[:1]:
                raise ValueError(f"class indices must have shape ({counts.shape[0]},), got {tuple(target.shape)}")
            want = torch.full_like(rates, float(off_rate))
            want.scatter_(1, target.long().unsqueeze(1), float(on_rate))
        return F.mse_loss(rates, want)
    raise ValueError(f"kind must be 'ce' or 'mse', got {kind!r}")


# QCFS lives in its own module; its names belong to this one (snn.QCFS, snn.replace_relu)
from .nn_qcfs import QCFS, qcfs, replace_relu  # noqa: E402,F401
