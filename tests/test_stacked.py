"""A concatenation's parts into one Add run as one int8 product over their spikes side by side (sim/stacked.py)."""
import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph
from snn_compiler.ir import ops as O
from snn_compiler.ir.routing import Concat
from snn_compiler.sim import fast, int_gemm, stacked
from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.fast_schedule import schedule
from snn_compiler.sim.plan import Plan

from engine_runs import numba_in_chunks

pytest.importorskip("numba")
pytest.importorskip("torch")


def concat_net(rng):
    """Three branches (4, 3 and 5 channels) concatenated, read by a 1x1 conv and by a 2x2/2 conv (each
    split into one conv per part, summed by an Add), then a Dense read-out of both."""
    g = new_graph()
    add_op(g, "in", O.Input((3, 8, 8)))
    for name, c in (("a", 4), ("b", 3), ("c", 5)):
        add_op(g, f"conv_{name}", O.Conv2d(rng.normal(size=(c, 3, 3, 3)), rng.normal(size=c) * 0.1, padding=(1, 1)),
               ["in"])
        add_op(g, name, O.IF(), [f"conv_{name}"])
    add_op(g, "cat", Concat(), ["a", "b", "c"])
    add_op(g, "pw", O.Conv2d(rng.normal(size=(6, 12, 1, 1)), rng.normal(size=6) * 0.1), ["cat"])
    add_op(g, "r_pw", O.IF(), ["pw"])
    add_op(g, "down", O.Conv2d(rng.normal(size=(6, 12, 2, 2)), None, stride=(2, 2)), ["cat"])
    add_op(g, "r_down", O.IF(), ["down"])
    add_op(g, "f1", O.Flatten(), ["r_pw"])
    add_op(g, "f2", O.Flatten(), ["r_down"])
    add_op(g, "fc1", O.Dense(rng.normal(size=(4, 6 * 64))), ["f1"])
    add_op(g, "fc2", O.Dense(rng.normal(size=(4, 6 * 16))), ["f2"])
    add_op(g, "sum", O.Add(), ["fc1", "fc2"])
    add_op(g, "out", O.Output(), ["sum"])
    return g


def _compiled(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((10, 3, 8, 8))
    return compile_model(concat_net(rng), CompileConfig(bits=8, calibration=x)), x


def _adds_of_parts(q):
    return {n for n in q if isinstance(q.nodes[n]["op"], O.Add) and len(list(q.predecessors(n))) == 3}


def test_the_schedule_stacks_the_parts_of_each_split_conv():
    q, _ = _compiled()
    adds = _adds_of_parts(q)
    assert len(adds) == 2
    found = schedule(fast.FastPlan(Plan(q, "int", "constant"))).stacked
    assert set(found) == adds and all(len(convs) == 3 for convs in found.values())


def test_stacked_spikes_are_the_parts_side_by_side_times_their_power_of_two():
    rng = np.random.default_rng(1)
    slabs = [(rng.random((5, 3, 3, c)) < 0.5).astype(np.uint8) for c in (4, 1, 7)]
    got = stacked.stacked_spikes(slabs, [0, 6, 2])
    want = np.concatenate([slabs[0], slabs[1] * 64, slabs[2] * 4], axis=-1).astype(np.int8)
    assert got.dtype == np.int8 and np.array_equal(got, want)


@pytest.mark.parametrize("encoding", ["constant", "poisson"])
def test_stacked_products_give_the_numpy_engines_spikes(encoding):
    q, x = _compiled(2)
    # one part's weights as half the integers times 2**(e + 1): the parts then differ in their power of two
    part = next(n for n in q.predecessors(sorted(_adds_of_parts(q))[0]))
    op = q.nodes[part]["op"]
    op.weight_int, op.weight_exp = (np.asarray(op.weight_int) // 2).astype(np.asarray(op.weight_int).dtype), \
        op.weight_exp + 1
    kw = dict(timesteps=10, encoding=encoding, readout="count", record=True, batch_size=10)
    a = simulate(q, x, engine="numpy", **kw)
    for method in ("product", "scatter", "auto"):
        info = {}
        b = numba_in_chunks(q, x, 20, method, info=info, **kw)   # chunks of 2 steps
        assert np.array_equal(a.scores, b.scores), method
        assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts), method
        ran = {m for n in q.predecessors(sorted(_adds_of_parts(q))[0]) for m in info["methods"][n]}
        assert ran == ({"scatter"} if method == "scatter" else {"stacked int8 product"}) or method == "auto", ran
    assert all(a.counts[n].sum() > 0 for n in ("r_pw", "r_down"))
    assert int_gemm.available()


class _Plan:
    """What stacked_parts reads of a FastPlan: each conv's int8 parts and geometry."""

    def __init__(self, split):
        self.split = split

    def product_parts(self, n):
        return self.split[n]


def test_the_stacked_weights_are_the_parts_rows_tap_by_tap():
    rng = np.random.default_rng(4)
    geometry = (2, 2, (2, 2), (0, 0), (1, 1))
    m = {n: rng.integers(-128, 128, (4 * c, 5)).astype(np.int8) for n, c in (("p", 3), ("q", 2))}
    fp = _Plan({"p": ([(m["p"], 4)], geometry), "q": ([(m["q"], 256)], geometry)})
    (matrix, mult), = stacked.stacked_parts(fp, ["p", "q"])[0]
    assert mult == 4 and stacked.stacked_parts(fp, ["p", "q"])[1] == [0, 6]
    want = np.concatenate([m["p"].reshape(4, 3, 5), m["q"].reshape(4, 2, 5)], axis=1).reshape(-1, 5)
    assert np.array_equal(matrix, want)
    # spikes times 2**7 would leave int8, and a 16-bit part is two products: neither is stacked
    assert stacked.stacked_parts(_Plan({"p": ([(m["p"], 1)], geometry), "q": ([(m["q"], 128)], geometry)}),
                                 ["p", "q"]) is None
    assert stacked.stacked_parts(_Plan({"p": ([(m["p"], 1)], geometry), "q": ([(m["q"], 1), (m["q"], 256)], geometry)}),
                                 ["p", "q"]) is None
