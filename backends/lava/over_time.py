"""Over-time read-outs on Lava (``membrane-sum``, ``membrane-max``): Lava runs the membrane read-out
and records the read-out's membrane every step; the host folds that record with the reference's
own rule (``sim.readout.fold_membrane``), so scores and predictions equal the reference's."""
from __future__ import annotations

import numpy as np


def folded(graph, x, readout, k, record_steps, kw):
    """An over-time read-out (``run``'s docstring): the membrane run, its per-step record folded."""
    from . import run
    from snn_compiler.ir import output_node
    from snn_compiler.sim.readout import check_readout, fold_membrane, fold_start
    check_readout(readout, k, over_time=True)
    out = output_node(graph)
    wanted = None if record_steps is None else list(record_steps)
    res = run(graph, x, readout="membrane", record_steps=list(dict.fromkeys((wanted or []) + [out])), **kw)
    steps = res.steps[out]  # (N, T, outputs) int64: v after each step
    fold = np.full(steps.shape[:1] + steps.shape[2:], fold_start(readout, True), np.int64)
    for t in range(steps.shape[1]):
        fold_membrane(readout, fold, steps[:, t])
    res.scores = fold.astype(np.float64).reshape(res.scores.shape)
    res.predictions = np.argmax(fold, axis=1).astype(np.int64)
    res.steps = None if wanted is None else {n: res.steps[n] for n in wanted}
    return res
