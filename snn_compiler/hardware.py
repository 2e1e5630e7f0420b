"""Register widths of the integer SNN, as named constants (nengo-loihi style).

The integer neuron of :class:`snn_compiler.ir.ops.IF` saturates its membrane at
``±(2**(membrane_bits-1) - 1)``; the quantize pass keeps thresholds within ``threshold_bits``
and reports worst-case currents against ``current_bits``. A target may narrow these (Loihi's
profile in configs/); values that do not fit are reported, never wrapped.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional


@dataclass(frozen=True)
class Registers:
    membrane_bits: int = 24        # signed membrane potential v (Loihi: 24)
    current_bits: int = 24         # signed per-step synaptic current (Loihi: 24)
    threshold_bits: int = 17       # unsigned threshold (Loihi: 17-bit mantissa)
    bias_mantissa_bits: Optional[int] = None   # signed; None: any integer bias (Loihi: 13)
    bias_exponent_bits: int = 0                # bias = mantissa << exponent (Loihi: 3)
    weight_exp_max: int = 31                   # largest per-connection weight exponent (Loihi: 7)

    @property
    def v_max(self) -> int:
        return (1 << (self.membrane_bits - 1)) - 1

    @property
    def current_max(self) -> int:
        return (1 << (self.current_bits - 1)) - 1

    @property
    def threshold_max(self) -> int:
        return (1 << self.threshold_bits) - 1


REFERENCE = Registers()


def registers_of(profile: dict) -> Registers:
    """The ``registers:`` section of a hardware profile (configs/*.yaml); absent widths keep defaults."""
    regs = profile.get("registers", {})
    return Registers(**{f.name: regs[f.name] for f in fields(Registers) if f.name in regs})
