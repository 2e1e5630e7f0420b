"""A run is bounded: timesteps have a documented maximum, memory does not grow with T, Lava's
default timeout grows with the work up to a documented cap, and failures are one line."""
import sys
import tracemalloc
import warnings

import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import ops as O
from snn_compiler.sim import fast
from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.encode import MAX_TIMESTEPS, input_steps

MiB = 1 << 20


def mlp(n_in=784, hidden=32, seed=0, lava=False):
    """n_in -> hidden -> 10, compiled (8 bits; for Lava's registers with ``lava``), and 16 samples."""
    rng = np.random.default_rng(seed)
    g = new_graph()
    add_op(g, "in", O.Input((n_in,)))
    add_op(g, "fc1", O.Dense(rng.normal(0, 0.1, (hidden, n_in)), rng.normal(0, 0.05, hidden)), ["in"])
    add_op(g, "r1", O.IF(), ["fc1"])
    add_op(g, "fc2", O.Dense(rng.normal(0, 0.3, (10, hidden)), np.zeros(10)), ["r1"])
    add_op(g, "out", O.Output(), ["fc2"])
    verify(g)
    x = rng.random((16, n_in))
    if lava:
        from snn_compiler.backends.lava import TARGET
        return compile_model(g, CompileConfig(bits=8, calibration=x, target="lava"), target=TARGET), x
    return compile_model(g, CompileConfig(bits=8, calibration=x)), x


def one_line(err) -> str:
    msg = str(err)
    assert "\n" not in msg.strip(), f"a {msg.count(chr(10)) + 1}-line message:\n{msg}"
    assert "Traceback" not in msg
    return msg


# ---- T has a documented maximum ------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["numpy", "numba", "auto"])
@pytest.mark.parametrize("timesteps", [MAX_TIMESTEPS + 1, 10 ** 9, 0, -5])
def test_simulate_refuses_timesteps_outside_the_documented_range(engine, timesteps):
    q, x = mlp(n_in=4)
    with pytest.raises(ValueError) as e:
        simulate(q, x[:1], timesteps=timesteps, engine=engine)
    msg = one_line(e.value)
    assert f"1..{MAX_TIMESTEPS}" in msg and "MAX_TIMESTEPS" in msg


@pytest.mark.parametrize("timesteps", [2.5, "32", True, 0])
def test_simulate_refuses_timesteps_that_are_not_whole_numbers(timesteps):
    q, x = mlp(n_in=4)
    with pytest.raises(ValueError) as e:
        simulate(q, x[:1], timesteps=timesteps)
    assert "timesteps" in one_line(e.value)


def test_simulate_timesteps_none_is_the_documented_default_not_a_guess():
    """None means "not given" (a sequence (N, T, ...) gives its own T): static samples run
    DEFAULT_TIMESTEPS (32) steps, the same run as timesteps=32."""
    q, x = mlp(n_in=4)
    a, b = simulate(q, x[:3], timesteps=None, readout="count"), simulate(q, x[:3], timesteps=32, readout="count")
    assert np.array_equal(a.scores, b.scores) and a.rates == b.rates


def test_the_maximum_itself_runs_and_float_mode_is_bounded_too():
    q, x = mlp(n_in=4)
    assert MAX_TIMESTEPS >= 1000  # long enough for any rate code snnc quantizes to
    r = simulate(q, x[:2], timesteps=MAX_TIMESTEPS, readout="count", engine="numpy")
    assert r.scores.shape == (2, 10)
    with pytest.raises(ValueError, match="MAX_TIMESTEPS"):
        simulate(q, x[:1], mode="float", timesteps=MAX_TIMESTEPS + 1)


def test_lava_run_refuses_timesteps_above_the_maximum():
    """Checked before anything starts (so also without .venv-lava)."""
    from snn_compiler.backends import lava
    q, x = mlp(n_in=4, lava=True)
    with pytest.raises(ValueError) as e:
        lava.run(q, x[:1], timesteps=MAX_TIMESTEPS + 1)
    assert "MAX_TIMESTEPS" in one_line(e.value)


# ---- memory does not grow with T -----------------------------------------------------------------

def peak_mib(f) -> float:
    """Peak traced allocation (numpy arrays included) while ``f`` runs, in MiB."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        f()
        return tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()


# Memory reaches its ceiling once T fills a chunk of steps (a few hundred here), then stays: at
# most GROWTH_MIB more from T = 1000 to T = 4000, and CHUNK_MIB more than at T = 40. Before the
# engines streamed, T = 4000 cost 290 MiB more than T = 1000 here (the numba engine: 570).
GROWTH_MIB = 8
CHUNK_MIB = 96


def assert_bounded(peak):
    small, mid, big = (peak(T) for T in (40, 1000, 4000))
    report = f"peak {small:.1f} MiB at T=40, {mid:.1f} at T=1000, {big:.1f} at T=4000"
    assert big - mid < GROWTH_MIB, report
    assert big - small < CHUNK_MIB, report


def test_poisson_encoder_memory_does_not_grow_with_timesteps():
    q, x = mlp()
    inp = q.nodes["in"]["op"]
    for mode in ("int", "float"):
        assert_bounded(lambda T: peak_mib(lambda: [None for _ in input_steps(inp, x, T, "poisson", 1, mode=mode)]))


@pytest.mark.parametrize("engine,mode", [("numpy", "int"), ("numba", "int"), ("numpy", "float")])
def test_simulate_memory_does_not_grow_with_timesteps(engine, mode):
    if engine == "numba" and not fast.available():
        pytest.skip("numba is not installed")
    q, x = mlp()
    kw = dict(encoding="poisson", engine=engine, mode=mode, readout="count", record=True)
    simulate(q, x[:2], timesteps=3, **kw)  # compile numba's kernels outside the measurement
    assert_bounded(lambda T: peak_mib(lambda: simulate(q, x, timesteps=T, **kw)))


def test_streamed_poisson_spikes_equal_the_one_block_definition():
    """Spikes drawn chunk by chunk equal those of one (T, *shape) float32 block per sample."""
    from snn_compiler.sim.encode import input_chunks
    inp = O.Input((3, 5), scale=1.0, bits=4, signed=True)
    x = np.random.default_rng(1).uniform(-1, 1, (7, 3, 5))
    for T in (1, 3, 17):
        u = np.stack([np.random.default_rng([9, i]).random((T, 3, 5), dtype=np.float32) for i in range(7)])
        xq = np.clip(np.rint(x * 7), -7, 7)
        want = np.sign(xq) * 7 * (u.swapaxes(0, 1) < np.abs(xq).astype(np.float32) / np.float32(7))
        for chunk in (1, 2, 5, None):
            got = np.concatenate(list(input_chunks(inp, x, T, "poisson", 9, mode="int", chunk=chunk)))
            assert np.array_equal(got, want), (T, chunk)


# ---- Lava: the default timeout grows with the work, up to a documented cap -----------------------

def lava_plan(q):
    from snn_compiler.backends.lava.plan import make_plan
    from snn_compiler.passes.compose_pools import without_pools
    return make_plan(without_pools(q), "count")


def test_lava_default_timeout_grows_with_the_work_and_is_capped():
    from snn_compiler.backends import lava
    small = lava_plan(mlp(n_in=20, hidden=8)[0])
    large = lava_plan(mlp(n_in=784, hidden=512)[0])
    t = lava.default_timeout
    assert t(small, 10, 32) < t(small, 100, 32) < t(small, 100, 320)      # samples, timesteps
    assert t(small, 100, 32) < t(large, 100, 32)                          # network size
    assert lava.expected_seconds(small, 1000, 100) > 10 * lava.expected_seconds(small, 100, 10)
    assert t(small, 1, 1) >= 60  # start-up: Lava's import and compile
    assert lava.MAX_LAVA_TIMEOUT <= 6 * 3600
    assert t(large, 10 ** 6, MAX_TIMESTEPS) == lava.MAX_LAVA_TIMEOUT


def test_lava_run_expected_to_exceed_the_cap_is_refused_unless_a_timeout_is_given(monkeypatch):
    """Refused at once with one line that names the way out, not after hours (nor with Lava absent)."""
    from snn_compiler.backends import lava
    q, x = mlp(n_in=20, hidden=8, lava=True)
    many = np.repeat(x, 1000, axis=0)
    monkeypatch.setattr(lava, "lava_python", lambda: pytest.fail("a run over the cap was started"))
    with pytest.raises(ValueError) as e:
        lava.run(q, many, timesteps=MAX_TIMESTEPS)
    msg = one_line(e.value)
    assert "--timeout" in msg and "MAX_LAVA_TIMEOUT" in msg
    for bad in (0, -1, float("inf"), float("nan"), "10"):
        with pytest.raises(ValueError, match="timeout must be"):
            lava.run(q, x, timesteps=8, timeout=bad)


# ---- Lava worker failures are one line --------------------------------------------------------------

def needs_lava():
    from snn_compiler.backends import lava
    if not lava.available():
        pytest.skip("Lava backend needs .venv-lava (Python 3.10, lava-nc 0.10.0); run scripts/bootstrap.sh")
    return lava


@pytest.mark.lava
def test_lava_process_failure_is_one_line_with_the_log_kept():
    lava = needs_lava()
    from lava_nets import compiled
    q, x = compiled("mlp", target=lava.TARGET)
    with pytest.raises(lava.LavaError) as e:
        lava.run(q, x, timesteps=12, fault=("relu2", 4), timeout=120)
    msg = one_line(e.value)
    assert "'relu2'" in msg and "raised at step 4" in msg and "fault injection" in msg
    assert "Traceback" in e.value.log  # the worker's log is kept for whoever needs it
    assert lava.group_members(e.value.pgid) == []


@pytest.mark.lava
def test_lava_timeout_is_one_line_that_says_how_to_allow_more():
    lava = needs_lava()
    from lava_nets import compiled
    q, x = compiled("cnn", target=lava.TARGET)
    with pytest.raises(lava.LavaError) as e:
        lava.run(q, np.repeat(x, 50, axis=0), timesteps=12, timeout=2)
    msg = one_line(e.value)
    assert "timed out after 2 s" in msg and "--timeout" in msg


@pytest.mark.lava
def test_lava_worker_without_lava_is_one_line(monkeypatch):
    lava = needs_lava()
    from lava_nets import compiled
    q, x = compiled("mlp", target=lava.TARGET)
    monkeypatch.setenv("SNNC_LAVA_PYTHON", sys.executable)  # a Python without Lava
    with pytest.raises(lava.LavaError) as e:
        lava.run(q, x, timesteps=12)
    assert "scripts/bootstrap.sh" in one_line(e.value)
    assert "No module named" in e.value.log


# ---- numba failures are one line -------------------------------------------------------------------

def test_numba_failure_is_one_line_and_auto_finishes_on_numpy(monkeypatch):
    """A numba typing error (20+ lines of compiler report) surfaces as one line; ``auto`` still
    gives the numpy engine's (identical) answer."""
    if not fast.available():
        pytest.skip("numba is not installed")
    import numba

    @numba.njit
    def broken(*args):
        return args[0].no_such_attribute

    @numba.njit
    def broken_neurons(cur, static, bias, decay_v, decay_u, decays, theta, v, u, vmax, subtract, spiking, spikes,
                       counts, k, t0, stop, d_step, d_counts, d_pre, cur2, static2, total):
        return cur.no_such_attribute

    q, x = mlp(n_in=6)
    want = simulate(q, x, timesteps=5, engine="numpy")
    kernels = getattr(fast, "K", None)   # the kernels live in sim.numba_kernels (fast.K) since the engines' split
    if kernels is not None and hasattr(kernels, "dense_events"):
        for name in ("dense_events", "dense_events_serial"):  # (a call with little work takes the serial build,
            if hasattr(kernels, name):                          # a busy input a BLAS product: the neurons always run)
                monkeypatch.setattr(kernels, name, broken)
        for name in ("neuron_layer", "neuron_layer_serial"):
            if hasattr(kernels, name):
                monkeypatch.setattr(kernels, name, broken_neurons)
    else:
        monkeypatch.setattr(fast, "_dense_events", broken)
    with pytest.raises(RuntimeError) as e:
        simulate(q, x, timesteps=5, engine="numba")
    msg = one_line(e.value)
    assert "numba engine failed" in msg and "engine='numpy'" in msg
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = simulate(q, x, timesteps=5, engine="auto")
    assert np.array_equal(got.scores, want.scores)
    assert any("numba engine failed" in str(w.message) and "\n" not in str(w.message) for w in caught)


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_bad_input_data_is_one_line_before_any_kernel(engine):
    if engine == "numba" and not fast.available():
        pytest.skip("numba is not installed")
    q, x = mlp(n_in=6)
    bad = x.copy()
    bad[1, 2] = np.nan
    cases = [(x[:, :5], "shape"), (bad, "NaN"), (x.astype(str), "numbers"), (x[:, :, None], "shape")]
    for data, word in cases:
        with pytest.raises(ValueError) as e:
            simulate(q, data, timesteps=3, engine=engine)
        assert word in one_line(e.value)


@pytest.mark.parametrize("engine", ["numpy", "numba"])
@pytest.mark.parametrize("field,value", [("membrane_bits", 70), ("threshold", 1 << 70), ("v_init", -(1 << 66)),
                                         ("bias", 1 << 63)])
def test_registers_beyond_the_engines_int64_are_one_line(engine, field, value):
    """Both engines compute in int64; wider registers are refused by name, not wrapped or crashed on."""
    if engine == "numba" and not fast.available():
        pytest.skip("numba is not installed")
    from builders import int_chain
    g = int_chain([np.array([[3]]), np.array([[1]])], [5, 1])
    if field == "membrane_bits":
        g.nodes["if0"]["op"].membrane_bits = value
    elif field == "bias":
        g.nodes["if0"]["op"].bias = np.array([value], np.uint64)
    else:
        setattr(g.nodes["if0"]["op"], field, value)
    with pytest.raises(ValueError) as e:
        simulate(g, np.ones((2, 1)), timesteps=3, engine=engine)
    assert field in one_line(e.value)
