"""Register widths of the integer SNN, as named constants (nengo-loihi style).

The integer neuron of :class:`snn_compiler.ir.neuron.Neuron` saturates its membrane at
``±(2**(membrane_bits-1) - 1)``; the quantize pass keeps thresholds within ``threshold_bits``
and reports worst-case currents against ``current_bits``. A target may narrow these (Loihi's
profile in configs/); values that do not fit are reported, never wrapped.

Every width is bounded (:data:`WIDTHS`) so that each engine stays exact: the simulators add
membrane, current and bias in int64, and multiply through BLAS in float64, exact below 2**53
(``ir/kernels.py``). With a membrane and biases below 2**47 and every connection's worst-case
sum below 2**53 (checked by the quantize pass and the artifact loader), no sum can reach 2**63.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

# field: (smallest, largest) width allowed, and why
WIDTHS = {
    "membrane_bits": (2, 32),        # |v| < 2**31: v + current + bias stays far inside int64
    "current_bits": (2, 32),         # the biases the quantizer writes (no bias format) are below 2**31
    "threshold_bits": (1, 31),       # an unsigned threshold below 2**31
    "bias_mantissa_bits": (2, 32),   # signed mantissa below 2**31 ...
    "bias_exponent_bits": (0, 4),    # ... shifted by at most 15: biases below 2**46
    "weight_exp_max": (0, 31),       # 16-bit weights << 31 < 2**46: exact in int64 and float64
}

MAX_EXACT_SUM = 1 << 53    # every connection's worst-case |sum|: float64 BLAS is exact below this
MAX_LAYER_SUM = 1 << 62    # every layer's worst-case |v| + |current| + |bias|: int64 never wraps


def signed_max(bits: int) -> int:
    """The largest value of a ``bits``-wide signed register (it also holds its negative)."""
    return (1 << (bits - 1)) - 1


def unsigned_max(bits: int) -> int:
    """The largest value of a ``bits``-wide unsigned register."""
    return (1 << bits) - 1


INT32_MAX = signed_max(32)   # the engines keep a value in int32 only below this


class RegisterError(ValueError):
    """A register width is out of range; the message names the field."""


@dataclass(frozen=True)
class Registers:
    membrane_bits: int = 24        # signed membrane potential v (Loihi: 24)
    current_bits: int = 24         # signed per-step synaptic current (Loihi: 24)
    threshold_bits: int = 17       # unsigned threshold (Loihi: 17-bit mantissa)
    bias_mantissa_bits: Optional[int] = None   # signed; None: any bias the current register holds (Loihi: 13)
    bias_exponent_bits: int = 0                # bias = mantissa << exponent (Loihi: 3)
    weight_exp_max: int = 31                   # largest per-connection weight exponent (Loihi: 7)

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None and f.name == "bias_mantissa_bits":
                continue
            lo, hi = WIDTHS[f.name]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise RegisterError(f"{f.name} must be an integer in {lo}..{hi}, got {v!r}")

    @property
    def v_max(self) -> int:
        return signed_max(self.membrane_bits)

    @property
    def current_max(self) -> int:
        return signed_max(self.current_bits)

    @property
    def threshold_max(self) -> int:
        return unsigned_max(self.threshold_bits)

    @property
    def bias_max(self) -> int:
        """The largest |bias|: ``mantissa << exponent`` at their maxima, or the current register's."""
        if self.bias_mantissa_bits is None:
            return self.current_max
        return signed_max(self.bias_mantissa_bits) << unsigned_max(self.bias_exponent_bits)

    def bias_fits(self, bias) -> np.ndarray:
        """Which integers the bias register holds: ``m << e`` with |m| <= mantissa max and e below
        ``2**bias_exponent_bits`` (any integer up to the current register without a bias format)."""
        b = np.abs(np.asarray(bias, np.int64))
        if self.bias_mantissa_bits is None:
            return b <= self.current_max
        mmax = signed_max(self.bias_mantissa_bits)
        ok = b <= mmax
        for e in range(1, 1 << self.bias_exponent_bits):
            ok |= (b % (1 << e) == 0) & ((b >> e) <= mmax)
        return ok

    def split_bias(self, bias):
        """(mantissa, exponent) arrays with ``bias == mantissa << exponent``, smallest exponents;
        ValueError when some bias does not fit (see :meth:`bias_fits`)."""
        b = np.asarray(bias, np.int64)
        if self.bias_mantissa_bits is None or not self.bias_fits(b).all():
            raise ValueError(f"bias not representable as a {self.bias_register()}")
        mmax = signed_max(self.bias_mantissa_bits)
        exp = np.zeros(b.shape, np.int64)
        for e in range(1, 1 << self.bias_exponent_bits):
            todo = np.abs(b >> exp) > mmax
            if not todo.any():
                break
            exp[todo & (b % (1 << e) == 0)] = e
        return b >> exp, exp

    def round_bias(self, bias, layer: str) -> np.ndarray:
        """Integer biases rounded to what the register holds; refuses (ValueError naming ``layer``)
        what it cannot hold. ``bias`` may be float: it is checked before any integer conversion,
        so nothing wraps."""
        bias = np.asarray(bias)
        big = float(np.abs(bias).max(initial=0))
        if not np.isfinite(big) or big > self.bias_max:
            raise ValueError(f"layer {layer!r}: bias {big:.6g} exceeds the {self.bias_register()} "
                             f"(max {self.bias_max}); the layer's activation scale is too small for its bias "
                             "(check --norm / --layer-scale)")
        bias = np.rint(bias).astype(np.int64)
        if self.bias_mantissa_bits is None:
            return bias
        mmax = signed_max(self.bias_mantissa_bits)
        exp = np.zeros(bias.shape, np.int64)
        big = np.abs(bias) > mmax
        exp[big] = np.ceil(np.log2(np.abs(bias[big]) / mmax)).astype(np.int64)
        mant = np.clip(np.rint(bias / (1 << exp)), -mmax, mmax).astype(np.int64)
        return mant << exp

    def bias_register(self) -> str:
        if self.bias_mantissa_bits is None:
            return f"{self.current_bits}-bit current register"
        return f"{self.bias_mantissa_bits}-bit bias mantissa with {self.bias_exponent_bits}-bit exponent"


REFERENCE = Registers()
NAMES = tuple(f.name for f in fields(Registers))


def registers_of(profile: dict) -> Registers:
    """The ``registers:`` section of a hardware profile (configs/*.yaml); absent widths keep defaults."""
    regs = profile.get("registers") or {}
    return Registers(**{f.name: regs[f.name] for f in fields(Registers) if f.name in regs})
