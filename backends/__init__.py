"""Backends (simulators that run a compiled graph) and targets (what a compile is for).

The registries, :class:`Target` and :class:`TargetError` live in the core
(:mod:`snn_compiler.targets`) and are re-exported here. Installed as ``snn_compiler.backends``.
"""
from __future__ import annotations

from snn_compiler.passes.partition import partition
from snn_compiler.targets import (BACKENDS, TARGETS, Target, TargetError, check_supported,  # noqa: F401
                                  get_backend, get_target)

from .reference import run_ann, run_float, run_reference  # noqa: F401

REFERENCE_TARGET = Target("reference", "the bit-exact integer reference simulator (24-bit registers); with --profile "
                          "also mapped onto that profile's cores", passes=(partition,))
