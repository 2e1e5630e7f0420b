"""What a compile is asked to do: the one object every pass receives."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from .ir.registers import REFERENCE, Registers
from .ir.neuron import RESETS  # noqa: F401  (re-exported: config.RESETS)

POOLS = ("sum", "spike")
V_INITS = ("half", "zero")
NORM_SCALE_RANGE = (1e-6, 1e6)       # scale:F, F times the max activation
LAYER_SCALE_RANGE = (1e-30, 1e30)    # --layer-scale LAYER=S, an activation scale in the network's units
MAX_CHIPS = 4096                     # --chips N: a sanity bound (Hala Point has 1,152 Loihi 2 chips)
WEIGHT_BITS = (2, 16)                # --bits: signed weight bits
INPUT_BITS = (1, 16)                 # --input-bits: bits of the graded input


def whole_number(flag: str, value, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``, else a one-line ValueError naming ``flag`` (no bool, no float)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{flag} must be an integer in {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{flag} must be an integer in {lo}..{hi}, got {int(value)}")
    return int(value)


@dataclass
class CompileConfig:
    """Options of one compile. ``norm`` is ``max``, ``percentile:P``, ``scale:F`` (F times the
    max activation), ``model`` (data-free: activations estimated from inputs assumed uniform in
    [0, 1] and BatchNorm statistics, passes/datafree.py) or ``bound`` (data-free worst case from the
    weights, Diehl et al. 2015; far lower rates); None: the
    default, ``percentile:99.9`` with calibration data and ``model`` without. ``layer_scales``
    sets the activation scale of neuron layers, ``layer_factors`` multiplies the normalization's
    (ANNarchy's scale_factor); both keyed by layer name or index (neuron layers in order, from 0)."""
    bits: int = 8
    norm: Optional[str] = None
    layer_scales: Dict[str, float] = field(default_factory=dict)
    layer_factors: Dict[str, float] = field(default_factory=dict)
    calibration: Optional[np.ndarray] = None
    timesteps: int = 32
    reset: str = "subtract"
    v_init: str = "half"
    input_bits: int = 8
    pool: str = "sum"  # average pools: window sums inside the next connection, or spiking layers
    target: str = "reference"
    registers: Registers = REFERENCE
    profile: Optional[dict] = None  # hardware profile (configs/*.yaml) for targets that map cores
    chips: Optional[int] = None     # --chips N: overrides the profile's ``chips`` (partitioner and core bound)
    progress: bool = False          # progress bars for calibration and mapping (stderr)
    encoding: str = "constant"      # the input encoding it will run with (pso needs its gain in the weights)
    channel_wise: bool = False      # one activation scale per channel of each hidden layer (passes/normalize.py)

    def __post_init__(self):
        # every value given is checked, none replaced: 0 is a value (refused), not "use the default"
        self.bits = whole_number("--bits", self.bits, *WEIGHT_BITS)
        self.input_bits = whole_number("--input-bits", self.input_bits, *INPUT_BITS)
        from .sim.encode import check_timesteps  # the engines' own limit (MAX_TIMESTEPS), checked once
        try:
            self.timesteps = check_timesteps(self.timesteps)
        except ValueError as e:
            raise ValueError(f"--timesteps: {e}") from None
        if self.reset not in RESETS:
            raise ValueError(f"--reset must be one of {RESETS}, got {self.reset!r}")
        if self.pool not in POOLS:
            raise ValueError(f"--pool must be one of {POOLS}, got {self.pool!r}")
        if self.v_init not in V_INITS:
            raise ValueError(f"--v-init must be one of {V_INITS}, got {self.v_init!r}")
        if self.norm is not None:
            parse_norm(self.norm)
        if not isinstance(self.channel_wise, bool):
            raise ValueError(f"--channel-wise must be true or false, got {self.channel_wise!r}")
        from .sim.encode import ENCODINGS
        if self.encoding not in ENCODINGS:
            raise ValueError(f"--encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        for flag, table, (lo, hi), what in (("--layer-scale", self.layer_scales, LAYER_SCALE_RANGE, "an activation scale"),
                                            ("--layer-factor", self.layer_factors, NORM_SCALE_RANGE, "a scale factor")):
            for name, value in dict(table).items():
                try:
                    v = float(value)
                except (TypeError, ValueError):
                    v = math.nan
                if not (math.isfinite(v) and lo <= v <= hi):
                    raise ValueError(f"{flag} {name}={value}: {what} must be a finite number in {lo:g}..{hi:g}")
        if self.chips is not None:
            self.chips = whole_number("--chips", self.chips, 1, MAX_CHIPS)
        if self.profile is not None:  # refused here, before any pass runs (names the file and the key)
            from .mapping.profile import load_profile_dict
            self.profile = load_profile_dict(self.profile)
        self.apply_chips()

    def apply_chips(self) -> None:
        """Put ``chips`` into the profile (again after a target's ``prepare`` chose its profile)."""
        if self.chips is not None and self.profile is not None and self.profile.get("chips") != self.chips:
            from .mapping.profile import load_profile_dict
            self.profile = load_profile_dict(dict(self.profile, chips=self.chips))


def parse_norm(norm: str):
    """'max' -> ('max', None); 'percentile:99.9' -> ('percentile', 99.9); 'scale:0.5' -> ('scale', 0.5);
    'model' -> ('model', None); 'bound' -> ('bound', None)."""
    name, _, arg = norm.partition(":")
    if name in ("max", "model", "bound") and not arg:
        return name, None
    if name in ("percentile", "scale") and arg:
        try:
            value = float(arg)
        except ValueError:
            value = None
        if name == "percentile" and value is not None and 0 < value <= 100:
            return name, value
        if name == "scale" and value is not None and NORM_SCALE_RANGE[0] <= value <= NORM_SCALE_RANGE[1]:
            return name, value
    raise ValueError(f"--norm must be max, percentile:P (0 < P <= 100), scale:F ({NORM_SCALE_RANGE[0]:g} <= F <= "
                     f"{NORM_SCALE_RANGE[1]:g}), model or bound, got {norm!r}")
