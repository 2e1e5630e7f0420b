"""Data outside the range the network was calibrated on: the input layer clips it, silently.

The compile records the calibration input range in the Input op: ``scale`` (max |x| of the
calibration data, or 1.0 data-free, inputs assumed in [0, 1]) and ``signed`` (whether it held
negative values). The encoder (:func:`snn_compiler.sim.encode.quantize_input`) rounds ``x / scale``
to ``levels`` steps and clips at ``[-levels or 0, levels]``, so a value is clipped exactly when
``x / scale * levels`` rounds beyond that range; :func:`clipped_input_warning` counts those values
(a newcomer's data at 16x the calibration range lost 24 accuracy points without a word).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

CHUNK = 1 << 22  # values per pass: the check must not double a large data set's memory


def clipped_input_warning(inp, x) -> Optional[str]:
    """One line when some values of ``x`` lie beyond what the Input ``inp`` (normalised: ``scale``,
    ``levels`` and ``signed`` set) encodes without clipping; None when none does."""
    if inp.scale is None or getattr(inp, "levels", None) is None:
        return None
    flat = np.asarray(x).reshape(-1)
    if flat.size == 0:
        return None
    # levels is odd (2**b - 1), so rint takes an exact half step beyond it (to the even level) past the range,
    # while -1/2 rounds to 0, inside an unsigned range
    step = inp.scale / inp.levels
    hi = inp.scale + step / 2
    clipped, top, bottom = 0, -np.inf, np.inf
    for i in range(0, flat.size, CHUNK):
        part = np.asarray(flat[i:i + CHUNK], np.float64)
        low = (part <= -hi) if inp.signed else (part < -step / 2)
        clipped += int(np.count_nonzero((part >= hi) | low))
        top, bottom = max(top, float(part.max())), min(bottom, float(part.min()))
    if not clipped:
        return None
    calibrated = f"[{-inp.scale:.4g}, {inp.scale:.4g}]" if inp.signed else f"[0, {inp.scale:.4g}]"
    return (f"{100 * clipped / flat.size:.3g}% of the input values lie outside the range the network was calibrated on "
            f"{calibrated} (the data span [{bottom:.4g}, {top:.4g}]); the input layer clips them, which can cost "
            f"accuracy: scale the data as the calibration data were, or compile with calibration data like them")
