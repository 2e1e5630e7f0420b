"""What a compile is for (targets) and what runs a compiled graph (backends): two plain mappings.

They live in the core and name their implementations as ``"module:attribute"``, imported on first
use, so the core imports no backend (and a backend needing extra packages costs nothing until
used). A third-party simulator registers under the entry point group ``snnc.backends``
(``name = "package.module:run"``).

Each target states what it supports: ``supports(op) -> None | reason``, checked on every node
before any pass runs, so an op a target cannot run is refused by name before anything is built
or mapped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Callable, Optional, Sequence

from .ir import op_of, topo_order
from .ir import ops as O


class TargetError(ValueError):
    """The network does not fit the target; the message names the layer and the register."""


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    prepare: Callable = lambda config: config       # config -> the config to compile with (registers, profile)
    passes: Sequence[Callable] = ()                   # target passes run after the core pipeline
    check: Callable = lambda graph, config: None      # raise TargetError when something does not fit
    supports: Callable = lambda op: None              # op -> None, or why this target cannot run it
    default_bits: int = 8                             # weight bits when the user gives none
    extra_outputs: Optional[Callable] = None          # extra_outputs(graph, config, out_path) -> {path: bytes}
    extra: dict = field(default_factory=dict)

    def weight_bits(self, bits=None):
        """The weight bits to compile with: ``bits`` as given (validated by CompileConfig, never
        replaced, so 0 is refused), or this target's default when none is given (None)."""
        return self.default_bits if bits is None else bits


def check_supported(graph, target: Target) -> None:
    """Raise TargetError naming every node ``target`` cannot run, with its reason."""
    bad = {}  # reason -> layers, so one reason is said once
    for n in topo_order(graph):
        why = target.supports(op_of(graph, n))
        if why:
            bad.setdefault(why, []).append(f"{n!r} ({O.kind(op_of(graph, n))})")
    if bad:
        raise TargetError(f"target {target.name} cannot run " + "; ".join(
            f"layer{'s' if len(names) > 1 else ''} {', '.join(names)}: {why}" for why, names in bad.items()))


TARGETS = {
    "reference": "snn_compiler.backends:REFERENCE_TARGET",
    "lava": "snn_compiler.backends.lava.target:TARGET",
    "truenorth": "snn_compiler.backends.truenorth:TARGET",
}

BACKENDS = {
    "reference": "snn_compiler.backends.reference:run_reference",
    "float": "snn_compiler.backends.reference:run_float",
    "ann": "snn_compiler.backends.reference:run_ann",
    "lava": "snn_compiler.backends.lava:run",
}


def _resolve(entry):
    if not isinstance(entry, str):
        return entry  # registered as the object itself (tests, plugins at run time)
    module, attr = entry.split(":")
    return getattr(import_module(module), attr)


def _entry_point_backends():
    from importlib.metadata import entry_points
    try:
        eps = entry_points(group="snnc.backends")
    except TypeError:  # Python < 3.10 API
        eps = entry_points().get("snnc.backends", [])
    return {ep.name: ep for ep in eps}


def get_backend(name: str):
    if name in BACKENDS:
        return _resolve(BACKENDS[name])
    eps = _entry_point_backends()
    if name in eps:
        return eps[name].load()
    raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(set(BACKENDS) | set(eps)))}")


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; available: {', '.join(TARGETS)}")
    return _resolve(TARGETS[name])
