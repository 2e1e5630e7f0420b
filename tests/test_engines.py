"""The event-driven numba engine and the step-by-step numpy engine agree bit for bit."""
import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph
from snn_compiler.ir import ops as O
from snn_compiler.sim import fast
from snn_compiler.sim.emulator import simulate

pytestmark = pytest.mark.skipif(not fast.available(), reason="numba is not installed")


def conv_net(rng, stride, padding, dilation, groups):
    g = new_graph()
    add_op(g, "in", O.Input((4, 9, 9)))
    add_op(g, "c1", O.Conv2d(rng.normal(size=(6, 4 // groups, 3, 3)), rng.normal(size=6), stride=stride,
                             padding=padding, dilation=dilation, groups=groups), ["in"])
    add_op(g, "r1", O.IF(), ["c1"])
    add_op(g, "c2", O.Conv2d(rng.normal(size=(6, 6 // groups, 2, 2)), None, groups=groups), ["r1"])
    add_op(g, "r2", O.IF(), ["c2"])
    add_op(g, "pool", O.AvgPool2d((2, 2), (2, 2)), ["r2"])
    add_op(g, "f", O.Flatten(), ["pool"])
    add_op(g, "fc", O.Dense(rng.normal(size=(5, 6 * int(np.prod(_hw(stride, padding, dilation)))))), ["f"])
    add_op(g, "out", O.Output(), ["fc"])
    return g


def _hw(stride, padding, dilation):
    h, w = ((9 + 2 * padding[i] - dilation[i] * 2 - 1) // stride[i] + 1 for i in range(2))
    return ((h - 1) // 2, (w - 1) // 2)


def residual_net(rng):
    g = new_graph()
    add_op(g, "in", O.Input((12,)))
    add_op(g, "fc1", O.Dense(rng.normal(size=(8, 12)), rng.normal(size=8)), ["in"])
    add_op(g, "r1", O.IF(), ["fc1"])
    add_op(g, "fc2", O.Dense(rng.normal(size=(8, 8))), ["r1"])
    add_op(g, "add", O.Add(), ["fc2", "r1"])
    add_op(g, "r2", O.IF(), ["add"])
    add_op(g, "fc3", O.Dense(rng.normal(size=(3, 8)), rng.normal(size=3)), ["r2"])
    add_op(g, "out", O.Output(), ["fc3"])
    return g


CASES = [((1, 1), (1, 1), (1, 1), 1), ((2, 2), (0, 0), (1, 1), 1), ((1, 1), (2, 2), (2, 2), 2), ((2, 1), (1, 0), (1, 1), 2)]


@pytest.mark.parametrize("stride,padding,dilation,groups", CASES)
@pytest.mark.parametrize("encoding,readout,reset", [("constant", "membrane", "subtract"), ("poisson", "count", "zero")])
def test_engines_agree_on_convs(stride, padding, dilation, groups, encoding, readout, reset):
    rng = np.random.default_rng(groups)
    g = conv_net(rng, stride, padding, dilation, groups)
    x = rng.random((13, 4, 9, 9))
    q = compile_model(g, CompileConfig(bits=6, calibration=x, reset=reset))
    kw = dict(timesteps=11, encoding=encoding, readout=readout, record=True, batch_size=5)
    a, b = simulate(q, x, engine="numpy", **kw), simulate(q, x, engine="numba", **kw)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.predictions, b.predictions)
    assert a.counts.keys() == b.counts.keys()
    for k in a.counts:
        assert np.array_equal(a.counts[k], b.counts[k]), k
    assert sum(c.sum() for c in a.counts.values()) > 0  # the comparison saw spikes


def test_engines_agree_on_residual_and_signed_input():
    rng = np.random.default_rng(7)
    g = residual_net(rng)
    x = rng.normal(size=(20, 12))
    q = compile_model(g, CompileConfig(bits=8, calibration=x))
    assert q.nodes["in"]["op"].signed
    for enc in ("constant", "poisson"):
        a = simulate(q, x, engine="numpy", timesteps=9, encoding=enc, record=True)
        b = simulate(q, x, engine="numba", timesteps=9, encoding=enc, record=True)
        assert np.array_equal(a.scores, b.scores)
        assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts)
