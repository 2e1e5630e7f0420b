"""The integer IF semantics of DESIGN.md, checked against values worked out by hand."""
import numpy as np
import pytest

from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.encode import input_steps, quantize_input
from snn_compiler.ir import ops as O

from builders import int_chain


def one_neuron(w, theta, bias=0, v0=0, reset="subtract", membrane_bits=24):
    # input (1,) -> IF (1 neuron, weight w) -> Output (weight 1) read as spike counts
    return int_chain([np.array([[w]]), np.array([[1]])], [theta, 1], biases=[np.array([bias]), np.array([0])],
                     v_inits=[v0, 0], reset=reset, membrane_bits=membrane_bits)


def test_subtractive_reset_by_hand():
    # x_q = 255 (x = 1.0), w = 1 -> I = 255 per step, theta = 100, v0 = 50:
    # v: 50+255=305 -> spike, 205 -> spike, 105 -> spike, 5 ; then 260 -> s, 160 -> s, 60 ; 315 -> s ...
    g = one_neuron(1, 100, v0=50)
    r = simulate(g, np.ones((1, 1)), timesteps=3, readout="count", record=True)
    # one spike per step at most: 3 spikes in 3 steps, the rest stays in the membrane
    assert r.counts["if0"].tolist() == [[3]]
    r = simulate(g, np.full((1, 1), 40 / 255), timesteps=10, readout="count", record=True)
    # I = 40, v0 = 50: v = 90, 130->s(30), 70, 110->s(10), 50, 90, 130->s(30), 70, 110->s(10), 50 -> 4 spikes
    assert r.counts["if0"].tolist() == [[4]]


def test_reset_to_zero_by_hand():
    g = one_neuron(1, 100, v0=50, reset="zero")
    r = simulate(g, np.full((1, 1), 40 / 255), timesteps=10, readout="count", record=True)
    # v = 90, 130->s(0), 40, 80, 120->s(0), 40, 80, 120->s(0), 40, 80 -> 3 spikes
    assert r.counts["if0"].tolist() == [[3]]


def test_membrane_readout_accumulates_current_with_bias():
    # Output gets w=1 from the IF's spikes plus bias 7 each step; membrane read-out = sum of I
    g = int_chain([np.array([[1]]), np.array([[3]])], [100, 1], biases=[np.array([0]), np.array([7])], v_inits=[50, 0])
    r = simulate(g, np.full((1, 1), 40 / 255), timesteps=10, readout="membrane")
    assert r.scores.tolist() == [[4 * 3 + 10 * 7]]


def test_membrane_saturates_instead_of_wrapping():
    # 8-bit membrane: |v| <= 127. Input 255 per step on threshold 1000 never fires; v pins at 127
    g = one_neuron(1, 1000, membrane_bits=8)
    r = simulate(g, np.ones((1, 1)), timesteps=5, readout="count", record=True)
    assert r.counts["if0"].tolist() == [[0]]
    g = int_chain([np.array([[-1]]), np.array([[1]])], [1, 1], membrane_bits=8)
    r = simulate(g, np.ones((2, 1)), timesteps=4, readout="membrane")
    assert r.scores.tolist() == [[0], [0]]  # the IF never fires, so the output sums nothing


def test_negative_current_accumulates_below_zero():
    # I = -30 for 3 steps then the membrane must climb back before spiking (no clamp at 0)
    g = int_chain([np.array([[-30], [60]]), np.array([[1, 0], [0, 1]])], [100, 1])
    r = simulate(g, np.ones((1, 1)) / 255, timesteps=4, readout="count", record=True)
    assert r.counts["if0"].tolist() == [[0, 2]]  # 60,120->s(20),80,140->s(40)


def test_count_ties_break_on_membrane():
    # both outputs fire equally often; the second holds more charge at the end
    # IF fires every step; outputs get 2 and 3 per step on threshold 8: v 2,4,6,8->s(0) and
    # 3,6,9->s(1),4: one spike each, final membranes 0 and 4
    g = int_chain([np.array([[10]]), np.array([[2], [3]])], [10, 8])
    r = simulate(g, np.ones((1, 1)) / 255, timesteps=4, readout="count")
    assert r.scores.tolist() == [[1.0, 1.0]]
    assert r.predictions.tolist() == [1]


def test_poisson_is_seeded_and_batch_independent():
    g = one_neuron(1, 200, v0=100)
    x = np.random.default_rng(0).random((9, 1))
    a = simulate(g, x, timesteps=20, encoding="poisson", seed=5, readout="count", record=True, batch_size=4)
    b = simulate(g, x, timesteps=20, encoding="poisson", seed=5, readout="count", record=True, batch_size=9)
    c = simulate(g, x, timesteps=20, encoding="poisson", seed=6, readout="count", record=True)
    assert np.array_equal(a.counts["if0"], b.counts["if0"])
    assert not np.array_equal(a.counts["if0"], c.counts["if0"])


def test_poisson_spike_values_and_rate():
    inp = O.Input((1000,), scale=1.0, bits=8)
    x = np.full((1, 1000), 0.25)
    steps = list(input_steps(inp, x, 200, "poisson", seed=1))
    vals = np.stack(steps)
    assert set(np.unique(vals)) <= {0, 255}
    assert abs((vals > 0).mean() - quantize_input(inp, x)[0, 0] / 255) < 0.01


def test_integer_mode_needs_quantized_graph():
    g = one_neuron(1, 10)
    g.graph["snnc"]["quantized"] = False
    with pytest.raises(ValueError, match="quantized"):
        simulate(g, np.ones((1, 1)), timesteps=2)


def test_python_api_refuses_values_beyond_float32_like_the_data_files():
    """1.7e308 is finite in float64 but inf in the float32 ANN reading (NaN scores): simulate and
    run_ann refuse it from Python too, by the data files' rule (data.check_values)."""
    from snn_compiler.mapping import synthetic as S
    from snn_compiler.sim.emulator import run_ann, simulate
    g = S.build((10,), [("dense", 4), ("dense", 2)], bits=2, input_bits=1)
    x = np.ones((2, 10))
    x[1, 3] = 1.7e308
    for run in (lambda: simulate(g, x, timesteps=4), lambda: run_ann(g, x)):
        with pytest.raises(ValueError, match=r"beyond float32's range.*sample 1"):
            run()
