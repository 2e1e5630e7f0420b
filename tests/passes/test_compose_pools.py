import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, op_of
from snn_compiler.ir import ops as O
from snn_compiler.passes.compose_pools import without_pools
from snn_compiler.sim.emulator import run_ann, simulate


def pooled_net(rng, conv_kw, k=2):
    g = new_graph()
    add_op(g, "in", O.Input((2, 8, 8)))
    add_op(g, "c1", O.Conv2d(rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4), padding=(1, 1)), ["in"])
    add_op(g, "r1", O.IF(), ["c1"])
    add_op(g, "p1", O.AvgPool2d((k, k), (k, k)), ["r1"])
    add_op(g, "c2", O.Conv2d(rng.normal(size=(4, 4 // conv_kw.get("groups", 1), 3, 3)), None, **conv_kw), ["p1"])
    add_op(g, "r2", O.IF(), ["c2"])
    add_op(g, "p2", O.AvgPool2d((2, 2), (2, 2)), ["r2"])
    add_op(g, "f", O.Flatten(), ["p2"])
    hw = O.conv_out_hw((8 // k, 8 // k), (3, 3), conv_kw.get("stride", (1, 1)), conv_kw.get("padding", (0, 0)),
                       conv_kw.get("dilation", (1, 1)))
    n = 4 * (hw[0] // 2) * (hw[1] // 2)
    add_op(g, "d", O.Dense(rng.normal(size=(3, n))), ["f"])
    add_op(g, "out", O.Output(), ["d"])
    from snn_compiler.ir import verify
    verify(g)
    return g


@pytest.mark.parametrize("conv_kw", [{"padding": (1, 1)}, {"stride": (2, 2), "padding": (2, 2), "dilation": (2, 2)},
                                     {"groups": 2, "padding": (1, 1)}])
def test_composed_graph_is_bit_exact(conv_kw):
    rng = np.random.default_rng(0)
    x = rng.random((12, 2, 8, 8))
    q = compile_model(pooled_net(rng, conv_kw), CompileConfig(calibration=x))
    assert any(isinstance(op_of(q, n), O.AvgPool2d) for n in q)
    c = without_pools(q)
    assert not any(isinstance(op_of(c, n), O.AvgPool2d) for n in c) and any(isinstance(op_of(q, n), O.AvgPool2d) for n in q)
    np.testing.assert_allclose(run_ann(c, x), run_ann(q, x), atol=1e-9)
    for enc in ("constant", "poisson"):
        a = simulate(q, x, timesteps=10, encoding=enc, readout="count", record=True, engine="numpy")
        b = simulate(c, x, timesteps=10, encoding=enc, readout="count", record=True, engine="numpy")
        assert np.array_equal(a.scores, b.scores)
        assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts)
    assert without_pools(c) is c
