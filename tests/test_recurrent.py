"""Recurrent and delayed connections: the IR's Delay (cycles only through it), the float SNN against
the equations stepped by hand, the integer SNN on every engine bit for bit, quantization of a cycle."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine_runs import numba_in_chunks
from recurrent_nets import float_reference, recurrent_cuba
from snn_compiler import artifact
from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import IRError, add_op, is_recurrent, new_graph, topo_order, verify
from snn_compiler.ir import ops as O
from snn_compiler.passes import PassError, check_snn_form
from snn_compiler.sim import fast
from snn_compiler.sim.emulator import run_ann, simulate

T = 40


def _spikes(seed=1, n=32, steps=T, n_in=12, p=0.3):
    return (np.random.default_rng(seed).random((n, steps, n_in)) < p).astype(float)


def _compiled(steps=T, bits=8, **kw):
    g = recurrent_cuba(**kw)
    return g, compile_model(g, CompileConfig(bits=bits, calibration=_spikes()[:, 0], timesteps=steps))


# ---- the IR --------------------------------------------------------------------------------------

def test_a_cycle_is_ordered_without_the_edges_into_its_delay():
    g = recurrent_cuba()
    assert is_recurrent(g)
    order = topo_order(g)
    assert order.index("hid.delay") < order.index("rec") < order.index("hid") < order.index("fc_out")


def test_a_cycle_without_a_delay_is_refused_naming_it():
    g = new_graph()
    add_op(g, "in", O.Input((3,)))
    add_op(g, "fc", O.Dense(np.ones((3, 3))), ["in"])
    add_op(g, "rec", O.Dense(np.ones((3, 3))))
    add_op(g, "sum", O.Add(), ["fc", "rec"])
    add_op(g, "hid", O.IF(), ["sum"])
    g.add_edge("hid", "rec", port=0)
    add_op(g, "out", O.Output(), ["hid"])
    with pytest.raises(IRError, match=r"cycle without a Delay \(.*hid.*\): a recurrent connection must read the "
                                      r"previous step"):
        verify(g)


def test_a_delay_declaring_the_wrong_shape_is_refused():
    g = recurrent_cuba(n_hid=16)
    g.nodes["hid.delay"]["op"].shape = (15,)
    g.nodes["rec"]["op"].weight = np.ones((16, 15))  # consistent downstream: only the source disagrees
    with pytest.raises(IRError, match=r"node 'hid.delay': Delay declares shape \(15,\), its source 'hid' sends "
                                      r"\(16,\)"):
        verify(g)


@pytest.mark.parametrize("steps", [0, -1, 1.5, True])
def test_a_delay_of_no_whole_step_is_refused(steps):
    g = recurrent_cuba()
    g.nodes["hid.delay"]["op"].steps = steps
    with pytest.raises(IRError, match="Delay steps must be a whole number >= 1"):
        verify(g)


def test_a_delay_must_carry_spikes_into_a_weighted_op():
    g = recurrent_cuba()
    g.nodes["hid.delay"]["op"].shape = (16,)
    g.remove_edge("hid", "hid.delay")
    g.add_edge("hid.sum", "hid.delay", port=0)  # a current delayed: not SNN form
    verify(g)
    with pytest.raises(ValueError, match="Delay hid.delay reads Add hid.sum; a delay must carry the spikes"):
        check_snn_form(g, None)


def test_a_recurrent_network_has_no_ann_reading():
    _, q = _compiled()
    with pytest.raises(ValueError, match="recurrent .* no ANN reading; run it as an SNN"):
        run_ann(q, _spikes()[:, 0])


def test_a_recurrent_network_survives_save_and_load(tmp_path):
    _, q = _compiled(delay=3)
    artifact.save(q, tmp_path / "net.snnc")
    back = artifact.load(tmp_path / "net.snnc")
    op = back.nodes["hid.delay"]["op"]
    assert isinstance(op, O.Delay) and op.steps == 3 and tuple(op.shape) == (16,)
    x = _spikes()
    a, b = (simulate(h, x, readout="count", engine="numpy") for h in (q, back))
    assert np.array_equal(a.scores, b.scores)


# ---- the float and integer SNN -----------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(), dict(reset="subtract"), dict(delay=3), dict(second=True),
                                dict(second=True, delay=2, reset="subtract"), dict(alpha=0.0, beta=1.0)])
def test_the_float_snn_is_the_recurrent_equations_spike_for_spike(kw):
    """Threshold 1 and float64: the compiled float SNN (normalised weights, ir/neuron.float_step,
    Delays) gives exactly the spike counts of the equations stepped by hand."""
    g, q = _compiled(**kw)
    x = _spikes()
    count, _ = float_reference(g, x)
    fl = simulate(q, x, mode="float", readout="count")
    assert np.array_equal(fl.scores, count)
    assert 0 < count.mean() < T  # neither silent nor saturated: the recurrence matters
    _, v = float_reference(g, x, membrane=True)
    assert np.allclose(simulate(q, x, mode="float", readout="membrane").scores, v, rtol=1e-9, atol=1e-9)


def test_the_recurrence_changes_the_output():
    """The recurrent weights are used: zeroing them changes the spikes."""
    g, q = _compiled()
    x = _spikes()
    g.nodes["rec"]["op"].weight = np.zeros_like(g.nodes["rec"]["op"].weight)
    q0 = compile_model(g, CompileConfig(bits=8, calibration=x[:, 0], timesteps=T))
    a, b = (simulate(h, x, readout="count", record=True).counts["hid"] for h in (q, q0))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_int8_keeps_the_float_snns_predictions_with_a_slow_synapse(reset):
    """decay_u = 41 (the issue's slow synapse) in a recurrent layer: int8 predicts as the float SNN
    on at least 85% of samples (the issue's bar), and its current register holds the worst case."""
    _, q = _compiled(reset=reset, second=True)
    assert q.nodes["hid"]["op"].decay_u == 41
    x = _spikes(seed=3, n=200)
    fl = simulate(q, x, mode="float", readout="count")
    it = simulate(q, x, mode="int", readout="count")
    assert np.mean(fl.predictions == it.predictions) >= 0.85
    assert all(r["current_fits"] for r in q.graph["snnc"]["ranges"].values())


# ---- every engine bit for bit -------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_in=st.integers(1, 10), n_hid=st.integers(1, 12), n_out=st.integers(1, 5),
       alpha=st.sampled_from([0.0, 0.5, 1 - 41 / 4096, 1.0]), beta=st.sampled_from([0.8, 0.95, 1.0]),
       reset=st.sampled_from(["zero", "subtract"]), second=st.booleans(), delay=st.integers(1, 4),
       bits=st.sampled_from([3, 8, 12]), threshold=st.sampled_from([0.3, 1.0, 2.5]), net_seed=st.integers(0, 99),
       steps=st.integers(1, 20), batch_size=st.integers(1, 7),
       readout=st.sampled_from(["count", "membrane", "membrane-sum", "first-spike", "k-spikes"]),
       record=st.booleans(), static=st.booleans(), encoding=st.sampled_from(["constant", "poisson"]),
       step_frames=st.sampled_from([fast.STEP_FRAMES, 1, 5]), method=st.sampled_from(["auto", "scatter", "product"]))
def test_engines_agree_on_random_recurrent_cuba_networks(n_in, n_hid, n_out, alpha, beta, reset, second, delay, bits,
                                                         threshold, net_seed, steps, batch_size, readout, record,
                                                         static, encoding, step_frames, method):
    """numpy == numba == torch, bit for bit, on random recurrent CUBA nets: sequences and static
    input, every read-out (latency read-outs' early stop drops rows of the delay lines too), time
    cut into many chunks (the numba engine's chunks never exceed the shortest delay)."""
    g = recurrent_cuba(n_in, n_hid, n_out, alpha=alpha, beta=beta, reset=reset, second=second, delay=delay,
                       threshold=threshold, seed=net_seed)
    rng = np.random.default_rng(net_seed)
    x = rng.random((9, steps, n_in)) < 0.4 if not static else rng.random((9, n_in))
    x = x.astype(float)
    try:
        q = compile_model(g, CompileConfig(bits=bits, calibration=x[:, 0] if not static else x, timesteps=steps))
    except PassError as e:
        # 3-bit weights of a tiny layer can all round to one level, which quantize refuses (tested in
        # tests/passes/test_quantize.py); this test is about the engines, so such a net is not drawn
        assume("quantize to" not in str(e))
        raise
    kw = dict(readout=readout, k=2 if readout == "k-spikes" else None, record=record, batch_size=batch_size,
              timesteps=steps if static else None, encoding=encoding if static else "constant", seed=net_seed)
    a = simulate(q, x, engine="numpy", **kw)
    b = numba_in_chunks(q, x, step_frames, method, **kw)
    c = simulate(q, x, engine="torch", **kw)
    for r in (b, c):
        assert np.array_equal(a.scores, r.scores)
        assert np.array_equal(a.predictions, r.predictions)
        assert a.rates == r.rates
        for f in ("decision_time", "tied"):
            assert np.array_equal(getattr(a, f), getattr(r, f))
        for k in (a.counts or {}):
            assert np.array_equal(a.counts[k], r.counts[k]), k
    assert all(r["current_fits"] for r in q.graph["snnc"]["ranges"].values())


def test_engines_agree_where_the_scatter_reads_mantissas_times_a_gain():
    """A recurrent layer of 160 neurons (rows past the scatter's short-row scan) whose 8-bit weights carry
    a weight exponent: the numba engine reads them as int8 mantissas times a gain (rec and read-out here)
    and sums long rows in int16 blocks; numpy and torch read the weights whole. All three agree."""
    from snn_compiler.sim.plan import Plan
    g = recurrent_cuba(300, 160, 5, reset="zero", seed=0, rec_gain=0.4)
    for n in ("fc_in", "rec"):
        g.nodes[n]["op"].weight = g.nodes[n]["op"].weight * 0.02
    x = (np.random.default_rng(0).random((12, 30, 300)) < 0.05).astype(np.float32)
    q = compile_model(g, CompileConfig(bits=8, calibration=x[:, 0], timesteps=30))
    plan = fast.FastPlan(Plan(q, "int", "constant", sequence=True))
    assert plan.ops["rec"][3] > 1 and plan.ops["rec"][1].dtype == np.int8  # the path under test is taken
    a = simulate(q, x, engine="numpy", readout="count", record=True)
    assert 0 < a.rates["hid"] < 0.5
    for engine in ("numba", "torch"):
        r = simulate(q, x, engine=engine, readout="count", record=True)
        assert np.array_equal(a.scores, r.scores) and a.rates == r.rates


def _frames(kind, n_in, rng):
    """Sequences of every kind the recurrent kernel reads in place: event frames of one value (the scan's
    common value), graded values (a level per value), signed values, values whose level is 0, counts,
    booleans."""
    events = rng.random((10, 25, n_in)) < 0.1
    if kind == "events":
        return events.astype(np.float32)
    if kind == "graded":
        return np.where(events, rng.random(events.shape), 0.0)
    if kind == "signed":
        return np.where(events, rng.random(events.shape) * 2 - 1, 0.0)
    if kind == "tiny":  # one common nonzero value far below a level, beside frames that carry big ones
        x = events * 1e-6
        x[::2, ::3] = np.where(events[::2, ::3], 1.0, 0.0)
        return x
    if kind == "counts":
        return (events * rng.integers(1, 4, events.shape)).astype(np.int64)
    return events  # bool


@pytest.mark.parametrize("n_in", [12, 300])  # (short rows, scanned value by value; long rows)
@pytest.mark.parametrize("kind", ["events", "graded", "signed", "tiny", "counts", "bool"])
def test_the_recurrent_kernel_reading_a_sequences_frames_equals_the_other_engines(kind, n_in):
    """input -> Dense -> recurrent CUBA layer: the numba engine feeds the frames straight into the recurrent
    kernel (numba_kernels.recurrent_frames, the Input's rule per value); numpy and torch quantize the frames
    and run the Dense on their own. Spike for spike equal, with an early-stopping read-out too (the
    kernel then reads the rows still running)."""
    rng = np.random.default_rng(n_in)
    g = recurrent_cuba(n_in, 40, 5, reset="subtract", seed=1, rec_gain=0.4)
    x = _frames(kind, n_in, rng)
    q = compile_model(g, CompileConfig(bits=8, calibration=x[:, 0], timesteps=x.shape[1]))
    for kw in (dict(readout="count", record=True), dict(readout="first-spike")):
        a = simulate(q, x, engine="numpy", **kw)
        info = {}
        b = simulate(q, x, engine="numba", info=info, **kw)
        assert set(info["methods"]["fc_in"]) == {"scatter (in the recurrent kernel)"}  # the path under test
        assert np.array_equal(a.scores, b.scores) and np.array_equal(a.predictions, b.predictions)
        assert a.rates == b.rates and np.array_equal(a.decision_time, b.decision_time)
    assert 0 < a.rates["hid"] < 0.9


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1e39])
@pytest.mark.parametrize("readout", ["count", "first-spike"])
def test_a_bad_value_read_by_the_recurrent_kernel_is_refused_as_the_data_check_refuses_it(bad, readout):
    """simulate leaves the data check to the recurrent kernel where it reads every value (it flags what the
    check refuses, and the check then names it); with an early stop it checks first, as before. The
    error is the numpy engine's, word for word, wherever the bad value sits."""
    from snn_compiler.data import DataError
    g = recurrent_cuba(300, 40, 5, seed=1, rec_gain=0.4)
    x = (np.random.default_rng(0).random((6, 20, 300)) < 0.1).astype(np.float64)
    q = compile_model(g, CompileConfig(bits=8, calibration=x[:, 0], timesteps=20))
    x[4, 17, 123] = bad
    errors = []
    for engine in ("numpy", "numba"):
        with pytest.raises(DataError) as e:
            simulate(q, x, engine=engine, readout=readout)
        errors.append(str(e.value))
    assert errors[0] == errors[1] and "first in sample 4" in errors[1]


def test_the_recurrent_kernel_runs_the_dense_its_spikes_feed():
    """The read-out's Dense reads the recurrent layer's spikes: the numba engine runs it inside the recurrent
    kernel, on the scan of each step's spikes that the recurrence makes anyway (numba_kernels._fan_out),
    for long rows (160 neurons) and short ones (16), with time cut into chunks; equal to the numpy engine."""
    for n_hid in (16, 160):
        g = recurrent_cuba(50, n_hid, 5, reset="zero", seed=2, rec_gain=0.4)
        x = (np.random.default_rng(n_hid).random((7, 30, 50)) < 0.2).astype(np.float32)
        q = compile_model(g, CompileConfig(bits=8, calibration=x[:, 0], timesteps=30))
        a = simulate(q, x, engine="numpy", readout="count", record=True)
        for frames in (fast.STEP_FRAMES, 20):
            info = {}
            b = numba_in_chunks(q, x, frames, readout="count", record=True, info=info)
            assert set(info["methods"]["fc_out"]) == {"scatter (in the recurrent kernel)"}  # the path under test
            assert np.array_equal(a.scores, b.scores) and a.rates == b.rates
        assert 0 < a.rates["hid"] < 0.9 and 0 < a.rates["out"]
