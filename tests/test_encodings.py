"""The input encodings of snn_compiler.sim.encode (one table, every engine): traces worked out by
hand from each encoder's equations, chunk and batch independence, the integer bound the engines'
exactness rests on, float/int agreement, engines (numpy, numba, Lava) identical, and accuracy."""
import copy

import numpy as np
import pytest

from snn_compiler.backends import lava
from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import ops as O
from snn_compiler.ir import op_of
from snn_compiler.sim import encode, fast
from snn_compiler.sim.emulator import run_ann, simulate
from snn_compiler.sim.encode import ENCODINGS, input_chunks, input_gain, input_steps

from builders import int_chain
from lava_nets import compiled

NEW = ("pso", "burst", "ch")
U8 = O.Input((3,), scale=1.0, bits=8)                 # L = 255, k = 8
S4 = O.Input((3,), scale=1.0, bits=4, signed=True)    # L = 7, k = 3


def trace(inp, x, T, encoding, mode="int", chunk=None, seed=0, ids=None):
    """(T, B, *shape) input of ``x`` (B, *shape)."""
    parts = list(input_chunks(inp, np.asarray(x, float), T, encoding, seed, ids, mode, chunk))
    return np.concatenate(parts) if parts else np.zeros((0,) + np.shape(x))


def spikes_at(steps, T):
    out = np.zeros(T, np.int64)
    out[list(steps)] = 1
    return out


# ---- the table ----------------------------------------------------------------------------------

def test_table_is_names_and_encoders_with_equations():
    assert tuple(ENCODINGS) == ("constant", "poisson", "pso", "burst", "ch")
    assert "pso" in ENCODINGS and "PSO" not in ENCODINGS and ["pso"] not in ENCODINGS
    assert str(ENCODINGS) == repr(ENCODINGS) == "('constant', 'poisson', 'pso', 'burst', 'ch')"
    for name, enc in ENCODINGS.items():
        assert callable(enc) and "Mean per step" in enc.__doc__, name
    with pytest.raises(ValueError, match=r"encoding must be one of \('constant', 'poisson', 'pso', 'burst', 'ch'\)"):
        next(input_chunks(U8, np.zeros((1, 3)), 4, "rate"))
    with pytest.raises(ValueError, match="encoding must be one of"):
        next(input_steps(U8, np.zeros((1, 3)), 4, ["pso"]))
    with pytest.raises(ValueError, match="encoding must be one of"):
        simulate(int_chain([np.eye(3, dtype=int)], [1]), np.zeros((1, 3)), encoding="ib")


def test_table_attributes():
    assert [e for e in ENCODINGS if encode.is_static(e)] == ["constant"]
    assert [e for e in ENCODINGS if encode.is_seeded(e)] == ["poisson"]
    with pytest.raises(ValueError, match="encoding must be one of"):
        encode.is_static("const")


def test_input_gain():
    assert [input_gain(e, U8) for e in ENCODINGS] == [1, 1, 8, 1, 1]
    assert input_gain("pso", S4) == 3 and input_gain("pso", O.Input((1,), 1.0, bits=1)) == 1


# ---- hand-computed traces (integer mode) --------------------------------------------------------

def test_constant_and_poisson_by_hand():
    x = [[1.0, 40 / 255, 0.0]]
    assert trace(U8, x, 3, "constant")[:, 0].tolist() == [[255, 40, 0]] * 3
    # poisson: 255 * [u < x_q / 255], u the first float32 draws of default_rng([seed, sample])
    u = np.random.default_rng([7, 0]).random((5, 3), dtype=np.float32)
    want = 255 * (u < np.array([255, 40, 0], np.float32) / np.float32(255))
    assert np.array_equal(trace(U8, x, 5, "poisson", seed=7)[:, 0], want)


def test_pso_by_hand():
    # k = 8 phases, weights 128, 64, ..., 1 (= 2**8 * 2**-(1 + t mod 8)), MSB first, then again
    x = [[1.0, 40 / 255, 200 / 255]]
    got = trace(U8, x, 16, "pso")[:, 0].T
    assert got[0].tolist() == [128, 64, 32, 16, 8, 4, 2, 1] * 2
    assert got[1].tolist() == [0, 0, 32, 0, 8, 0, 0, 0] * 2          # 40 = 0b00101000
    assert got[2].tolist() == [128, 64, 0, 0, 8, 0, 0, 0] * 2        # 200 = 0b11001000
    assert got.reshape(3, 2, 8).sum(2).tolist() == [[255, 255], [40, 40], [200, 200]]  # x_q per period
    # signed 4-bit: L = 7, k = 3 magnitude bits, sign carried like poisson's
    got = trace(S4, [[-1.0, 3 / 7, -5 / 7]], 6, "pso")[:, 0].T
    assert got.tolist() == [[-4, -2, -1] * 2, [0, 2, 1] * 2, [-4, 0, -1] * 2]
    # a cut period delivers its high bits only
    assert trace(U8, x, 3, "pso")[:, 0, 2].tolist() == [128, 64, 0]


def test_burst_by_hand():
    # IB, n = 3, L = 255: v starts at 127; v += a; r == 0 and v >= 255 -> burst of m (3 first, then 1), v -= m * 255
    # a = 255: v 382 -> burst (v -383), -128, 127, 382 -> spike (127), ... : spikes every step
    # a = 200: 327 -> burst (-438), -238, -38, 162, 362 -> (107), 307 -> (52), 252, 452 -> (197),
    #          397 -> (142), 342 -> (87), 287 -> (32), 232
    # a = 0: never
    got = trace(U8, [[1.0, 200 / 255, 0.0]], 12, "burst")[:, 0].T
    assert got.tolist() == [[255] * 12, [255, 255, 255, 0, 255, 255, 0, 255, 255, 255, 255, 0], [0] * 12]
    # a = 40: 167, 207, 247, 287 -> burst at t=3 (v -478), then -478 + 40 (t - 3) until 282 at t=22 -> spike (27),
    #         267 at t=28 -> spike (12), 292 at t=35 -> spike (37)
    got = trace(U8, [[40 / 255]], 36, "burst")[:, 0, 0]
    assert got.tolist() == (255 * spikes_at([3, 4, 5, 22, 28, 35], 36)).tolist()
    # signed 4-bit, L = 7, v starts at 3:
    # a = 7: 10 -> burst (-11), -4, 3, 10 -> (3), 10 -> (3), ... every step, value -7
    # a = 3: 6, 9 -> burst at t=1 (-12), -9, -6, -3, 0, 3, 6, 9 -> t=8 (2), 5, 8 -> t=10 (1), 4
    # a = 5: 8 -> burst (-13), -8, -3, 2, 7 -> t=4 (0), 5, 10 -> t=6 (3), 8 -> t=7 (1), 6, 11 -> t=9 (4),
    #        9 -> t=10 (2), 7 -> t=11 (0)
    got = trace(S4, [[-1.0, 3 / 7, -5 / 7]], 12, "burst")[:, 0].T
    assert got.tolist() == [[-7] * 12, (7 * spikes_at([1, 2, 3, 8, 10], 12)).tolist(),
                            (-7 * spikes_at([0, 1, 2, 4, 6, 7, 9, 10, 11], 12)).tolist()]


def test_chattering_by_hand():
    # CH, n = 3, L = 255: threshold 765, v starts at 382; every crossing fires 3 spikes, v -= 765
    # a = 255: 637, 892 -> burst at t=1 (127), 382, 637, 892 -> t=4 (127), ... : spikes from t=1 on
    # a = 200: 582, 782 -> t=1 (17), 217, 417, 617, 817 -> t=5 (52), 252, 452, 652, 852 -> t=9 (87)
    # a = 40: 382 + 40 (t + 1) reaches 782 at t=9 (17), then 777 at t=28 (12)
    got = trace(U8, [[1.0, 200 / 255, 40 / 255]], 32, "ch")[:, 0].T
    assert got[0].tolist() == [0] + [255] * 31
    assert got[1, :12].tolist() == [0, 255, 255, 255] * 3
    assert got[2].tolist() == (255 * spikes_at([9, 10, 11, 28, 29, 30], 32)).tolist()
    # signed 4-bit, L = 7: threshold 21, v starts at 10
    # a = 7: 17, 24 -> t=1 (3), 10, 17, 24 -> t=4 ... ; a = 3: 13, 16, 19, 22 -> t=3 (1), 4, ..., 22 -> t=10 (1)
    got = trace(S4, [[-1.0, 3 / 7]], 12, "ch")[:, 0].T
    assert got.tolist() == [[0] + [-7] * 11, (7 * spikes_at([3, 4, 5, 10, 11], 12)).tolist()]


# ---- properties every encoding has --------------------------------------------------------------

INPUTS = [O.Input((2, 3), scale=2.0, bits=8), O.Input((2, 3), scale=0.5, bits=4, signed=True),
          O.Input((2, 3), scale=1.0, bits=1), O.Input((2, 3), scale=1.0, bits=2, signed=True)]


def data(inp, n=5, seed=0):
    lo = -1.3 if inp.signed else -0.3  # beyond the range too: clipped
    return np.random.default_rng(seed).uniform(lo, 1.3, (n,) + inp.shape) * inp.scale


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("inp", INPUTS, ids=["u8", "s4", "u1", "s2"])
def test_chunking_batching_and_prefixes_do_not_matter(inp, encoding):
    x, T = data(inp), 17
    for mode in ("int", "float"):
        full = trace(inp, x, T, encoding, mode, chunk=T, seed=3)
        assert full.shape == (T, 5, 2, 3)
        for chunk in (1, 3, None):
            assert np.array_equal(trace(inp, x, T, encoding, mode, chunk=chunk, seed=3), full), (mode, chunk)
        assert np.array_equal(np.stack(list(input_steps(inp, x, T, encoding, 3, mode=mode))), full)
        for t in (1, 5):  # a shorter run is a prefix of a longer one
            assert np.array_equal(trace(inp, x, t, encoding, mode, seed=3), full[:t])
        for i in (0, 3):  # a sample alone (its own index) equals its row in the batch
            assert np.array_equal(trace(inp, x[i:i + 1], T, encoding, mode, seed=3, ids=[i])[:, 0], full[:, i])


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("inp", INPUTS, ids=["u8", "s4", "u1", "s2"])
def test_integer_values_within_levels(inp, encoding):
    x, T, L = data(inp, 9, seed=1), 40, inp.levels
    got = trace(inp, x, T, encoding)
    assert got.dtype == np.int64 and np.abs(got).max() <= L
    xq = encode.quantize_input(inp, x)
    assert np.all((got == 0) | (np.sign(got) == np.sign(xq)))  # the sign of the input, never the other
    narrow = np.concatenate(list(input_chunks(inp, x, T, encoding, 0, None, "int", 7, np.int32)))
    assert narrow.dtype == np.int32 and np.array_equal(narrow, got)
    if encoding in ("poisson", "burst", "ch"):
        assert set(np.unique(np.abs(got))) <= {0, L}  # spikes: 0 or L, exact on TrueNorth too
    if encoding == "pso":
        a = np.abs(got[got != 0])
        assert np.all(a & (a - 1) == 0)  # powers of two


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_float_mode_is_the_integer_input_over_levels(encoding):
    """On inputs that quantize exactly the float input is the integer one divided by L, step by
    step; off the grid the float neurons stay within a burst of the integer ones."""
    inp = O.Input((40,), scale=1.0, bits=8, signed=True)
    L = inp.levels
    q = np.arange(-L, L + 1, 13)
    q = q[(q / L) * L == q][None, :40]   # x / scale * L exactly an integer in float64
    i, f = trace(inp, q / L, 64, encoding), trace(inp, q / L, 64, encoding, "float")
    gain = encode.input_gain(encoding, inp)  # pso's float input carries its gain (integer: the weights do)
    assert f.dtype == np.float64 and np.abs(f).max() <= gain + 1e-12
    assert np.array_equal(f * L, i.astype(float)) if encoding != "pso" else np.allclose(f * L / gain, i, rtol=0, atol=1e-9)
    x = np.random.default_rng(2).uniform(-1, 1, (8, 40))
    i, f = trace(inp, x, 64, encoding), trace(inp, x, 64, encoding, "float")
    if encoding in ("burst", "ch"):
        assert np.abs(i.sum(0) / L - f.sum(0)).max() <= encode.BURST_SPIKES


def test_mean_current_per_step():
    """constant, burst, ch deliver x_q per step (charge conserved; counts within a burst), pso x_q / k
    (exactly x_q per period), poisson x_q in expectation."""
    inp = O.Input((64,), scale=1.0, bits=8)
    x = np.linspace(0, 1, 64)[None]
    xq = encode.quantize_input(inp, x)[0]
    T, n = 800, encode.BURST_SPIKES
    for e in ("constant", "burst", "ch"):
        total = trace(inp, x, T, e)[:, 0].sum(0)
        assert np.abs(total - xq * T).max() <= n * 255, e
    assert np.array_equal(trace(inp, x, T, "pso")[:, 0].sum(0), xq * T // 8)
    total = trace(inp, np.repeat(x, 50, 0), T, "poisson").sum(0).mean(0)
    assert np.abs(total / T - xq).max() < 6  # 50 x 800 Bernoulli draws: 6 is > 4 sigma


def burst_neuron(a, L, T, theta, first, later, v0):
    """The docstrings' burst neuron, one scalar step at a time: (spikes, membrane after each step)."""
    v, r, m, s, vs = v0, 0, first, [], []
    for _ in range(T):
        v += a
        if r == 0 and v >= theta:
            r, v, m = m, v - m * L, later
        s.append(int(r > 0))
        r -= r > 0
        vs.append(v)
    return s, vs


def test_burst_neurons_follow_their_equations_and_hold_bounded_charge():
    """Every drive 0..L against the scalar model of the docstrings; the stated invariants: IB's
    membrane in [-(n-1) L, L), CH's in [0, n L) (nothing lost), CH bursts n spikes long."""
    inp = O.Input((256,), scale=1.0, bits=8)
    L, n, T = 255, encode.BURST_SPIKES, 120
    x = (np.arange(256) / 255)[None]
    assert np.array_equal(encode.quantize_input(inp, x)[0], np.arange(256))
    for e, params, lo, hi in (("burst", (L, n, 1, L // 2), -(n - 1) * L, L), ("ch", (n * L, n, n, n * L // 2), 0, n * L)):
        got = trace(inp, x, T, e)[:, 0] // L
        for a in range(256):
            s, vs = burst_neuron(a, L, T, *params)
            assert got[:, a].tolist() == s, (e, a)
            assert lo <= min(vs) and max(vs) < hi, (e, a)
            if e == "ch":
                starts = [t for t in range(T) if s[t] and (t == 0 or not s[t - 1])]
                assert all(sum(s[t:t + n]) == min(n, T - t) for t in starts), a


# ---- engines ------------------------------------------------------------------------------------

def small_chain():
    """in(3) -> IF(4) -> Output(2), unsigned 8-bit input, biases on both layers."""
    w1 = np.array([[40, -10, 25], [5, 30, -20], [12, 12, 12], [-15, 40, 8]])
    w2 = np.array([[3, -2, 4, 1], [-1, 5, 2, 3]])
    return int_chain([w1, w2], [9000, 40], biases=[np.array([300, -200, 0, 150]), np.array([5, -3])],
                     v_inits=[4500, 0])


@pytest.mark.skipif(not fast.available(), reason="numba is not installed")
@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("net", ["chain", "cnn", "resnet"])
def test_numba_equals_numpy(net, encoding):
    if net == "chain":
        q, x = small_chain(), np.random.default_rng(4).uniform(0, 1.2, (7, 3))
    else:
        q, x = compiled(net)
    q = for_encoding(q, encoding)
    for readout in ("count", "membrane"):
        kw = dict(timesteps=19, encoding=encoding, seed=4, readout=readout, record=True)
        a = simulate(q, x, engine="numpy", batch_size=3, **kw)
        b = simulate(q, x, engine="numba", **kw)
        assert np.array_equal(a.scores, b.scores) and np.array_equal(a.predictions, b.predictions)
        assert all(np.array_equal(a.counts[n], b.counts[n]) for n in a.counts)
        assert sum(int(c.sum()) for c in a.counts.values()) > 0


@pytest.mark.lava
@pytest.mark.skipif(not lava.available(), reason="Lava backend needs .venv-lava (Python 3.10, lava-nc 0.10.0)")
@pytest.mark.parametrize("encoding", NEW)
def test_lava_equals_reference(encoding):
    q, x = compiled("cnn")  # signed input, conv + pool + dense
    q = for_encoding(q, encoding)
    ref = simulate(q, x, timesteps=12, readout="count", encoding=encoding, record=True)
    got = lava.run(q, x, timesteps=12, readout="count", encoding=encoding, record=True)
    assert np.array_equal(ref.scores, got.scores)
    assert all(np.array_equal(ref.counts[n], got.counts[n]) for n in ref.counts)


# ---- accuracy -----------------------------------------------------------------------------------

def for_encoding(q, encoding):
    """``q`` carrying ``encoding``'s input gain (as ``compile --encoding`` records it), applied as
    weight exponents of the Input's connections when it is a power of two (engine comparisons
    need only the record)."""
    q = copy.deepcopy(q)
    inp = next(n for n in q if isinstance(op_of(q, n), O.Input))
    gain = input_gain(encoding, op_of(q, inp))
    q.graph["snnc"]["input_gain"] = gain
    if gain & (gain - 1) == 0:
        for s in q.successors(inp):
            op_of(q, s).weight_exp += gain.bit_length() - 1
    return q


def argmax_net(n=8, bias=-0.2):
    """Compiled by the real pipeline: hidden_i = ReLU(x_i - 0.2), out = hidden: the ANN's label
    is argmax(x) (where the winner passes 0.2)."""
    g = new_graph()
    x = add_op(g, "input", O.Input((n,)))
    h = add_op(g, "relu", O.IF(), [add_op(g, "fc1", O.Dense(np.eye(n), bias=np.full(n, bias)), [x])])
    add_op(g, "output", O.Output(), [add_op(g, "fc2", O.Dense(np.eye(n)), [h])])
    verify(g)
    rng = np.random.default_rng(0)
    return compile_model(g, CompileConfig(bits=8, calibration=rng.uniform(0, 1, (64, n))))


def test_accuracy_sanity_on_a_compiled_net():
    """Accuracy on argmax(x) at T = 32 and 64: constant, poisson, burst and ch get it right;
    pso with its input gain of k = 8 in the weights (without, the first layer's drive would be
    1/8 of what it was normalised for: no spikes at all; the engines refuse that mismatch)."""
    q = argmax_net()
    rng = np.random.default_rng(6)
    y = rng.integers(0, 8, 400)
    x = rng.uniform(0, 0.4, (400, 8))
    x[np.arange(400), y] = rng.uniform(0.45, 1.0, 400)
    assert (run_ann(q, x).argmax(1) == y).all()
    for T in (32, 64):
        acc = {e: float((simulate(for_encoding(q, e), x, timesteps=T, encoding=e, seed=1).predictions == y).mean())
               for e in ENCODINGS}
        assert min(acc["constant"], acc["burst"], acc["ch"], acc["pso"]) >= 0.97 and acc["poisson"] >= 0.9, (T, acc)


@pytest.mark.parametrize("encoding", NEW)
def test_encoder_memory_does_not_grow_with_timesteps(encoding):
    import tracemalloc
    inp = O.Input((784,), scale=1.0, bits=8)
    x = np.random.default_rng(0).random((16, 784))

    def peak_mib(T):
        tracemalloc.start()
        try:
            for mode in ("int", "float"):
                for _ in input_steps(inp, x, T, encoding, mode=mode):
                    pass
            return tracemalloc.get_traced_memory()[1] / 2 ** 20
        finally:
            tracemalloc.stop()
    mid, big = peak_mib(1000), peak_mib(4000)
    assert big - mid < 8, (mid, big)


def test_pso_compiled_for_its_gain_keeps_accuracy_and_mismatches_are_refused():
    """--encoding pso at compile puts the gain k into the first weights; running a net with an
    encoding whose gain its weights do not carry is refused, not silently wrong."""
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from snn_compiler.ir import add_op, new_graph
    from snn_compiler.ir import ops as O
    from snn_compiler.sim.emulator import simulate
    rng = np.random.default_rng(0)
    g = new_graph()
    x_node = add_op(g, "in", O.Input((6,)))
    h = add_op(g, "h", O.IF(), [add_op(g, "fc1", O.Dense(rng.normal(0, 0.6, (12, 6)), bias=np.zeros(12)), [x_node])])
    add_op(g, "out", O.Output(), [add_op(g, "fc2", O.Dense(rng.normal(0, 0.6, (3, 12)), bias=np.zeros(3)), [h])])
    x = rng.random((200, 6))
    plain = compile_model(g, CompileConfig(calibration=x, timesteps=64))
    pso = compile_model(g, CompileConfig(calibration=x, timesteps=64, encoding="pso"))
    assert pso.graph["snnc"]["input_gain"] == 8 and plain.graph["snnc"]["input_gain"] == 1
    ref = simulate(plain, x, timesteps=64).predictions
    got = simulate(pso, x, timesteps=64, encoding="pso").predictions
    assert np.mean(got == ref) >= 0.9
    fl = simulate(plain, x, timesteps=64, mode="float", encoding="pso").predictions  # float applies the gain itself
    assert np.mean(fl == ref) >= 0.9
    with pytest.raises(ValueError, match="recompile with --encoding pso"):
        simulate(plain, x, timesteps=8, encoding="pso")
    with pytest.raises(ValueError, match="recompile with --encoding constant"):
        simulate(pso, x, timesteps=8)
