import numpy as np
import pytest

from snn_compiler.config import CompileConfig
from snn_compiler.ir.registers import Registers
from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import ops as O
from snn_compiler.passes import quantize


def normalized_mlp(w1, b1, w2, levels_bits=8):
    g = new_graph()
    g.graph["snnc"] = {"normalized": True}
    add_op(g, "in", O.Input((w1.shape[1],), scale=1.0, bits=levels_bits))
    add_op(g, "fc1", O.Dense(w1, b1), ["in"])
    add_op(g, "r1", O.IF(scale=1.0), ["fc1"])
    add_op(g, "fc2", O.Dense(w2), ["r1"])
    add_op(g, "out", O.Output(scale=1.0), ["fc2"])
    verify(g)
    return g


def test_hand_worked_thresholds_and_weights():
    # Layer r1: input unit 1/255, max|W'| u = 0.5/255 -> theta = round(127 / (0.5/255)) = 64770
    # Layer out: spikes, max|W'| = 2.0 -> theta = round(127/2) = 64 (63.5 rounds to even); then
    # 2.0 * 64 = 128 > 127.5 needs one bit of exponent: weights 64 and -32, shifted left by 1
    g = normalized_mlp(np.array([[0.5, -0.25]]), np.array([0.1]), np.array([[2.0], [-1.0]]))
    assert quantize(g, CompileConfig(bits=8)) is True
    verify(g)
    r1, out = g.nodes["r1"]["op"], g.nodes["out"]["op"]
    assert r1.threshold == 64770 and r1.v_init == 32385 and r1.bias.tolist() == [6477]
    assert g.nodes["fc1"]["op"].weight_int.tolist() == [[127, -64]]  # 0.5/255*64770 = 127, -63.5 -> -64
    assert out.threshold == 64 and out.v_init == 0
    assert g.nodes["fc2"]["op"].weight_int.tolist() == [[64], [-32]] and g.nodes["fc2"]["op"].weight_exp == 1


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16])
def test_weights_stay_within_bits(bits):
    rng = np.random.default_rng(bits)
    g = normalized_mlp(rng.normal(size=(8, 5)), rng.normal(size=8), rng.normal(size=(3, 8)))
    quantize(g, CompileConfig(bits=bits, registers=Registers(threshold_bits=31)))
    wmax = 2 ** (bits - 1) - 1
    for n in ("fc1", "fc2"):
        w = np.abs(g.nodes[n]["op"].weight_int).max()
        # theta = round(wmax / m) may land just below wmax / m: the largest weight then loses one level
        assert wmax - 1 <= w <= wmax


def test_threshold_register_limits_precision_not_correctness():
    g = normalized_mlp(np.array([[0.01, 0.5]]), None, np.array([[1.0]]))
    quantize(g, CompileConfig(bits=8, registers=Registers(threshold_bits=10)))
    assert g.nodes["r1"]["op"].threshold == 1023
    assert g.nodes["fc1"]["op"].weight_int.tolist() == [[0, 2]]  # 0.01/255*1023 rounds to 0, 0.5/255*1023 to 2


def test_weights_that_all_quantize_to_zero_are_refused():
    g = normalized_mlp(np.array([[0.01, 0.02]]), None, np.array([[1.0]]))
    with pytest.raises(ValueError, match="layer 'r1': the weights of 'fc1' all quantize to zero at threshold 1023"):
        quantize(g, CompileConfig(bits=8, registers=Registers(threshold_bits=10)))


def test_weights_that_collapse_to_one_level_are_refused():
    # theta 1 and no room to shift: 300 and 400 both clip to 127
    g = normalized_mlp(np.array([[300.0 * 255, 400.0 * 255]]), None, np.array([[1.0]]))
    with pytest.raises(ValueError, match="layer 'r1': the weights of 'fc1' all quantize to the single level 127"):
        quantize(g, CompileConfig(bits=8, registers=Registers(weight_exp_max=0)))


def test_equal_float_weights_may_share_one_level():
    # a lowered average pool or an identity skip: one float value, one integer level, no error
    g = normalized_mlp(np.array([[0.5, 0.5]]), None, np.array([[1.0]]))
    quantize(g, CompileConfig(bits=8))
    assert g.nodes["fc1"]["op"].weight_int.tolist() == [[127, 127]]


@pytest.mark.parametrize("scale", [1e-20, 1e-300])
def test_a_bias_beyond_the_register_is_refused_not_wrapped(scale):
    # a tiny activation scale makes b' = b / scale huge: int64 used to wrap it silently
    g = normalized_mlp(np.array([[0.5, -0.25]]), np.array([0.1 / scale]), np.array([[2.0], [-1.0]]))
    with pytest.raises(ValueError, match=r"layer 'r1': bias .* exceeds the 24-bit current register \(max 8388607\)"):
        quantize(g, CompileConfig(bits=8))
    g = normalized_mlp(np.array([[0.5, -0.25]]), np.array([0.1 / scale]), np.array([[2.0], [-1.0]]))
    regs = Registers(bias_mantissa_bits=13, bias_exponent_bits=3)
    with pytest.raises(ValueError, match="layer 'r1': bias .* exceeds the 13-bit bias mantissa with 3-bit exponent"):
        quantize(g, CompileConfig(bits=8, registers=regs))


def test_threshold_stays_below_the_membrane():
    # a 31-bit threshold register on a 10-bit membrane: theta is capped at the membrane's 511
    g = normalized_mlp(np.array([[1.0, 2.0]]), None, np.array([[1.0]]))
    quantize(g, CompileConfig(bits=8, registers=Registers(threshold_bits=31, membrane_bits=10)))
    assert g.nodes["r1"]["op"].threshold == 511 and g.nodes["r1"]["op"].v_init == 255
    assert g.nodes["fc1"]["op"].weight_int.tolist() == [[2, 4]]  # 1/255*511, 2/255*511


def test_sums_beyond_the_exact_range_are_refused():
    # 16-bit weights << 31 over 4096 inputs of 255: far beyond 2**53 (the ranges used to wrap in int64)
    g = normalized_mlp(np.full((1, 4096), 1e14), None, np.array([[1.0]]))
    with pytest.raises(ValueError, match=r"layer 'r1': the worst-case sum of 'fc1' .* reaches 2\*\*53"):
        quantize(g, CompileConfig(bits=16))


def test_registers_are_recorded():
    g = normalized_mlp(np.array([[0.5, -0.25]]), None, np.array([[1.0]]))
    quantize(g, CompileConfig(bits=8, registers=Registers(weight_exp_max=7)))
    assert g.graph["snnc"]["registers"] == {"membrane_bits": 24, "current_bits": 24, "threshold_bits": 17,
                                            "bias_mantissa_bits": None, "bias_exponent_bits": 0, "weight_exp_max": 7}


@pytest.mark.parametrize("field, value", [("membrane_bits", 64), ("membrane_bits", 1), ("current_bits", 100),
                                          ("threshold_bits", 40), ("weight_exp_max", 40), ("bias_exponent_bits", 9),
                                          ("bias_mantissa_bits", 64), ("membrane_bits", 24.0), ("membrane_bits", True)])
def test_register_widths_are_bounded(field, value):
    with pytest.raises(ValueError, match=field):
        Registers(**{field: value})


def test_worst_case_ranges_are_recorded():
    g = normalized_mlp(np.array([[1.0, -1.0]]), None, np.array([[1.0], [-1.0]]))
    quantize(g, CompileConfig(bits=4, timesteps=10))
    r = g.graph["snnc"]["ranges"]
    # r1: theta = 7*255 = 1785, W_int = [7, -7] on inputs 0..255 -> current in [-1785, 1785]
    assert r["r1"]["current"] == [-1785, 1785]
    assert r["r1"]["membrane"] == [892 - 10 * 1785, 1784 + 1785]
    assert r["r1"]["current_fits"] and not r["r1"]["membrane_saturates"]


def test_bias_register_rounds_to_mantissa_and_exponent():
    regs = Registers(bias_mantissa_bits=4, bias_exponent_bits=2)  # mantissa in [-7, 7], shift 0..3
    out = regs.round_bias(np.array([5, 7, 15, -20, 56]), "l")
    assert out.tolist() == [5, 7, 16, -20, 56]
    with pytest.raises(ValueError, match="exceeds"):
        regs.round_bias(np.array([57]), "l")


def test_needs_normalized_graph():
    g = normalized_mlp(np.ones((1, 1)), None, np.ones((1, 1)))
    g.graph["snnc"]["normalized"] = False
    with pytest.raises(ValueError, match="normalis"):
        quantize(g, CompileConfig())


def residual_join():
    """A layer fed by a small-weight connection and a big identity skip (normalised units)."""
    g = new_graph()
    g.graph["snnc"] = {"normalized": True}
    add_op(g, "in", O.Input((2,), scale=1.0))
    add_op(g, "fc1", O.Dense(np.eye(2) * 255), ["in"])
    add_op(g, "r1", O.IF(scale=1.0), ["fc1"])
    add_op(g, "small", O.Dense(np.array([[0.01, -0.02], [0.015, 0.0]])), ["r1"])
    add_op(g, "skip", O.Dense(np.eye(2) * 0.8), ["r1"])
    add_op(g, "add", O.Add(), ["small", "skip"])
    add_op(g, "r2", O.IF(scale=1.0), ["add"])
    add_op(g, "fc3", O.Dense(np.ones((1, 2))), ["r2"])
    add_op(g, "out", O.Output(scale=1.0), ["fc3"])
    verify(g)
    return g


def test_residual_join_keeps_weight_bits_with_exponents():
    # Two connections into one layer: a small-weight conv path and a big identity skip. The
    # small one sets theta and keeps all 8 bits; the skip is shifted left instead.
    g = residual_join()
    quantize(g, CompileConfig(bits=8))
    small, skip, r2 = (g.nodes[n]["op"] for n in ("small", "skip", "r2"))
    assert r2.threshold == 6350  # round(127 / 0.02)
    assert np.abs(small.weight_int).max() == 127 and small.weight_exp == 0
    # 0.8 * 6350 = 5080 = 79.4 * 2**6 -> weight 79, exponent 6: 5056, within 0.5% of 5080
    assert skip.weight_int.tolist() == [[79, 0], [0, 79]] and skip.weight_exp == 6


def test_weight_exponent_register_caps_the_shift():
    # same join as above on a register with at most 3 bits of shift: theta shrinks so the skip fits
    g = residual_join()
    quantize(g, CompileConfig(bits=8, registers=Registers(weight_exp_max=3)))
    skip, r2 = g.nodes["skip"]["op"], g.nodes["r2"]["op"]
    assert skip.weight_exp == 3 and np.abs(skip.weight_int).max() <= 127
    assert r2.threshold == int(127.5 * 8 / 0.8)  # 1275


# ---- the current register's memory (decay_u < 4096) ---------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from snn_compiler.ir import neuron as N  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(decay_u=st.integers(0, 4096), steps=st.integers(1, 300), lo=st.integers(-(1 << 20), 0),
       hi=st.integers(0, 1 << 20), seed=st.integers(0, 2**31))
def test_current_range_bounds_the_current_register(decay_u, steps, lo, hi, seed):
    """The bound holds for the worst input sequences (hi every step, lo every step) and random ones
    in [lo, hi], stepped by the one neuron step; once u has settled at its fixed point the worst
    input reaches it (to within the truncations of ``steps`` products and 0.1%)."""
    b_lo, b_hi = N.current_range(lo, hi, decay_u, steps)
    rng = np.random.default_rng(seed)
    runs = np.stack([np.full(steps, hi), np.full(steps, lo), rng.integers(lo, hi + 1, steps)])
    p = N.IntParams.make(1 << 62, 0, None, decay_u, (1 << 62) - 1, "subtract")
    u, v = np.zeros(3, np.int64), np.zeros(3, np.int64)
    top = bottom = 0
    for t in range(steps):
        N.int_step(v, u if decay_u != N.DECAY_ONE else None, runs[:, t].copy(), p, spiking=False)
        now = u if decay_u != N.DECAY_ONE else runs[:, t]
        top, bottom = max(top, int(now.max())), min(bottom, int(now.min()))
        v[:] = 0
    assert b_lo <= bottom and top <= b_hi
    if decay_u == N.DECAY_ONE or steps * decay_u >= 8 * N.DECAY_ONE:  # at the fixed point: (1 - d/4096)**steps < e**-8
        assert b_hi - top <= steps + b_hi // 1000 and bottom - b_lo <= steps - b_lo // 1000


def test_quantize_records_what_current_memory_accumulates():
    """The issue's case: decay_u = 41 keeps 99% of the current each step. The recorded current range
    must hold what u reaches in the run (it was the one-step range, 27x too small), and a 24-bit
    current register must be reported as too narrow."""
    rng = np.random.default_rng(3)
    g = normalized_mlp(rng.random((32, 64)) * 0.05, None, rng.normal(size=(10, 32)))
    g.nodes["r1"]["op"].decay_u = 41
    cfg = CompileConfig(bits=8, timesteps=32)
    quantize(g, cfg)
    rec = g.graph["snnc"]["ranges"]["r1"]
    from snn_compiler.sim.emulator import _run_batch
    from snn_compiler.sim.plan import Plan
    x = np.ones((4, 64))
    plan = Plan(g, "int", "constant")
    neurons, _ = _run_batch(plan, x, range(4), 32, "constant", 0, "membrane")
    u = neurons["r1"].u
    assert rec["current"][0] <= u.min() and u.max() <= rec["current"][1]
    assert u.max() > 20 * g.nodes["fc1"]["op"].weight_int.sum(axis=1).max() * 255 / 2  # it did accumulate
    assert rec["current_fits"] is (max(-rec["current"][0], rec["current"][1]) <= cfg.registers.current_max)


def _trained_cuba_mlp(input_bits, decay_u=41, beta=0.95):
    """A trained CUBA layer as a Norse-style NIR graph imports (r = w_in = 1, dt = 1e-3): the gains
    dt/tau_syn = 41/4096 and dt/tau_mem = 0.05 are folded into its weights, so they are ~1000 times
    smaller than its threshold (the current and the membrane sum ~1000 steps of input)."""
    rng = np.random.default_rng(5)
    g = normalized_mlp(rng.normal(0, 0.25, (32, 64)) * (decay_u / 4096) * (1 - beta), None,
                       rng.normal(size=(10, 32)), levels_bits=input_bits)
    r1 = g.nodes["r1"]["op"]
    r1.decay_u, r1.beta, r1.spike_value = decay_u, np.array([beta]), 1.0
    return g


def test_a_cuba_layer_below_the_threshold_registers_resolution_is_refused_with_the_reason():
    """The issue's 'weights quantize to zero at threshold 131071': with 8-bit graded input one input
    unit is worth ~1e-6 thresholds, below 1/131071 however the scale is chosen (W/theta is fixed
    by the trained network); the refusal names the register, the memory's gain and the remedy."""
    g = _trained_cuba_mlp(8)
    with pytest.raises(ValueError, match=r"layer 'r1': the weights of 'fc1' all quantize to zero at threshold 131071, "
                       r"the largest the 17-bit threshold register holds: one input unit is worth at most [0-9.e-]+ "
                       r"thresholds, below one integer unit \(1/131071\) \(its current memory \(decay_u 41\) and leak "
                       r"sum up to 1996 steps of input.*use fewer --input-bits \(1 for spike input"):
        quantize(g, CompileConfig(bits=8))


def test_a_cuba_layer_on_spike_input_quantizes_and_records_its_decays():
    g = _trained_cuba_mlp(1)
    quantize(g, CompileConfig(bits=8, timesteps=64))
    r1, fc1 = g.nodes["r1"]["op"], g.nodes["fc1"]["op"]
    assert r1.threshold == 131071 and r1.decay_u == 41 and r1.decay_v.tolist() == [205]  # 0.05 * 4096 = 204.8
    assert 10 <= np.abs(fc1.weight_int).max() <= 127 and len(np.unique(fc1.weight_int)) > 10
    rec = g.graph["snnc"]["decays"]["r1"]
    assert rec["decay"] == pytest.approx(0.05) and rec["rounded"] == 205 / 4096
    assert rec["error"] == pytest.approx(0.2 / 204.8)
    lo, hi = g.graph["snnc"]["ranges"]["r1"]["current"]
    step_hi = int(np.maximum(fc1.weight_int, 0).sum(axis=1).max())
    assert hi >= 64 * step_hi * 0.99 - 1  # 64 steps < 4096/41: the current can sum every step's input


@pytest.mark.parametrize("beta, warns", [(0.9, False), (0.99995, True)])
def test_a_membrane_decay_that_rounding_moves_is_warned_about(beta, warns, recwarn):
    g = normalized_mlp(np.array([[0.5, -0.25]]), None, np.array([[2.0], [-1.0]]))
    g.nodes["r1"]["op"].beta, g.nodes["r1"]["op"].spike_value = np.array([beta]), 1.0
    quantize(g, CompileConfig(bits=8))
    msgs = [str(w.message) for w in recwarn if "membrane decay" in str(w.message)]
    if warns:  # 0.00005 * 4096 = 0.2 rounds to 0: no leak at all
        assert len(msgs) == 1 and msgs[0].startswith("layer 'r1': its membrane decay 1 - beta = 5e-05 rounds to 0/4096")
        assert "relative error 100.00%" in msgs[0]
    else:
        assert msgs == []
    assert g.graph["snnc"]["decays"]["r1"]["rounded"] == (0 if warns else 410 / 4096)


@pytest.mark.parametrize("current_bits", [24, 32])
def test_a_current_memory_lowers_theta_until_its_register_holds_the_sum(current_bits):
    """decay_u = 41 over 32 steps sums up to 32 steps of input: at the theta the weights alone would
    pick, the worst case exceeds 24 bits, so theta comes down (fewer weight levels, no wrap); a
    32-bit current register keeps it."""
    rng = np.random.default_rng(3)
    w1 = rng.random((32, 64)) * 0.1
    plain = normalized_mlp(w1, None, rng.normal(size=(10, 32)))
    regs = Registers(current_bits=current_bits)
    quantize(plain, CompileConfig(bits=8, timesteps=32, registers=regs))
    g = normalized_mlp(w1, None, rng.normal(size=(10, 32)))
    g.nodes["r1"]["op"].decay_u = 41
    quantize(g, CompileConfig(bits=8, timesteps=32, registers=regs))
    rec = g.graph["snnc"]["ranges"]["r1"]
    assert rec["current_fits"] and max(-rec["current"][0], rec["current"][1]) <= regs.current_max
    theta, theta0 = g.nodes["r1"]["op"].threshold, plain.nodes["r1"]["op"].threshold
    if current_bits == 24:
        assert theta < theta0 and rec["current"][1] > regs.current_max * 0.9  # as high as fits
        assert np.abs(g.nodes["fc1"]["op"].weight_int).max() >= 10
    else:
        assert theta == theta0
