"""QCFS, the quantization-clip-floor-shift activation (Bu et al., ICLR 2022), and ``replace_relu``:
part of :mod:`snn_compiler.nn` (imported and re-exported there; see its docstring for export)."""
import math
from typing import Iterable

import torch
from torch import Tensor, nn

from .ir.neuron import qcfs_staircase


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
