"""Grouped convs wider than the grouped pass run as torch's float32 conv: the same integers as the scatter."""
import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph
from snn_compiler.ir import ops as O
from snn_compiler.sim import fast, float_conv
from snn_compiler.sim.emulator import simulate

from engine_runs import assert_switch_turns_off, methods_equal_numpy, numba_in_chunks, scatter_conv

pytest.importorskip("torch")


# (in channels per group, out channels per group, kernel, stride, padding, dilation): ResNeXt's 4 x 4 and
# 8 x 8 groups at 3x3, RegNetX's 16, a strided one, a dilated one and a rectangular group
SHAPES = [(4, 4, 3, 1, 1, 1), (8, 8, 3, 2, 1, 1), (16, 16, 3, 1, 1, 1), (4, 8, 3, 1, 2, 2), (3, 5, 2, 2, 0, 1)]


@pytest.mark.parametrize("cg,og,k,stride,padding,dilation", SHAPES)
def test_the_float_conv_equals_the_scatter(cg, og, k, stride, padding, dilation):
    rng = np.random.default_rng(cg * 10 + og + k)
    groups, n_f, size = 3, 7, 9
    c_in, c_out = groups * cg, groups * og
    x = ((rng.random((n_f, size, size, c_in)) < 0.4) * rng.integers(1, 5, (n_f, size, size, c_in))).astype(np.uint8)
    w = rng.integers(-128, 128, (c_out, cg, k, k)).astype(np.int8)
    w[0] = -128   # the extreme sums
    x[0] = 4
    want = scatter_conv(x, w, groups, stride, padding, dilation)
    got = float_conv.conv(x, float_conv.weight(w.astype(np.float32)), ((stride,) * 2, (padding,) * 2, (dilation,) * 2),
                          groups)
    assert got.dtype == np.int32 and np.array_equal(got, want)
    assert want.min() <= -128 * 4 * cg * min(k * k, 4)   # a full group of -128s on 4s, over 4 taps at least


def test_it_checks_itself_and_a_switch_turns_it_off(monkeypatch):
    assert_switch_turns_off(monkeypatch, "SNNC_FLOAT_CONV", float_conv.available)


def _resnext_like_net(rng):
    """conv -> IF -> a 3x3 conv of 4 groups of 4 -> IF -> a strided 3x3 conv of 2 groups of 8 -> IF -> dense."""
    g = new_graph()
    add_op(g, "in", O.Input((3, 9, 9)))
    add_op(g, "conv", O.Conv2d(rng.normal(size=(16, 3, 3, 3)), rng.normal(size=16), padding=(1, 1)), ["in"])
    add_op(g, "r1", O.IF(), ["conv"])
    add_op(g, "g4", O.Conv2d(rng.normal(size=(16, 4, 3, 3)), rng.normal(size=16), padding=(1, 1), groups=4), ["r1"])
    add_op(g, "r2", O.IF(), ["g4"])
    add_op(g, "g8", O.Conv2d(rng.normal(size=(16, 8, 3, 3)), None, stride=(2, 2), padding=(1, 1), groups=2), ["r2"])
    add_op(g, "r3", O.IF(), ["g8"])
    add_op(g, "f", O.Flatten(), ["r3"])
    add_op(g, "fc", O.Dense(rng.normal(size=(4, 16 * 5 * 5))), ["f"])
    add_op(g, "out", O.Output(), ["fc"])
    return g


def test_the_engine_runs_wide_groups_as_the_float_conv_and_equals_numpy(monkeypatch):
    rng = np.random.default_rng(6)
    x = rng.random((10, 3, 9, 9))
    q = compile_model(_resnext_like_net(rng), CompileConfig(bits=8, calibration=x))
    kw = dict(timesteps=12, readout="count", record=True, batch_size=10)
    ran = methods_equal_numpy(q, x, ("g4", "g8"), **kw)
    a = simulate(q, x, engine="numpy", **kw)
    assert ran["auto"] == ran["product"] == {"g4": {"float conv"}, "g8": {"float conv"}}
    assert ran["scatter"] == {"g4": {"scatter"}, "g8": {"scatter"}}
    assert a.counts["r2"].sum() > 0 and a.counts["r3"].sum() > 0
    # where the float conv does not run (off, or its self-test failed) the scatter does, with the same integers
    monkeypatch.setattr(float_conv, "available", lambda: False)
    info = {}
    b = numba_in_chunks(q, x, fast.STEP_FRAMES, "auto", info=info, **kw)
    assert np.array_equal(a.scores, b.scores) and set(info["methods"]["g4"]) == {"scatter"}
