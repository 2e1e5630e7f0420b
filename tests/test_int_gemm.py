"""The numba engine's dense method (sim/int_gemm.py): int8 products with int32 sums, exact, and
chosen only where it is cheaper; the engine equals numpy's whichever method runs."""
import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph
from snn_compiler.ir import ops as O
from snn_compiler.sim import fast, int_gemm
from snn_compiler.sim import numba_kernels as K
from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.plan import Plan

from engine_runs import assert_switch_turns_off, numba_in_chunks
from test_engines import conv_net, residual_net

pytestmark = pytest.mark.skipif(not int_gemm.available(), reason="no exact int8 product on this CPU")


def test_int8_parts_rebuild_the_weights():
    rng = np.random.default_rng(0)
    w8 = rng.integers(-128, 128, (30, 7)).astype(np.int8)
    assert len(int_gemm.int8_parts(w8)) == 1
    w16 = rng.integers(-32000, 32000, (30, 7)).astype(np.int16)
    w16[0, 0], w16[1, 1] = -32640, 32639  # the ends a high and a low byte reach
    parts = int_gemm.int8_parts(w16)
    assert [p.dtype for p, _ in parts] == [np.int8, np.int8]
    assert np.array_equal(sum(p.astype(np.int64) * m for p, m in parts), w16)
    assert int_gemm.int8_parts(np.full((3, 2), 32767, np.int16)) is None  # its high byte would be 128
    assert int_gemm.int8_parts(np.zeros((1 << 17, 1), np.int8)) is None  # int32 sums could wrap
    shifted = rng.integers(-128, 128, (30, 7)).astype(np.int16) << 3   # weight_int << weight_exp
    shifted[0, 0] = -128 << 3
    (part, mult), = int_gemm.int8_parts(shifted)   # one product, then times 2**3
    assert part.dtype == np.int8 and mult == 8 and np.array_equal(part.astype(np.int64) * 8, shifted)
    odd = shifted.copy()
    odd[1, 1] += 4   # a weight with fewer trailing zeros: the common factor is 4, and w / 4 leaves int8
    assert len(int_gemm.int8_parts(odd)) == 2
    assert np.array_equal(sum(p.astype(np.int64) * m for p, m in int_gemm.int8_parts(odd)), odd)
    assert not np.any(sum(p.astype(np.int64) * m for p, m in int_gemm.int8_parts(np.zeros((4, 3), np.int16))))


@pytest.mark.parametrize("bits", [8, 16])
def test_the_product_equals_int64_arithmetic(bits):
    rng = np.random.default_rng(bits)
    hi = 127 if bits == 8 else 20000
    w = rng.integers(-hi, hi + 1, (300, 19)).astype(np.int8 if bits == 8 else np.int16)
    a = rng.integers(-128, 128, (41, 300)).astype(np.int8)
    a[0], w[:, 0] = -128, -hi  # the largest sums
    out = np.empty((41, 19), np.int32)
    int_gemm.matmul(a, int_gemm.int8_parts(w), out)
    assert np.array_equal(out, a.astype(np.int64) @ w.astype(np.int64))
    spikes = (rng.random((41, 300)) < 0.3).astype(np.uint8)  # 0/1 spikes as the engine holds them
    int_gemm.matmul(spikes, int_gemm.int8_parts(w), out)
    assert np.array_equal(out, spikes.astype(np.int64) @ w.astype(np.int64))


def test_matrices_with_a_length_1_axis_keep_their_layout():
    """A transposed (2, 1) weight is a (1, 2) matrix numpy calls contiguous with strides (1, 1); the
    product must still read it by rows (it once summed into the wrong output: hypothesis found it)."""
    w = np.array([[3], [-5]], np.int8)          # Dense(1 -> 2) weights, (out, in)
    wt = np.ascontiguousarray(w.T)              # the engine's (in, out) matrix
    assert wt.strides != (2, 1)
    for a in (np.array([[1]], np.uint8), np.array([[1], [0], [2]], np.int8)):
        out = np.empty((len(a), 2), np.int32)
        int_gemm.matmul(a, int_gemm.int8_parts(wt), out)
        assert np.array_equal(out, a.astype(np.int64) @ wt.astype(np.int64))


@pytest.mark.parametrize("stride,padding,dilation,size,k", [(1, 1, 1, 9, 3), (2, 0, 1, 10, 3), (1, 2, 2, 8, 3),
                                                             (3, 1, 1, 11, 3), (1, 0, 1, 7, 1), (2, 0, 1, 7, 1),
                                                             (1, 1, 1, 6, 1)])
def test_a_conv_as_products_equals_the_scatter(stride, padding, dilation, size, k):
    """(1x1 at stride 1 without padding: the input is its own im2col, no copy.)"""
    rng = np.random.default_rng(size)
    n_f, c, o = 37, 5, 6
    x = (rng.random((n_f, size, size, c)) < 0.4).astype(np.uint8)
    wr = rng.integers(-128, 128, (c, k, k, o)).astype(np.int8)
    out_size = (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    tab = fast._reach(size, k, stride, padding, dilation, out_size)
    want = np.zeros((n_f, out_size, out_size, o), np.int32)
    K.conv_events(x, wr, want, tab, tab, c)
    got = np.empty_like(want)
    saved, int_gemm.COLS_BYTES = int_gemm.COLS_BYTES, 1000  # several im2col blocks, one partial
    try:
        int_gemm.conv(x, int_gemm.int8_parts(wr.transpose(1, 2, 0, 3).reshape(k * k * c, o)), got,
                      (k, k, (stride, stride), (padding, padding), (dilation, dilation)))
    finally:
        int_gemm.COLS_BYTES = saved
    assert np.array_equal(got, want)


def test_the_cost_model_picks_the_product_for_busy_wide_layers_only():
    # ResNet-18's 3x3 convs (64..512 channels) at the measured rates (8-17%): the product
    for c in (64, 128, 256, 512):
        h = 4096 // c
        assert int_gemm.cheaper(0.08, 9, h * h * c, c, h * h, 9 * c, c, True)
    # a sparse input (SHD-like events into a small layer): the scatter
    assert not int_gemm.cheaper(0.01, 1, 700, 32, 1, 700, 32, False)
    assert not int_gemm.cheaper(0.0, 9, 4096, 64, 64, 576, 64, True)


def test_the_engine_runs_products_and_equals_numpy(monkeypatch):
    """With the method forced to the product the numba engine runs it (counted) on a CNN with a
    residual add and a Dense, and every score and spike count equals the numpy engine's."""
    rng = np.random.default_rng(3)
    calls = []
    real = int_gemm.matmul
    monkeypatch.setattr(int_gemm, "matmul", lambda *a: calls.append(1) or real(*a))
    for g, x in ((conv_net(rng, (1, 1), (1, 1), (1, 1), 1), rng.random((13, 4, 9, 9))), (residual_net(rng), rng.normal(size=(20, 12)))):
        q = compile_model(g, CompileConfig(bits=8, calibration=x))
        kw = dict(timesteps=12, encoding="poisson", readout="count", record=True, batch_size=7)
        a = simulate(q, x, engine="numpy", **kw)
        before = len(calls)
        b = numba_in_chunks(q, x, fast.STEP_FRAMES, "product", **kw)
        assert len(calls) > before
        assert np.array_equal(a.scores, b.scores)
        assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts)


def residual_cnn(rng):
    """A residual block whose identity path is a depthwise 1x1 conv (how snnc lowers a skip)."""
    g = new_graph()
    add_op(g, "in", O.Input((4, 6, 6)))
    add_op(g, "c1", O.Conv2d(rng.normal(size=(4, 4, 3, 3)), rng.normal(size=4), padding=(1, 1)), ["in"])
    add_op(g, "r1", O.IF(), ["c1"])
    add_op(g, "c2", O.Conv2d(rng.normal(size=(4, 4, 3, 3)), None, padding=(1, 1)), ["r1"])
    add_op(g, "skip", O.Conv2d(rng.uniform(0.5, 2, size=(4, 1, 1, 1)), None, groups=4), ["r1"])
    add_op(g, "add", O.Add(), ["c2", "skip"])
    add_op(g, "r2", O.IF(), ["add"])
    add_op(g, "f", O.Flatten(), ["r2"])
    add_op(g, "fc", O.Dense(rng.normal(size=(3, 144))), ["f"])
    add_op(g, "out", O.Output(), ["fc"])
    return g


def test_a_depthwise_1x1_runs_as_a_channel_scale():
    """A residual's identity path (a per-channel 1x1 conv) is one multiply per value; the engine
    equals numpy's with it, under either method for the other convs."""
    rng = np.random.default_rng(5)
    x = rng.random((16, 4, 6, 6))
    q = compile_model(residual_cnn(rng), CompileConfig(bits=8, calibration=x))
    assert list(fast.FastPlan(Plan(q, "int", "constant")).channel_scale) == ["skip"]
    kw = dict(timesteps=10, readout="count", record=True, batch_size=16)
    a = simulate(q, x, engine="numpy", **kw)
    for method in ("scatter", "product"):
        b = numba_in_chunks(q, x, fast.STEP_FRAMES, method, **kw)
        assert np.array_equal(a.scores, b.scores) and all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts)
    assert a.counts["r2"].sum() > 0


def test_the_switch_turns_the_product_off(monkeypatch):
    assert_switch_turns_off(monkeypatch, "SNNC_INT_GEMM", int_gemm.available)


def test_the_product_runs_on_the_engines_thread_count():
    """Inside int_gemm.threads(n) a product runs torch on n threads; torch's setting is restored after."""
    import torch
    before = torch.get_num_threads()
    a, w = np.ones((4, 3), np.int8), np.ones((3, 2), np.int8)
    want = 2 if before == 1 else 1  # a count other than torch's own
    seen = []
    with int_gemm.threads(want):
        int_gemm.matmul(a, int_gemm.int8_parts(w), np.empty((4, 2), np.int32))
        seen.append(torch.get_num_threads())
    assert seen == [want] and torch.get_num_threads() == before


@pytest.mark.parametrize("stride,padding,dilation,k", [(1, 1, 1, 3), (2, 1, 1, 3), (1, 2, 2, 3), (2, 2, 1, 5)])
def test_a_depthwise_pass_equals_the_scatter(stride, padding, dilation, k):
    rng = np.random.default_rng(k + stride)
    n_f, c, size = 11, 7, 9
    x = (rng.random((n_f, size, size, c)) < 0.4).astype(np.uint8) * rng.integers(1, 5, (n_f, size, size, c)).astype(np.uint8)
    wr = rng.integers(-128, 128, (c, k, k, 1)).astype(np.int8)
    wr[:, 0, 1:] = 0  # taps zero in every channel (a max pool's selections), which the pass skips
    out_size = (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    tab = fast._reach(size, k, stride, padding, dilation, out_size)
    want = np.zeros((n_f, out_size, out_size, c), np.int32)
    K.conv_events(x, wr, want, tab, tab, 1)
    got = np.zeros_like(want)
    taps = np.ascontiguousarray(wr[:, :, :, 0].transpose(1, 2, 0))
    K.depthwise_dense(x, taps, np.any(taps != 0, axis=2), got, stride, stride, padding,
                      padding, dilation, dilation)
    assert np.array_equal(got, want)


def test_the_engine_runs_a_depthwise_net_densely_and_equals_numpy():
    rng = np.random.default_rng(9)
    g = new_graph()
    add_op(g, "in", O.Input((4, 8, 8)))
    add_op(g, "pw", O.Conv2d(rng.normal(size=(6, 4, 1, 1)), rng.normal(size=6)), ["in"])
    add_op(g, "r1", O.IF(), ["pw"])
    add_op(g, "dw", O.Conv2d(rng.normal(size=(6, 1, 3, 3)), rng.normal(size=6), stride=(2, 2), padding=(1, 1),
                             groups=6), ["r1"])
    add_op(g, "r2", O.IF(), ["dw"])
    add_op(g, "f", O.Flatten(), ["r2"])
    add_op(g, "fc", O.Dense(rng.normal(size=(3, 96))), ["f"])
    add_op(g, "out", O.Output(), ["fc"])
    x = rng.random((12, 4, 8, 8))
    q = compile_model(g, CompileConfig(bits=8, calibration=x))
    kw = dict(timesteps=10, readout="count", record=True, batch_size=12)
    a = simulate(q, x, engine="numpy", **kw)
    info = {}
    for method in ("product", "scatter", "auto"):
        b = numba_in_chunks(q, x, fast.STEP_FRAMES, method, info=info, **kw)
        assert np.array_equal(a.scores, b.scores), method
        assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts), method
    assert "depthwise pass" in info["methods"]["dw"]
