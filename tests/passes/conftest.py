"""Small hand-built IR graphs and the ANN reading (the emulator's) shared by the pass tests."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from snn_compiler.ir import add_op, new_graph, op_of, verify
from snn_compiler.ir import ops as O


def chain_graph(shape, *ops, names=None):
    """Input(shape) -> ops... -> Output, verified. Nodes are "input", ``names`` (default
    "<kind><index>", e.g. "dense0") and "output"."""
    g = new_graph()
    prev = add_op(g, "input", O.Input(tuple(shape)))
    for i, op in enumerate(ops):
        name = names[i] if names else f"{O.kind(op).lower()}{i}"
        prev = add_op(g, name, op, [prev])
    add_op(g, "output", O.Output(), [prev])
    verify(g)
    return g


def ann_eval(g, x, all_nodes=False):
    """The ANN reading on a batch x (B, *input shape): IF = ReLU, Output = identity, float64."""
    from snn_compiler.sim.emulator import iter_ann
    (vals,) = iter_ann(g, np.asarray(x, np.float64), keep=list(g), batch_size=max(len(x), 1))
    return vals if all_nodes else vals[next(n for n in g if O.is_readout(op_of(g, n)))]


def kinds(g):
    """{node: kind name}"""
    return {n: O.kind(op_of(g, n)) for n in g}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def chain():
    return chain_graph


@pytest.fixture
def evaluate():
    return ann_eval


@pytest.fixture
def layers(rng):
    """Random-weight op factories: layers.dense(out, in), .conv(out, in, k, **kw), .bn(c)."""

    class Layers:
        @staticmethod
        def dense(out, inp, bias=True):
            return O.Dense(rng.normal(size=(out, inp)), rng.normal(size=out) if bias else None)

        @staticmethod
        def conv(out, inp, k=3, bias=True, groups=1, **kw):
            return O.Conv2d(rng.normal(size=(out, inp // groups, k, k)), rng.normal(size=out) if bias else None,
                            groups=groups, **kw)

        @staticmethod
        def bn(c, eps=1e-5):
            return O.BatchNorm(mean=rng.normal(size=c), var=rng.uniform(0.5, 2.0, size=c),
                               weight=rng.normal(size=c), bias=rng.normal(size=c), eps=eps)

    return Layers


@pytest.fixture
def check_same(rng):
    """run(pass_fn, g) -> changed: applies the pass to g, verifies, and asserts the ANN output is unchanged
    on random inputs (non-negative with ``nonneg=True``)."""

    def run(pass_fn, g, nonneg=False, config=None):
        before = copy.deepcopy(g)
        shape = g.nodes["input"]["shape"] if "input" in g else None
        x = rng.normal(size=(4,) + tuple(shape))
        if nonneg:
            x = np.abs(x)
        changed = pass_fn(g, config)
        verify(g)
        np.testing.assert_allclose(ann_eval(g, x), ann_eval(before, x), rtol=1e-9, atol=1e-9)
        return changed

    return run
