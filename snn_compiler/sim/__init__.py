"""The simulators of snnc's integer (and float) SNN: the numpy engine (:mod:`.emulator`, the
definition of the hardware semantics), the event-driven numba engine (:mod:`.fast`, bit-identical),
their exact kernels (:mod:`.kernels`) and the input encodings every backend shares (:mod:`.encode`).

``MAX_TIMESTEPS``: the most timesteps a simulation accepts (see :mod:`.encode`).
"""
from .encode import MAX_TIMESTEPS, check_timesteps  # noqa: F401
