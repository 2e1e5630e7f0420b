"""A residual Add read by one neuron layer is summed by the neuron kernel itself (fast_schedule.summed)."""
import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph
from snn_compiler.ir import ops as O
from snn_compiler.sim import fast
from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.fast_schedule import schedule
from snn_compiler.sim.plan import Plan

from engine_runs import numba_in_chunks

pytest.importorskip("numba")


def two_adds_net(rng, channels=4):
    """in -> c1 -> r1; add1 = conv(r1) + conv(in) (a term static under a constant input) -> r2;
    add2 = conv(r2) + skip(r1) -> r3; the read-out reads an Add of a Dense of r3 and one of r2."""
    g = new_graph()
    add_op(g, "in", O.Input((3, 6, 6)))
    add_op(g, "c1", O.Conv2d(rng.normal(size=(channels, 3, 3, 3)), rng.normal(size=channels), padding=(1, 1)), ["in"])
    add_op(g, "r1", O.IF(), ["c1"])
    add_op(g, "c2", O.Conv2d(rng.normal(size=(channels, channels, 3, 3)), None, padding=(1, 1)), ["r1"])
    add_op(g, "cin", O.Conv2d(rng.normal(size=(channels, 3, 1, 1)), None), ["in"])
    add_op(g, "add1", O.Add(), ["c2", "cin"])
    add_op(g, "r2", O.IF(), ["add1"])
    add_op(g, "c3", O.Conv2d(rng.normal(size=(channels, channels, 3, 3)), None, padding=(1, 1)), ["r2"])
    add_op(g, "skip", O.Conv2d(rng.uniform(0.5, 2, size=(channels, 1, 1, 1)), None, groups=channels), ["r1"])
    add_op(g, "add2", O.Add(), ["c3", "skip"])
    add_op(g, "r3", O.IF(), ["add2"])
    add_op(g, "f", O.Flatten(), ["r3"])
    add_op(g, "f1", O.Flatten(), ["r2"])
    add_op(g, "fc", O.Dense(rng.normal(size=(3, channels * 36))), ["f"])
    add_op(g, "fc1", O.Dense(rng.normal(size=(3, channels * 36))), ["f1"])
    add_op(g, "sum", O.Add(), ["fc", "fc1"])
    add_op(g, "out", O.Output(), ["sum"])
    return g


def test_the_schedule_sums_adds_read_by_one_wide_neuron_layer_only():
    rng = np.random.default_rng(0)
    x = rng.random((8, 3, 6, 6))
    q = compile_model(two_adds_net(rng), CompileConfig(bits=8, calibration=x))
    summed = schedule(fast.FastPlan(Plan(q, "int", "constant"))).summed
    # add1 and add2 each read by their neuron layer alone (144 neurons); not "sum", the read-out's
    assert summed == {"add1", "add2"}
    narrow = compile_model(two_adds_net(rng, channels=1), CompileConfig(bits=8, calibration=x))
    # 36 neurons a layer: the kernel steps whole frames of such a layer at once, which sums no pair
    assert not {"add1", "add2"} & schedule(fast.FastPlan(Plan(narrow, "int", "constant"))).summed


@pytest.mark.parametrize("encoding", ["constant", "poisson"])
def test_summed_adds_give_the_numpy_engines_spikes(encoding):
    """Under a constant input one term of add1 is static (one step for all), under Poisson neither is."""
    rng = np.random.default_rng(1)
    x = rng.random((9, 3, 6, 6))
    q = compile_model(two_adds_net(rng), CompileConfig(bits=8, calibration=x))
    kw = dict(timesteps=11, encoding=encoding, readout="count", record=True, batch_size=9)
    a = simulate(q, x, engine="numpy", **kw)
    for method in ("auto", "scatter", "product"):
        for frames in (fast.STEP_FRAMES, 18):   # whole runs, and chunks of 2 steps (state carried over)
            b = numba_in_chunks(q, x, frames, method, **kw)
            assert np.array_equal(a.scores, b.scores), (method, frames)
            assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts), (method, frames)
    assert a.counts["r2"].sum() > 0 and a.counts["r3"].sum() > 0


def test_summed_adds_under_an_early_stop_give_the_numpy_engines_decisions():
    rng = np.random.default_rng(2)
    x = rng.random((12, 3, 6, 6))
    q = compile_model(two_adds_net(rng), CompileConfig(bits=8, calibration=x))
    kw = dict(timesteps=24, readout="k-spikes", k=2, batch_size=12)   # (no record: decided samples stop)
    a = simulate(q, x, engine="numpy", **kw)
    b = simulate(q, x, engine="numba", **kw)
    assert np.array_equal(a.predictions, b.predictions) and np.array_equal(a.decision_time, b.decision_time)
