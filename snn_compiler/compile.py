"""compile_model: an IR graph in, a quantized integer SNN graph out (the input is not modified)."""
from __future__ import annotations

import copy

from .config import CompileConfig
from .passes import NUMERIC, STRUCTURAL, run_pipeline


def early_checks(graph, config, target, log=None) -> None:
    """The checks that need no calibration, on the SNN-form graph before normalize runs: the
    target's structural check (``target.extra["early_check"]``, where a target has one) and, when the
    target maps cores, the lower bound on the cores against ``cores_per_chip x chips``."""
    from .passes.partition import check_core_bound, partition
    early = target.extra.get("early_check")
    if early is not None:
        early(graph, config)
        if log:
            log(f"{target.name} structural check: ok")
    if partition in tuple(target.passes):
        bound = check_core_bound(graph, config)
        if log and bound is not None:
            log(f"core lower bound: {bound}")


def working_copy(graph):
    """A copy of ``graph`` the passes may change without touching ``graph``: new node and graph
    dicts and a shallow copy of every op, whose arrays are shared. Passes give an op new arrays and
    never write into one (``op.weight = op.weight * s``, not ``op.weight *= s``), so sharing them is
    safe, and it spares a deep copy of every weight (VGG-11's 133 M parameters: 4 s)."""
    g = graph.copy()
    g.graph.update(copy.deepcopy(graph.graph))
    for n in g:
        g.nodes[n]["op"] = copy.copy(g.nodes[n]["op"])
    return g


def compile_model(graph, config: CompileConfig, log=None, target=None):
    """Run the pass pipeline (and the target's own passes and checks) on a copy of ``graph``.

    ``target`` is a :class:`snn_compiler.targets.Target` (default: the one named by
    ``config.target``); every op must be one it supports, and its ``prepare`` gives the config to
    compile with (register widths, profile; ``config`` is not changed). Everything that
    does not depend on calibration is checked right after the structural passes, so a network the
    target cannot take is refused in seconds, before calibration and mapping.
    """
    from .targets import check_supported, get_target

    target = get_target(config.target) if target is None else target
    check_supported(graph, target)
    config = target.prepare(copy.copy(config))
    config.apply_chips()  # --chips overrides the chips of the profile the target chose
    if config.chips is not None and config.profile is None:
        raise ValueError(f"--chips applies to a hardware profile: give --profile (target {target.name} maps no cores "
                         f"without one)")
    g = working_copy(graph)
    run_pipeline(g, config, STRUCTURAL, log=log)
    early_checks(g, config, target, log=log)
    run_pipeline(g, config, NUMERIC + list(target.passes), log=log)
    target.check(g, config)
    g.graph["snnc"]["target"] = target.name
    return g
