"""Backends (simulators that run a compiled graph) and targets (what a compile is for).

Both are plain mappings. A third-party simulator registers under the entry point group
``snnc.backends`` (``name = "package.module:run"``). Installed as ``snn_compiler.backends``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import import_module
from typing import Callable, Optional, Sequence

from snn_compiler.passes.partition import partition

from .reference import run_ann, run_float, run_reference


class TargetError(ValueError):
    """The network does not fit the target; the message names the layer and the register."""


@dataclass
class Target:
    name: str
    description: str
    prepare: Callable = lambda config: None           # adjust CompileConfig (registers, profile)
    passes: Sequence[Callable] = ()                   # target passes run after the core pipeline
    check: Callable = lambda graph, config: None      # raise TargetError when something does not fit
    extra_outputs: Optional[Callable] = None          # extra_outputs(graph, config, out_path) -> {path: bytes}
    extra: dict = field(default_factory=dict)


def _lazy(module: str, attr: str):
    """A backend living in a module that needs extra packages, imported on first use."""
    def call(*args, **kwargs):
        return getattr(import_module(module, __name__), attr)(*args, **kwargs)
    call.__name__ = attr
    return call


BACKENDS = {
    "reference": run_reference,
    "float": run_float,
    "ann": run_ann,
}

TARGETS = {
    "reference": Target("reference", "the bit-exact integer reference simulator (24-bit registers); with --profile "
                        "also mapped onto that profile's cores", passes=(partition,)),
}


# Targets and backends that need Target defined first (or extra packages) register here.
from .lava.target import TARGET as _LAVA_TARGET  # noqa: E402  (numpy and yaml only; Lava runs in its own venv)
from .truenorth import TARGET as _TRUENORTH_TARGET  # noqa: E402

BACKENDS["lava"] = _lazy(".lava", "run")
TARGETS["lava"] = replace(_LAVA_TARGET, passes=tuple(_LAVA_TARGET.passes) + (partition,))  # cores of --profile (loihi2)
TARGETS["truenorth"] = _TRUENORTH_TARGET


def _entry_point_backends():
    from importlib.metadata import entry_points
    try:
        eps = entry_points(group="snnc.backends")
    except TypeError:  # Python < 3.10 API
        eps = entry_points().get("snnc.backends", [])
    return {ep.name: ep for ep in eps}


def get_backend(name: str):
    if name in BACKENDS:
        return BACKENDS[name]
    eps = _entry_point_backends()
    if name in eps:
        return eps[name].load()
    raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(set(BACKENDS) | set(eps)))}")


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; available: {', '.join(TARGETS)}")
    return TARGETS[name]
