"""``--target lava`` register checks: no value may reach Lava that it would wrap or truncate.

Pure numpy (no Lava needed): the target prepares Loihi 2's register widths for the quantize pass
and refuses, naming the layer and the register, whatever does not fit.
"""
import tracemalloc

import numpy as np
import pytest
from scipy.sparse import issparse

from snn_compiler.backends import TargetError
from snn_compiler.backends.lava import TARGET
from snn_compiler.backends.lava.plan import STOCK_LIF_BIAS, make_plan
from snn_compiler.backends.lava.target import load_profile
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import ops as O

from builders import int_chain
from lava_nets import compiled


def check(g):
    TARGET.check(g, CompileConfig(target="lava"))


def test_prepare_sets_loihi2_registers():
    original = CompileConfig(target="lava")
    config = TARGET.prepare(original)
    assert original.profile is None  # prepare returns a new config
    r = config.registers
    assert (r.membrane_bits, r.current_bits, r.threshold_bits, r.bias_mantissa_bits, r.bias_exponent_bits) == \
        (24, 24, 17, 13, 3)
    assert config.profile["name"] == "loihi2"
    assert load_profile("loihi1")["name"] == "loihi1"
    with pytest.raises(ValueError, match="no-such-chip"):
        load_profile("no-such-chip")


def test_more_weight_bits_than_loihi_keeps_are_refused_up_front():
    TARGET.prepare(CompileConfig(bits=9, target="lava"))
    with pytest.raises(TargetError, match="--bits 10: loihi2's weight register keeps 9-bit signed weights"):
        TARGET.prepare(CompileConfig(bits=10, target="lava"))


@pytest.mark.parametrize("net", ["mlp", "cnn", "resnet"])
@pytest.mark.parametrize("bits", [8, 4])
def test_compiled_test_nets_pass(net, bits):
    q, _ = compiled(net, bits=bits, target=TARGET)
    assert q.graph["snnc"]["target"] == "lava"
    make_plan(q)  # maps onto Lava


def test_weight_outside_the_kept_sign_mode_range_is_refused():
    g = int_chain([np.array([[256, 1]]), np.array([[1]])], [300, 1])
    with pytest.raises(TargetError, match=r"layer 'fc0': weight register holds \[-256, 255\]"):
        check(g)
    check(int_chain([np.array([[255, -256]]), np.array([[1]])], [300, 1]))  # the edges are exact


def test_threshold_beyond_17_bits_is_refused():
    g = int_chain([np.array([[3]]), np.array([[1]])], [1 << 17, 1])
    with pytest.raises(TargetError, match=r"layer 'if0': threshold 131072 does not fit the 17-bit threshold"):
        check(g)


def test_bias_not_a_mantissa_with_exponent_is_refused():
    ok = int_chain([np.array([[3]]), np.array([[1]])], [100, 1], biases=[np.array([4095 << 7]), np.array([0])])
    check(ok)
    bad = int_chain([np.array([[3]]), np.array([[1]])], [100, 1], biases=[np.array([4097]), np.array([0])])
    with pytest.raises(TargetError, match=r"layer 'if0': bias 4097 is not a 13-bit mantissa"):
        check(bad)


def test_bias_split_matches_the_register():
    b = np.array([0, 5, -4095, 4096, 8190, -32760, 4095 << 7])
    mant, exp = STOCK_LIF_BIAS.split_bias(b)
    assert np.array_equal(mant << exp, b) and np.abs(mant).max() <= 4095 and exp.max() <= 7
    assert STOCK_LIF_BIAS.bias_fits(b).all() and not STOCK_LIF_BIAS.bias_fits(np.array([4097, 4095 << 8])).any()


def test_current_beyond_24_bits_is_refused():
    # 200 graded inputs of up to 255 times weight 255: 13 million > 2**23 - 1
    g = int_chain([np.full((1, 200), 255), np.array([[1]])], [1000, 1])
    with pytest.raises(TargetError, match=r"layer 'fc0': worst-case synaptic current \[0, 13005000\] exceeds the "
                                          r"24-bit current register"):
        check(g)


def test_weight_exponent_beyond_loihis_is_refused():
    g = int_chain([np.array([[3]]), np.array([[1]])], [100, 1])
    g.nodes["fc0"]["op"].weight_exp = 7
    check(g)
    g.nodes["fc0"]["op"].weight_exp = 8
    with pytest.raises(TargetError, match=r"layer 'fc0': weight exponent 8 does not fit"):
        check(g)


def test_conv_with_weight_exponent_becomes_sparse_with_the_same_sums():
    """Lava's Conv ignores weight_exp: such a conv is planned as a Sparse matrix equal to the conv."""
    from snn_compiler.backends.lava.plan import conv_matrix, to_lava
    from snn_compiler.ir import kernels
    rng = np.random.default_rng(0)
    for (C, H, W, O_, kh, kw, s, p, d, g) in [(4, 7, 6, 6, 3, 2, (2, 1), (1, 0), (1, 2), 2),
                                               (3, 5, 5, 3, 1, 1, (1, 1), (0, 0), (1, 1), 3),
                                               (4, 3, 4, 4, 5, 3, (1, 2), (2, 3), (1, 1), 4)]:  # taps off the map
        w = rng.integers(-5, 6, (O_, C // g, kh, kw))
        x = rng.integers(0, 4, (2, C, H, W))
        y = kernels.conv2d(x.astype(float), w.astype(float), s, p, d, g)
        m = conv_matrix(w, (C, H, W), y.shape[1:], s, p, d, g)
        assert issparse(m) and m.dtype == np.int32 and m.nnz == np.count_nonzero(m.toarray())
        got = to_lava(x, 3).reshape(2, -1) @ m.toarray().T.astype(np.int64)
        assert np.array_equal(got, to_lava(y, 3).reshape(2, -1).astype(np.int64))


def test_membrane_width_must_be_loihis():
    g = int_chain([np.array([[3]]), np.array([[1]])], [100, 1], membrane_bits=16)
    with pytest.raises(TargetError, match="membrane register is 16 bits"):
        check(g)


def _depthwise(channels):
    g = new_graph()
    g.graph["snnc"] = {"normalized": True, "quantized": True, "reset": "subtract", "membrane_bits": 24}
    x = add_op(g, "in", O.Input((channels, 4, 4), scale=1.0))
    w = np.ones((channels, 1, 2, 2))
    c = add_op(g, "pool", O.Conv2d(w, stride=(2, 2), groups=channels, weight_int=w.astype(np.int32)), [x])
    p = add_op(g, "pool.if", O.IF(scale=1.0, threshold=4, bias=np.zeros((channels, 1, 1), np.int64), v_init=2,
                                  membrane_bits=24), [c])
    f = add_op(g, "flat", O.Flatten(), [p])
    w2 = np.ones((2, channels * 4))
    d = add_op(g, "fc", O.Dense(w2, weight_int=w2.astype(np.int32)), [f])
    add_op(g, "out", O.Output(scale=1.0, threshold=1, bias=np.zeros(2, np.int64), v_init=0), [d])
    verify(g)
    return g


def test_conv_groups_beyond_lavas_int8_register_become_a_sparse_connection():
    """Issue 12: a 128-group conv would wrap Lava Conv's int8 groups Var; it is planned as a Sparse
    matrix instead of refused (127 groups still fit a Conv)."""
    check(_depthwise(127))
    assert next(c for c in make_plan(_depthwise(127)).conns if c.name == "pool").kind == "conv"
    g = _depthwise(128)
    check(g)  # no refusal
    pool = next(c for c in make_plan(g).conns if c.name == "pool")
    assert pool.kind == "sparse" and pool.flatten and "groups 128 beyond Lava Conv's int8" in pool.why
    assert issparse(pool.weight) and pool.weight.shape == (128 * 2 * 2, 128 * 4 * 4)
    assert pool.weight.nnz == 128 * 2 * 2 * 4  # output neurons x 2x2 taps


@pytest.mark.parametrize("geometry,reason", [
    (dict(stride=(128, 1)), "stride 128"), (dict(padding=(0, 130)), "padding 130"),
    (dict(dilation=(200, 1)), "dilation 200"), (dict(kernel=(1, 128)), "kernel size 128"),
    (dict(weight_exp=2), "a weight exponent")])
def test_every_value_beyond_lava_convs_registers_makes_the_conv_sparse(geometry, reason):
    from snn_compiler.backends.lava.plan import why_sparse
    kernel = geometry.pop("kernel", (1, 1))
    exp = geometry.pop("weight_exp", 0)
    op = O.Conv2d(np.ones((2, 2) + kernel), **geometry)
    op.weight_exp = exp
    assert reason in why_sparse(op)
    assert why_sparse(O.Conv2d(np.ones((2, 2, 3, 3)), stride=(127, 127), padding=(127, 1))) is None


def test_sparse_connection_memory_follows_the_synapses_not_the_matrix():
    """A 256-channel 8x8 depthwise 1x1 skip is a 16384 x 16384 matrix (2 GiB dense in int64):
    built and stored in well under a megabyte, and a 3x3 depthwise conv likewise."""
    from snn_compiler.backends.lava.plan import conv_matrix
    C, H = 256, 8
    for k, pad in ((1, 0), (3, 1)):
        w = np.ones((C, 1, k, k), np.int64)
        tracemalloc.start()
        m = conv_matrix(w, (C, H, H), (C, H, H), (1, 1), (pad, pad), (1, 1), C)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        edge = 0 if k == 1 else 4 * H * 3 - 4  # taps that fall off the map (3x3, pad 1)
        assert issparse(m) and m.shape == (C * H * H, C * H * H) and m.nnz == C * (H * H * k * k - edge)
        stored = m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
        assert stored < 40 * m.nnz + 8 * m.shape[0] and peak < 64 * m.nnz + 16 * m.shape[0], (stored, peak)


def test_lava_layout_of_conv_and_dense_after_conv():
    """Plan: (W, H, C) shapes, flipped (O, kW, kH, I) kernels, Dense columns in Lava's flatten order."""
    q, _ = compiled("cnn", target=TARGET)
    p = make_plan(q)
    conv = next(c for c in p.conns if c.name == "conv1")
    w = q.nodes["conv1"]["op"].weight_int
    assert conv.weight.shape == (w.shape[0], w.shape[3], w.shape[2], w.shape[1])
    assert conv.weight[1, 0, 0, 1] == w[1, 1, -1, -1]  # flipped
    fc = next(c for c in p.conns if c.name == "fc")
    C, H, W = q.nodes["relu2"]["shape"]
    wf = q.nodes["fc"]["op"].weight_int
    c, h, x = 1, H - 1, 0
    assert fc.flatten and fc.weight[3, x * H * C + h * C + c] == wf[3, c * H * W + h * W + x]
    assert p.layers["relu1"].lshape == q.nodes["relu1"]["shape"][::-1]


def test_run_refuses_a_graph_lava_would_truncate():
    """A graph compiled for the reference with 12-bit weights must not reach Lava (Dense clips at 8+sign)."""
    from snn_compiler.backends.lava import run
    q, x = compiled("mlp", bits=12)  # target reference
    with pytest.raises(TargetError, match="weight register holds"):
        run(q, x, timesteps=4)
