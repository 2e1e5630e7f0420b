"""compile_model: an IR graph in, a quantized integer SNN graph out (the input is not modified)."""
from __future__ import annotations

import copy

from .config import CompileConfig
from .passes import PIPELINE, run_pipeline


def compile_model(graph, config: CompileConfig, log=None, target=None):
    """Run the pass pipeline (and the target's own passes and checks) on a copy of ``graph``.

    ``target`` is a :class:`snn_compiler.backends.Target` (default: the one named by
    ``config.target``); it may adjust ``config`` first (register widths, profile).
    """
    from .backends import get_target  # backends import the core; resolved late to avoid a cycle

    target = target or get_target(config.target)
    target.prepare(config)
    g = copy.deepcopy(graph)
    run_pipeline(g, config, PIPELINE + list(target.passes), log=log)
    target.check(g, config)
    g.graph["snnc"]["target"] = target.name
    return g
