"""The grouped pass: a conv of small groups (a max pool's comparisons) on every value, equal to the scatter."""
import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph
from snn_compiler.ir import ops as O
from snn_compiler.sim import numba_kernels as K
from snn_compiler.sim.emulator import simulate

from engine_runs import methods_equal_numpy, scatter_conv


# (in channels per group, out channels per group, kernel, stride, padding, dilation): SqueezeNet's max-pool
# comparisons (1 -> 2 and 1 -> 4 at 3x3 stride 2, 2 or 4 -> 1 and 4 -> 2 at 1x1) and a dilated 2 -> 2
SHAPES = [(1, 4, 3, 2, 1, 1), (1, 2, 3, 2, 0, 1), (4, 1, 1, 1, 0, 1), (2, 1, 1, 1, 0, 1), (4, 2, 1, 1, 0, 1),
          (2, 2, 3, 1, 2, 2), (3, 5, 2, 2, 1, 1)]


@pytest.mark.parametrize("cg,og,k,stride,padding,dilation", SHAPES)
def test_the_grouped_pass_equals_the_scatter(cg, og, k, stride, padding, dilation):
    rng = np.random.default_rng(cg * 10 + og + k)
    groups, n_f, size = 3, 9, 9
    c_in, c_out = groups * cg, groups * og
    x = ((rng.random((n_f, size, size, c_in)) < 0.4) * rng.integers(1, 5, (n_f, size, size, c_in))).astype(np.uint8)
    w = rng.integers(-128, 128, (c_out, cg, k, k)).astype(np.int8)
    w.reshape(groups, og, cg, k, k)[:, 0, 0, 0] = 0   # a (slot, input, tap) zero in every group: skipped
    want = scatter_conv(x, w, groups, stride, padding, dilation)
    slots = np.ascontiguousarray(w.reshape(groups, og, cg, k, k).transpose(3, 4, 1, 2, 0))
    got = np.full_like(want, -7)   # every value is written
    K.grouped_dense(x, slots, np.any(slots != 0, axis=4), got, stride, stride, padding, padding, dilation, dilation)
    assert np.array_equal(got, want)
    assert np.any(want)


def _maxpool_like_net(rng):
    """conv -> IF -> a 1 -> 4 channel 3x3/2 grouped conv -> IF -> a 4 -> 1 channel 1x1 grouped conv -> IF -> dense."""
    g = new_graph()
    add_op(g, "in", O.Input((3, 9, 9)))
    add_op(g, "conv", O.Conv2d(rng.normal(size=(6, 3, 3, 3)), rng.normal(size=6), padding=(1, 1)), ["in"])
    add_op(g, "r1", O.IF(), ["conv"])
    add_op(g, "spread", O.Conv2d(rng.normal(size=(24, 1, 3, 3)), rng.normal(size=24), stride=(2, 2), padding=(1, 1),
                                 groups=6), ["r1"])
    add_op(g, "r2", O.IF(), ["spread"])
    add_op(g, "gather", O.Conv2d(rng.normal(size=(6, 4, 1, 1)), None, groups=6), ["r2"])
    add_op(g, "r3", O.IF(), ["gather"])
    add_op(g, "f", O.Flatten(), ["r3"])
    add_op(g, "fc", O.Dense(rng.normal(size=(4, 6 * 5 * 5))), ["f"])
    add_op(g, "out", O.Output(), ["fc"])
    return g


def test_the_engine_runs_small_groups_as_the_grouped_pass_and_equals_numpy():
    rng = np.random.default_rng(4)
    x = rng.random((10, 3, 9, 9))
    q = compile_model(_maxpool_like_net(rng), CompileConfig(bits=8, calibration=x))
    kw = dict(timesteps=12, readout="count", record=True, batch_size=10)
    ran = methods_equal_numpy(q, x, ("spread", "gather"), **kw)
    a = simulate(q, x, engine="numpy", **kw)
    assert ran["auto"] == ran["product"] == {"spread": {"grouped pass"}, "gather": {"grouped pass"}}
    assert ran["scatter"] == {"spread": {"scatter"}, "gather": {"scatter"}}
    assert sum(a.counts["r2"].ravel()) > 0 and sum(a.counts["r3"].ravel()) > 0
