"""The one neuron op of the IR and its one update rule, run in float or in integers.

Every neuron kind is one compartment (nengo-loihi's idea) with these fields; IF is a Neuron
without leak, LIF one with ``beta``, the read-out layer one with ``readout=True``. Every engine
and backend (numpy and numba emulators, Lava's process model) is tested against
:func:`int_step` and :func:`float_step`; nothing else states the equations.

Integer step (Loihi's fixed-point compartment; Lava's ``PyLifModelBitAcc`` is this rule with
``decay_u = du + 1``, input current ``a << 6``, ``threshold = (vth << 6) + 1`` and reset "zero",
tested in tests/test_lava_lif_stock.py), with input current ``I[t]`` (the weighted ops' sum), all
values integers and ``tz(x) = sign(x) * (|x| >> 12)`` (a product rounded toward zero):

    u[t] = tz(u[t-1] * (4096 - decay_u)) + I[t]        (decay_u = 4096: no current memory)
    v[t] = clip(tz(v[t-1] * (4096 - decay_v)) + u[t] + bias, -v_max, v_max)
    s[t] = v[t] >= threshold                            (hidden layers and count read-outs)
    v[t] = v[t] - s[t] * threshold   (reset "subtract")   or   v[t] * (1 - s[t])   (reset "zero")

with ``v[-1] = v_init``, ``u[-1] = 0`` and ``v_max = 2**(membrane_bits-1) - 1``. IF: ``decay_v =
0, decay_u = 4096``, so ``v[t] = clip(v[t-1] + I[t] + bias)``. A membrane read-out does not
spike: ``v`` integrates with ``v[-1] = 0``.

Float step (the float SNN, threshold 1, weights normalised by the layer's ``scale``):

    u[t] = (1 - decay_u / 4096) * u[t-1] + I[t]
    v[t] = beta * v[t-1] + u[t]          (beta = 1 for IF; exactly the trained beta for LIF)
    s[t] = v[t] >= 1, reset as above with threshold 1

The integer LIF quantizes ``decay_v = round((1 - beta) * 4096)`` (beta to 1/4096, truncated
products): that, and rounding weights, is its whole error against the float SNN.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from . import kernels
from .registers import signed_max

DECAY_BITS = 12
DECAY_ONE = 1 << DECAY_BITS    # 4096: decay 0 keeps everything, 4096 forgets everything
RESETS = ("subtract", "zero")
# Loihi's act_shift: a leaky layer's threshold carries 6 more bits (its weights 6 more exponent
# bits) so that its decay products round at 1/64 of the units its weights are counted in.
LEAK_FRACTION_BITS = 6


@dataclass
class Neuron:
    """A layer of neurons (one compartment each); see the module docstring for the equations.

    ANN reading: ``relu(x)`` for a hidden layer converted from a ReLU, ``min(relu(x), clip)`` for
    one converted from a clipped ReLU (ReLU6, ``Hardtanh(0, a)``, ``clamp(0, a)``), ``x`` for the
    read-out layer; a trained spiking layer (``spike_value`` set) has none; a layer converted from a QCFS
    activation (``levels`` set) reads as its staircase
    ``qcfs_theta / levels * clip(floor(x * levels / qcfs_theta + 1/2), 0, levels)``.

    - ``scale``: the activation that makes it fire every step (lambda: calibration, or the trained
      threshold); weights into the layer are divided by it.
    - ``spike_value``: what one spike is worth to the layers it feeds, in the source network's
      units; None means ``scale`` (a converted ReLU), a directly trained spiking layer sets 1.
    - ``beta`` (float, per channel or scalar, shape ``(1,)`` or ``(C,)``): membrane retention of a
      leaky layer; None: no leak.
    - ``threshold``, ``bias``, ``v_init``, ``step``, ``decay_v``, ``decay_u``, ``membrane_bits``:
      the integer registers, set by the quantize pass (``step``: the float value of one integer
      unit, in thresholds).
    - ``levels``, ``qcfs_theta``: a layer converted from a QCFS activation (snn_compiler.nn.QCFS,
      Bu et al. 2022): its number of steps L and its trained theta in the units of the layer's
      input (the trained value; the normalize pass divides it by ``scale`` with the weights). Both
      None for any other layer. Such a layer's ``scale`` is the trained theta and it always starts
      at half its threshold (:func:`starts_half`), which the staircase's + 1/2 assumes.
    - ``clip``: the ceiling of a clipped ReLU in the units of the layer's input (the trained value;
      the normalize pass divides it by ``scale`` with the weights, and picks a scale no larger than
      it: a clip is exactly a neuron's maximum rate). None: an unclipped ReLU.
    """
    scale: Optional[float] = None
    threshold: Optional[int] = None
    bias: Optional[np.ndarray] = None
    v_init: Optional[int] = None
    step: Optional[float] = None
    readout: bool = False
    reset: str = "subtract"
    beta: Optional[np.ndarray] = None
    spike_value: Optional[float] = None
    decay_v: Optional[np.ndarray] = None
    decay_u: int = DECAY_ONE
    membrane_bits: int = 24
    levels: Optional[int] = None
    qcfs_theta: Optional[float] = None
    clip: Optional[float] = None

    @property
    def leaky(self) -> bool:
        """A membrane leak (``beta``): what makes a layer LIF."""
        return self.beta is not None

    @property
    def decays(self) -> bool:
        """Any decay: a membrane leak or current memory (``decay_u < 4096``). A target whose neuron
        has no decay (TrueNorth) must refuse such a layer, leaky or not."""
        return self.leaky or (self.decay_v is not None and bool(np.any(self.decay_v))) or self.decay_u != DECAY_ONE

    @property
    def label(self) -> str:
        """IF, LIF, Output or Output LIF: what a table or an error calls this layer."""
        base = "LIF" if self.leaky else "IF"
        return ("Output" + (" LIF" if self.leaky else "")) if self.readout else base

    @property
    def v_max(self) -> int:
        return signed_max(self.membrane_bits)

    def infer_shape(self, in_shapes):
        (shape,) = in_shapes
        if self.beta is not None and np.size(self.beta) not in (1, shape[0]):
            raise ValueError(f"{self.label} has {np.size(self.beta)} beta values for {shape[0]} channels")
        if (self.levels is None) != (self.qcfs_theta is None):
            raise ValueError(f"a QCFS layer needs both levels and qcfs_theta, got {self.levels!r} and "
                             f"{self.qcfs_theta!r}")
        if self.levels is not None and (self.readout or self.spike_value is not None or self.leaky):
            raise ValueError(f"levels (QCFS) apply to a converted IF layer only, not to {self.label} "
                             f"{'(trained)' if self.spike_value is not None else ''}".rstrip())
        if self.clip is not None:
            if isinstance(self.clip, np.ndarray):  # per channel (channel-wise normalization)
                if not (self.clip.ndim == 1 and len(self.clip) == shape[0] and np.all(np.isfinite(self.clip))
                        and np.all(self.clip > 0)):
                    raise ValueError(f"a clipped ReLU's per-channel clip must be {shape[0]} finite numbers > 0")
            elif not (isinstance(self.clip, (int, float, np.floating)) and np.isfinite(self.clip) and self.clip > 0):
                raise ValueError(f"a clipped ReLU's clip must be a finite number > 0, got {self.clip!r}")
            if self.readout or self.spike_value is not None or self.leaky or self.levels is not None:
                raise ValueError(f"clip (a clipped ReLU) applies to a converted IF layer only, not to {self.label}"
                                 f"{' (QCFS)' if self.levels is not None else ''}"
                                 f"{' (trained)' if self.spike_value is not None else ''}")
        return tuple(shape)

    def ann(self, xs, k=kernels):
        """The ANN reading on a batch; ``k`` is an array namespace (see ir/kernels.py), numpy's by default."""
        if self.spike_value is not None:
            raise ValueError(f"a trained spiking layer ({self.label}) has no ANN reading; compare its float SNN")
        if self.readout:
            return xs[0]
        if self.levels is not None:  # in float64 wherever x is narrower: a step edge lands where numpy's does
            return k.in_float64(lambda x: qcfs_staircase(x, self.qcfs_theta, self.levels), xs[0])
        if self.clip is not None:  # .clip means the same on numpy arrays and torch tensors
            x = xs[0]
            c = self.clip if not isinstance(self.clip, np.ndarray) else \
                k.const(self.clip).reshape((-1,) + (1,) * (x.ndim - 2))
            return k.relu(x).clip(None, c)
        return k.relu(xs[0])


def qcfs_staircase(x, theta: float, levels: int):
    """The ANN reading of a QCFS layer, ``theta/L * clip(floor(x L/theta + 1/2), 0, L)``, on numpy
    arrays and torch tensors alike (``// 1`` and ``.clip`` mean the same on both), so every engine
    reads the staircase from this one definition."""
    return ((x * (levels / theta) + 0.5) // 1).clip(0, levels) * (theta / levels)


def IF(**fields) -> Neuron:
    """An integrate-and-fire layer (a ReLU of the ANN)."""
    return Neuron(**fields)


def QCFS(levels: int, theta: float, **fields) -> Neuron:
    """An IF layer converted from a QCFS activation: activation scale = the trained theta."""
    return Neuron(levels=int(levels), qcfs_theta=float(theta), scale=float(theta), **fields)


def LIF(beta, threshold: float = 1.0, **fields) -> Neuron:
    """A trained leaky integrate-and-fire layer: ``v = beta * v + I``, spikes worth 1, scale = threshold."""
    return Neuron(beta=np.atleast_1d(np.asarray(beta, np.float64)), scale=float(threshold), spike_value=1.0, **fields)


def Output(**fields) -> Neuron:
    """The read-out layer (ANN reading: identity)."""
    return Neuron(readout=True, **fields)


def decays_of(op, shape) -> np.ndarray:
    """The layer's integer ``decay_v`` broadcast per channel to ``shape`` (int64; zeros for IF)."""
    d = np.zeros(1, np.int64) if op.decay_v is None else np.asarray(op.decay_v, np.int64)
    d = d.reshape((-1,) + (1,) * (len(shape) - 1)) if d.size > 1 else d.reshape(())
    return np.broadcast_to(d, shape)


def round_decay(decay) -> np.ndarray:
    """THE 12-bit decay rounding (Loihi's): a float decay per step (``1 - retention``: ``1 - beta`` for
    the membrane, ``1 - alpha`` for the current) -> ``round(decay * 4096)`` in 0..4096 (int64).
    ``decay_v`` and ``decay_u`` both come from here; :func:`decay_rounding` says what it cost."""
    return np.clip(np.rint(np.asarray(decay, np.float64) * DECAY_ONE), 0, DECAY_ONE).astype(np.int64)


def decay_rounding(decay) -> tuple:
    """``(float decay, rounded decay / 4096, relative error)`` of the entry :func:`round_decay` moves
    most, relatively (what a warning or ``snnc inspect`` reports); the error is 0 where both are 0."""
    d = np.atleast_1d(np.asarray(decay, np.float64)).reshape(-1)
    r = round_decay(d) / DECAY_ONE
    err = np.where(d > 0, np.abs(r - d) / np.where(d > 0, d, 1.0), np.where(r > 0, np.inf, 0.0))
    i = int(np.argmax(err))
    return float(d[i]), float(r[i]), float(err[i])


def quantize_decay(beta) -> np.ndarray:
    """``decay_v = round((1 - beta) * 4096)`` in 0..4096 (:func:`round_decay`)."""
    return round_decay(1.0 - np.asarray(beta, np.float64))


def tz_decay(x, decay):
    """``sign(p) * (|p| >> 12)`` with ``p = x * (4096 - decay)``: Loihi's decay, rounded toward zero.
    A negative p gets 4095 added before the flooring shift, which rounds it toward zero with no
    sign multiply (numba vectorizes this form 1.4x faster than ``abs``/sign)."""
    p = x * (DECAY_ONE - decay)
    return (p + (p < 0) * (DECAY_ONE - 1)) >> DECAY_BITS


def saturate(x, limit):
    """``clip(x, -limit, limit)`` with arithmetic only (numpy, torch and numba spell clip differently)."""
    return x - (x > limit) * (x - limit) + (x < -limit) * (-limit - x)


def int_update(v, u, current, bias, decay_v, decay_u, v_max, threshold, subtract, spiking, decays):
    """THE integer step (module docstring), on values: numpy arrays, torch tensors and numba scalars
    alike, since it uses only the operators they share. Every engine runs this function (numba
    compiles it; sim/fast.py), none restates it. Returns ``(v, u, s, pre)``: the next membrane and
    current, the spikes (bool; all False unless ``spiking``) and the membrane before reset (a
    latency read-out's tie-break). ``decays`` False (``decay_v = 0``, ``decay_u = 4096``) takes
    the products out, which leaves every value the same."""
    if decays:
        u = tz_decay(u, decay_u) + current
        pre = tz_decay(v, decay_v) + u
    else:
        u = current
        pre = v + current
    pre = saturate(pre + bias, v_max)
    s = (pre >= threshold) & spiking
    return pre - s * (threshold if subtract else pre), u, s, pre


def current_range(lo, hi, decay_u: int, steps: int):
    """Bounds of the current register ``u`` over ``steps`` steps whose inputs ``I`` lie in
    ``[lo, hi]`` (``lo <= 0 <= hi``; integers or int arrays). Since the decay rounds toward zero,
    ``|tz(u * (4096 - d))| <= |u| * r`` with ``r = 1 - d/4096``, so by induction
    ``u[t] <= hi * (1 + r + ... + r**t) <= hi * min(t + 1, 4096 / d)``, and likewise below. Without
    current memory (``d = 4096``) ``u = I``; with ``d = 0`` u integrates every step."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    if decay_u == DECAY_ONE:
        return lo, hi
    if decay_u == 0 or steps * decay_u <= DECAY_ONE:
        return lo * steps, hi * steps
    return -((-lo * DECAY_ONE) // decay_u), (hi * DECAY_ONE) // decay_u


class IntParams(NamedTuple):
    """A layer's integer registers, as every engine reads them."""
    threshold: int
    bias: np.ndarray        # int64, broadcastable to the state
    decay_v: np.ndarray     # int64, broadcastable to the state (0 for IF)
    decay_u: int
    v_max: int
    subtract: bool
    decays: bool            # some decay_v > 0 or current memory (decay_u < 4096): see int_update

    @classmethod
    def make(cls, threshold, bias, decay_v, decay_u, v_max, reset) -> "IntParams":
        """From register values (``decay_v`` None or an int array; ``reset`` one of RESETS)."""
        dv = np.zeros((), np.int64) if decay_v is None else np.asarray(decay_v, np.int64)
        return cls(int(threshold), None if bias is None else np.asarray(bias, np.int64), dv, int(decay_u),
                   int(v_max), reset == "subtract", bool(dv.any()) or int(decay_u) != DECAY_ONE)

    @classmethod
    def of(cls, op, shape) -> "IntParams":
        return cls.make(op.threshold, op.bias, decays_of(op, shape), op.decay_u, op.v_max, op.reset)


def int_step(v: np.ndarray, u: Optional[np.ndarray], current: np.ndarray, p: IntParams, spiking: bool = True,
             pre: Optional[np.ndarray] = None):
    """:func:`int_update` on numpy state, in place: ``v`` (and ``u`` when the layer has current
    memory, else None) and, when given, ``pre`` (the membrane before reset). Returns the spikes
    (bool), or None for a non-spiking read-out. All arrays int64."""
    if u is None and p.decay_u != DECAY_ONE:
        raise ValueError("a layer with current memory (decay_u < 4096) needs its current state u")
    v_next, u_next, s, v_pre = int_update(v, 0 if u is None else u, current, p.bias, p.decay_v, p.decay_u, p.v_max,
                                          p.threshold, p.subtract, spiking, p.decays)
    v[...] = v_next
    if u is not None:
        u[...] = u_next
    if pre is not None:
        pre[...] = v_pre
    return s if spiking else None


def float_step(v: np.ndarray, u: Optional[np.ndarray], current: np.ndarray, beta, decay_u: int, subtract: bool,
               spiking: bool = True, pre: Optional[np.ndarray] = None):
    """One float step (threshold 1); ``beta`` broadcastable to ``v`` or None (IF); ``pre`` as in
    :func:`int_step`."""
    if decay_u != DECAY_ONE:
        u[...] = (1.0 - decay_u / DECAY_ONE) * u + current
        current = u
    v[...] = (v if beta is None else beta * v) + current
    if pre is not None:
        pre[...] = v
    if not spiking:
        return None
    s = v >= 1.0
    if subtract:
        v -= s
    else:
        v[s] = 0.0
    return s


def beta_of(op, shape):
    """The float ``beta`` broadcast per channel to ``shape``, or None (no leak)."""
    if op.beta is None:
        return None
    b = np.asarray(op.beta, np.float64)
    return np.broadcast_to(b.reshape((-1,) + (1,) * (len(shape) - 1)) if b.size > 1 else b.reshape(()), shape)


def initial_v(op, mode: str, half: bool, spiking: bool):
    """``v[-1]``: the integer ``v_init``; in float 0.5 for a converted hidden layer under
    ``--v-init half`` and for a QCFS layer whatever the flag (a trained layer starts at 0, as
    trained); 0 for a membrane read-out."""
    if not spiking:
        return 0
    if mode == "int":
        return op.v_init
    return 0.5 if starts_half(op, half) else 0.0


def starts_half(op, half: bool = True) -> bool:
    """Whether the layer starts at half its threshold: a converted hidden layer under ``--v-init half``
    (``half``), a QCFS layer always (its trained staircase is shifted by half a step, which is
    that initial membrane: with 0 it would fire a step late everywhere, so ``--v-init zero`` does
    not apply to it); a trained layer never (it starts at 0, as trained)."""
    if op.spike_value is not None or op.readout:
        return False
    return half or op.levels is not None
