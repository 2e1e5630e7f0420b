"""The compile pipeline: a list of plain functions ``pass(graph, config) -> changed``.

The IR is verified after every pass; any failure is reported as a PassError naming the pass.
"""
from __future__ import annotations

from ..ir import IRError, verify
from .split_concat import split_concat
from .fold_batchnorm import fold_batchnorm
from .fold_adaptive_pools import fold_adaptive_pools
from .lower_maxpool import lower_maxpool
from .readout_connection import readout_connection
from .lower_avgpool import lower_avgpool
from .affine_as_conv import affine_as_conv
from .materialize_skips import materialize_skips
from .compose_linear import compose_linear
from .check_snn_form import check_snn_form
from .normalize import normalize
from .quantize import quantize


class PassError(RuntimeError):
    def __init__(self, pass_name: str, message: str):
        super().__init__(f"pass {pass_name}: {message}")
        self.pass_name = pass_name


# STRUCTURAL passes bring the graph into SNN form without looking at calibration data; every check
# that does not need quantized values (the target's structural check, the core-count lower bound)
# runs after them, so a refusal comes before normalize (calibration) and the partitioner.
STRUCTURAL = [split_concat, fold_batchnorm, fold_adaptive_pools, lower_maxpool, readout_connection, lower_avgpool,
              affine_as_conv, materialize_skips, compose_linear, check_snn_form]
NUMERIC = [normalize, quantize]
PIPELINE = STRUCTURAL + NUMERIC


def run_pass(fn, graph, config) -> bool:
    try:
        changed = bool(fn(graph, config))
        verify(graph)
    except (IRError, ValueError, ArithmeticError) as e:
        raise PassError(fn.__name__, str(e)) from e
    return changed


def run_pipeline(graph, config, passes=None, log=None) -> None:
    verify(graph)
    for fn in PIPELINE if passes is None else passes:  # [] runs no pass, as asked
        changed = run_pass(fn, graph, config)
        if log:
            log(f"{fn.__name__}: {'changed' if changed else 'no change'}")


__all__ = ["PIPELINE", "STRUCTURAL", "NUMERIC", "PassError", "run_pass", "run_pipeline", "split_concat",
           "fold_batchnorm", "fold_adaptive_pools", "lower_maxpool", "readout_connection",
           "lower_avgpool", "affine_as_conv",
           "materialize_skips", "compose_linear", "check_snn_form", "normalize", "quantize"]
