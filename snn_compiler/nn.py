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
``torch.ops.snnc.cubalif.default(x, alpha, beta, threshold, reset)``), and each ``QCFS`` the custom op
``torch.ops.snnc.qcfs.default(x, theta, levels)``, so the compiler sees the layer and its
parameters rather than unrolled arithmetic. Importing this module registers these ops; it must be
imported before ``torch.export.load`` of a program that contains them.

Torch is required here only; the rest of ``snn_compiler`` does not import this module.
"""
import math
from typing import Callable, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .ir.neuron import RESETS, qcfs_staircase


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
    """

    def __init__(self, alpha: float, beta: Union[float, Sequence[float], Tensor], threshold: float = 1.0,
                 reset: str = "subtract", surrogate: Optional[Callable[[Tensor], Tensor]] = None,
                 learn_beta: bool = False):
        super().__init__(beta, threshold=threshold, reset=reset, surrogate=surrogate, learn_beta=learn_beta)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be one number in [0, 1] (one current decay per layer), got {alpha!r}")
        self.alpha = float(alpha)
        self.i: Optional[Tensor] = None

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_exporting():
            return torch.ops.snnc.cubalif(x, self.alpha, self.beta, self.threshold, self.reset)
        fresh = self.i is None or self.i.shape != x.shape
        self.i = x if fresh else self.alpha * self.i + x
        if fresh:
            self.v = None  # both states restart together
        return super().forward(self.i)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, " + super().extra_repr()


def reset(net: nn.Module) -> nn.Module:
    """Clear the state of every ``LIF`` (membrane) and ``CubaLIF`` (membrane and current) in ``net``;
    returns ``net``."""
    for m in net.modules():
        if isinstance(m, LIF):
            m.v = None
        if isinstance(m, CubaLIF):
            m.i = None
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


# ---- QCFS: the quantization-clip-floor-shift activation --------------------------------------------

# The one QCFS computation, eager and exported alike (export keeps it as ONE node with theta, so the
# compiler reads the trained threshold); its gradient is the straight-through one registered below.
@torch.library.custom_op("snnc::qcfs", mutates_args=())
def qcfs(x: Tensor, theta: Tensor, levels: int) -> Tensor:
    return qcfs_staircase(x, theta, levels)  # ir.neuron's: the compiled layer's ANN reading, exactly


@qcfs.register_fake
def _qcfs_fake(x, theta, levels):
    return torch.empty_like(x)


def _qcfs_setup(ctx, inputs, output):
    x, theta, _ = inputs
    ctx.save_for_backward(x, theta, output)


def _qcfs_backward(ctx, grad):
    x, theta, y = ctx.saved_tensors
    inside = (x > 0) & (x < theta)
    gx = grad * inside.to(grad.dtype) if ctx.needs_input_grad[0] else None
    gt = None
    if ctx.needs_input_grad[1]:
        d = torch.where(inside, (y - x) / theta, (x >= theta).to(x.dtype))
        gt = (grad * d).sum_to_size(theta.shape)
    return gx, gt, None


qcfs.register_autograd(_qcfs_backward, setup_context=_qcfs_setup)


class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation (Bu et al., "Optimal ANN-SNN conversion for high-accuracy
    and ultra-low-latency spiking neural networks", ICLR 2022), a ReLU replacement:

        y = theta / L * clip(floor(x * L / theta + 1/2), 0, L)          (L = ``levels``)

    a staircase of L steps of height theta/L, each shifted by half a step: it is what an IF neuron
    with threshold theta and initial membrane theta/2 emits, averaged over L timesteps, for a
    constant input x (so an ANN fine-tuned with it converts with little error at T ~ L).

    Gradient (straight-through, as in the paper: floor passes gradient 1):

        dy/dx     = 1                     if 0 < x < theta, else 0
        dy/dtheta = (y - x) / theta       if 0 < x < theta   (d/dtheta of theta/L * (x L/theta + 1/2 + e)
                                                              with the floor's residue e held fixed)
                  = 1                     if x >= theta      (y = theta)
                  = 0                     if x <= 0          (y = 0)

    ``theta`` (shape (1,)) is a Parameter when ``learn_theta`` (trained, the paper's lambda) else a
    buffer. The compiler lowers the layer to an IF layer with activation scale theta (no calibration
    needed for it) and initial membrane theta/2, whose ANN reading is this staircase.
    """

    def __init__(self, levels: int = 8, theta: float = 1.0, learn_theta: bool = True):
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be an int >= 1, got {levels!r}")
        if not (math.isfinite(float(theta)) and float(theta) > 0):
            raise ValueError(f"theta must be a finite number > 0, got {theta!r}")
        t = torch.tensor([float(theta)], dtype=torch.float32)
        if learn_theta:
            self.theta = nn.Parameter(t)
        else:
            self.register_buffer("theta", t)
        self.levels = levels

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.snnc.qcfs(x, self.theta, self.levels)

    def extra_repr(self) -> str:
        learned = isinstance(self.theta, nn.Parameter)
        return f"levels={self.levels}, theta={float(self.theta.detach()):.4g}, learn_theta={learned}"


def _batches(calibration) -> Iterable[Tensor]:
    """A tensor, or an iterable of tensors / (x, y) batches (a DataLoader), as input batches."""
    if isinstance(calibration, Tensor):
        yield calibration
        return
    for b in calibration:
        yield b[0] if isinstance(b, (tuple, list)) else b


def _relu_percentiles(model: nn.Module, relus, calibration, q: float = 99.9) -> dict:
    """The q-th percentile of each ReLU module's outputs over the calibration data."""
    outs = {id(m): [] for _, m in relus}
    hooks = [m.register_forward_hook(lambda mod, i, o: outs[id(mod)].append(o.detach().float().reshape(-1)))
             for _, m in relus]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for xb in _batches(calibration):
                model(xb)
    finally:
        for h in hooks:
            h.remove()
        model.train(training)
    found = {}
    for name, m in relus:
        if not outs[id(m)]:
            raise ValueError(f"replace_relu: ReLU {name!r} was not called on the calibration data")
        v = torch.cat(outs[id(m)])
        if v.numel() > 10_000_000:  # torch.quantile's size limit: a fixed random subsample
            v = v[torch.randperm(v.numel(), generator=torch.Generator().manual_seed(0))[:10_000_000]]
        found[id(m)] = float(torch.quantile(v.double(), q / 100.0))
    return found


def replace_relu(model: nn.Module, levels: int, theta: float = 1.0, learn_theta: bool = True,
                 calibration=None) -> nn.Module:
    """Swap every ``nn.ReLU`` module of ``model`` (nested ones too) for a ``QCFS(levels, ...)``, in place;
    returns ``model``, ready for QCFS fine-tuning.

    Each QCFS's theta starts at ``theta``, or, with ``calibration`` (a tensor of inputs, or an
    iterable of input batches / (x, y) batches), at the 99.9th percentile of that ReLU's outputs on
    those inputs (a common initialisation; a ReLU that never fires keeps ``theta``). Functional
    ``F.relu`` / ``torch.relu`` calls are not modules and stay ReLUs.
    """
    relus = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    init = _relu_percentiles(model, relus, calibration) if calibration is not None else {}

    def make(m):
        t = init.get(id(m), theta)
        return QCFS(levels, theta=t if t > 0 else theta, learn_theta=learn_theta)

    if isinstance(model, nn.ReLU):
        return make(model)
    made = {}  # a ReLU module used twice becomes one QCFS used twice
    for name, m in relus:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        made.setdefault(id(m), make(m))
        setattr(parent, child, made[id(m)])
    return model
