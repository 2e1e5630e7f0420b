"""The numba engine's batch schedule against numpy's: a caller's batch run as smaller ones, and an
Add of a static (constant-input) and a changing current."""
import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph
from snn_compiler.ir import ops as O
from snn_compiler.sim import fast
from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.plan import Plan

from engine_runs import numba_in_chunks
from test_engines import METHODS, conv_net

pytestmark = pytest.mark.skipif(not fast.available(), reason="numba is not installed")


def test_the_engine_splits_a_batch_whose_chunks_would_be_short(monkeypatch):
    """With little room per chunk (STEP_VALUES) the numba engine runs a caller's batch as smaller
    ones (fast.samples_per_batch); samples are independent, so every result equals numpy's."""
    rng = np.random.default_rng(11)
    g = conv_net(rng, (1, 1), (1, 1), (1, 1), 1)
    x = rng.random((13, 4, 9, 9))
    q = compile_model(g, CompileConfig(bits=8, calibration=x))
    monkeypatch.setattr(fast, "STEP_VALUES", 6 * 81 * 16 * 3)  # the widest layer: 6 x 9 x 9
    plan = fast.FastPlan(Plan(q, "int", "poisson"))
    assert fast.samples_per_batch(plan, 13, 20) == 3 and fast.samples_per_batch(plan, 2, 20) == 2
    for readout, record in (("count", True), ("first-spike", False)):
        kw = dict(timesteps=20, encoding="poisson", readout=readout, record=record, batch_size=13, seed=2)
        a, b = simulate(q, x, engine="numpy", **kw), simulate(q, x, engine="numba", **kw)
        assert np.array_equal(a.scores, b.scores) and np.array_equal(a.predictions, b.predictions)
        assert a.rates == b.rates
        for f in ("decision_time", "tied"):
            assert (getattr(a, f) is None) == (getattr(b, f) is None) and np.array_equal(getattr(a, f), getattr(b, f))


def test_engines_agree_on_an_add_of_a_static_and_a_changing_current():
    """Under constant encoding a Dense on the Input is the same every step (one static step) while
    one on spikes changes: their Add broadcasts the static term over the chunk's steps, whatever
    the order or number of its terms."""
    rng = np.random.default_rng(4)
    for order in (("skip", "fc2", "fc3"), ("fc2", "skip"), ("fc2", "fc3", "skip")):
        g = new_graph()
        add_op(g, "in", O.Input((6,)))
        add_op(g, "fc1", O.Dense(rng.normal(size=(5, 6)), rng.normal(size=5)), ["in"])
        add_op(g, "r1", O.IF(), ["fc1"])
        add_op(g, "fc2", O.Dense(rng.normal(size=(5, 5))), ["r1"])
        if "fc3" in order:
            add_op(g, "fc3", O.Dense(rng.normal(size=(5, 5))), ["r1"])
        add_op(g, "skip", O.Dense(rng.normal(size=(5, 6))), ["in"])
        add_op(g, "add", O.Add(), list(order))
        add_op(g, "r2", O.IF(), ["add"])
        add_op(g, "out_fc", O.Dense(rng.normal(size=(3, 5))), ["r2"])
        add_op(g, "out", O.Output(), ["out_fc"])
        x = rng.random((9, 6))
        q = compile_model(g, CompileConfig(bits=8, calibration=x))
        kw = dict(timesteps=12, encoding="constant", readout="count", record=True)
        a = simulate(q, x, engine="numpy", **kw)
        for method in METHODS:
            b = numba_in_chunks(q, x, fast.STEP_FRAMES, method, **kw)
            assert np.array_equal(a.scores, b.scores), (order, method)
            assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts), (order, method)
