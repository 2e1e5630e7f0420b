"""The reference backends: the integer SNN (the hardware's definition), the float SNN and the ANN.

All three read the same compiled graph through the one emulator in snn_compiler.sim.
"""
from __future__ import annotations

import numpy as np

from snn_compiler.sim.emulator import SimResult, run_ann as _ann, simulate


def run_reference(graph, x, **kw) -> SimResult:
    return simulate(graph, x, mode="int", **kw)


def run_float(graph, x, **kw) -> SimResult:
    return simulate(graph, x, mode="float", **kw)


def run_ann(graph, x, *, batch_size=256, **_ignored) -> SimResult:
    scores = _ann(graph, x, batch_size=batch_size)
    return SimResult(scores=scores, predictions=np.argmax(scores, axis=1).astype(np.int64), rates={})
