"""compile_model works on compile.working_copy(graph): the caller's graph (its ops, their arrays and
its state) is exactly as before, while the copy shares the arrays instead of deep-copying weights."""
import copy

import numpy as np

from snn_compiler.compile import compile_model, working_copy
from snn_compiler.config import CompileConfig
from snn_compiler.ir import ops as O

import lava_nets


def _snapshot(g):
    return {n: {k: (v.copy() if isinstance(v, np.ndarray) else copy.copy(v)) for k, v in vars(g.nodes[n]["op"]).items()}
            for n in g}, copy.deepcopy(g.graph)


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return a == b


def test_compiling_leaves_the_callers_graph_as_it_was():
    rng = np.random.default_rng(0)
    g, shape = lava_nets.NETS["rescnn"](rng)
    ops_before, state_before = _snapshot(g)
    q = compile_model(g, CompileConfig(bits=8, calibration=rng.uniform(0, 1, (16,) + shape)))
    ops_after, state_after = _snapshot(g)
    assert state_after == state_before
    for n, fields in ops_before.items():
        assert all(_same(fields[k], ops_after[n][k]) for k in fields), n
    assert all(q.nodes[n]["op"].weight_int is not None for n in q if isinstance(q.nodes[n]["op"], O.WEIGHTED))


def test_the_working_copy_shares_arrays_but_not_ops_or_state():
    rng = np.random.default_rng(1)
    g, _ = lava_nets.NETS["cnn"](rng)
    w = working_copy(g)
    for n in g:
        assert w.nodes[n]["op"] is not g.nodes[n]["op"]
        if isinstance(g.nodes[n]["op"], O.WEIGHTED):
            assert w.nodes[n]["op"].weight is g.nodes[n]["op"].weight
    w.graph.setdefault("snnc", {})["normalized"] = True
    assert not g.graph.get("snnc", {}).get("normalized")
