"""Latency read-outs: ``first-spike`` (the output neuron that spikes first decides) and ``k-spikes``
(the first to reach K spikes). Hand-worked nets with known spike times, ties, undecided samples;
decisions independent of batch size, engine and early stopping; early stopping really skips work;
Lava gives the same decisions; results file and plots."""
import io

import numpy as np
import pytest

from snn_compiler.sim import fast
from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.readout import check_readout, readout_decisions

from builders import int_chain
from lava_nets import compiled

ENGINES = ["numpy"] + (["numba"] if fast.available() else [])
THETA = 100


def identity_net(reset="subtract", theta=THETA):
    """Input(3) -> identity Dense -> Output(3): output neuron i receives x_q[i] every step (v_init 0)."""
    return int_chain([np.eye(3, dtype=np.int64)], [theta], reset=reset)


def currents(*rows):
    """Input samples whose quantized values (x_q = round(x * 255)) are the given currents."""
    return np.array(rows, np.float64) / 255.0


# currents per output neuron; first spike at 0-based step ceil(THETA / c) - 1
X = currents(
    (30, 45, 20),     # spikes first at t = 3, 2, 4: neuron 1 decides at t=2 (decision_time 3), no tie
    (50, 60, 10),     # neurons 0 and 1 both spike at t=1 (v 100 and 120 before reset): tie, 1 wins on membrane
    (50, 50, 0),      # neurons 0 and 1 at t=1 with equal membranes (100): tie, the lower index (0) wins
    (10, 12, 5),      # after T=8 steps v = 80, 96, 40: undecided, falls back to the count read-out (1: membrane)
    (255, 0, 0),      # neuron 0 spikes at once: decision_time 1
)


@pytest.mark.parametrize("engine", ENGINES)
def test_first_spike_by_hand(engine):
    r = simulate(identity_net(), X, timesteps=8, readout="first-spike", engine=engine)
    assert r.decision_time.tolist() == [3, 2, 2, -1, 1]
    assert r.predictions.tolist() == [1, 1, 0, 1, 0]
    assert r.tied.tolist() == [False, True, True, False, False]
    assert r.decision_time.dtype == np.int64 and r.tied.dtype == bool
    # scores: the output spike counts where the sample stopped (all T steps when undecided)
    assert r.scores.tolist() == [[0, 1, 0], [1, 1, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]]
    # the undecided sample predicts exactly what the count read-out does
    count = simulate(identity_net(), X, timesteps=8, readout="count", engine=engine)
    assert r.predictions[3] == count.predictions[3]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_k_spikes_by_hand(engine, reset):
    """K = 3: with reset by subtraction the K-th spike of a neuron with current c <= THETA comes at
    t = ceil(3 * THETA / c) - 1; with reset to zero every spike takes ceil(THETA / c) steps."""
    x = currents((30, 45, 20), (50, 60, 10), (34, 0, 0))
    r = simulate(identity_net(reset), x, timesteps=20, readout="k-spikes", k=3, engine=engine)
    if reset == "subtract":
        # sample 0: neurons reach 3 spikes at t = 9, 6, 14; sample 1: t = 5, 4, -; sample 2: t = 8 (34 * 9 = 306)
        assert r.decision_time.tolist() == [7, 5, 9]
    else:
        # sample 0: 3 * 4 - 1 = 11, 3 * 3 - 1 = 8, 3 * 5 - 1 = 14; sample 1: 5, 5 (tie: 60 * 2 = 120 > 100)
        # sample 2: 3 * 3 - 1 = 8
        assert r.decision_time.tolist() == [9, 6, 9]
    assert r.predictions.tolist() == [1, 1, 0]
    assert r.tied.tolist() == [False, reset == "zero", False]
    assert r.scores[0, 1] == 3 and r.scores[0].max() == 3


@pytest.mark.parametrize("engine", ENGINES)
def test_first_spike_is_k_spikes_with_k_1(engine):
    q, x = compiled("cnn")
    x = np.concatenate([x, x[::-1] * 0.7])
    a = simulate(q, x, timesteps=16, readout="first-spike", engine=engine)
    b = simulate(q, x, timesteps=16, readout="k-spikes", k=1, engine=engine)
    for f in ("scores", "predictions", "decision_time", "tied"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f


def test_readout_and_k_are_validated():
    g = identity_net()
    for bad in (0, -1, 1.5, True, None, "3"):
        with pytest.raises(ValueError, match="k-spikes.*k") as e:
            simulate(g, X, timesteps=4, readout="k-spikes", k=bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="k applies"):
        simulate(g, X, timesteps=4, readout="count", k=2)
    with pytest.raises(ValueError, match="readout must be one of"):
        simulate(g, X, timesteps=4, readout="latency")
    assert check_readout("first-spike") == 1 and check_readout("first-spike", 1) == 1
    assert check_readout("k-spikes", np.int64(4)) == 4
    assert check_readout("membrane") is None and check_readout("count") is None


def test_membrane_and_count_results_have_no_decisions():
    for readout in ("membrane", "count"):
        r = simulate(identity_net(), X, timesteps=4, readout=readout)
        assert r.decision_time is None and r.tied is None


def _many(net, n=29, seed=3):
    q, x = compiled(net)
    rng = np.random.default_rng(seed)
    lo = x.min()
    return q, rng.uniform(lo, 1.0, (n,) + x.shape[1:])


CASES = [("mlp", "first-spike", None, "poisson"), ("cnn", "k-spikes", 2, "constant"),
         ("resnet", "k-spikes", 3, "poisson"), ("lif_mlp_zero", "first-spike", None, "constant"),
         ("lif_cnn_subtract", "k-spikes", 2, "poisson")]


@pytest.mark.parametrize("net,readout,k,encoding", CASES)
def test_decisions_do_not_depend_on_batch_size_engine_or_stopping(net, readout, k, encoding):
    """Every engine, batch size and record setting gives the same scores, predictions, decision
    times and ties; the rates of stopped runs agree across engines and batch sizes."""
    q, x = _many(net)
    T = 24
    runs = {}
    for engine in ENGINES:
        for bs in (4, 256):
            for record in (False, True):
                runs[engine, bs, record] = simulate(q, x, timesteps=T, readout=readout, k=k, encoding=encoding,
                                                    seed=7, engine=engine, batch_size=bs, record=record)
    ref = runs["numpy", 256, False]
    assert (ref.decision_time > 0).any(), "nothing decided: the test would prove little"
    for key, r in runs.items():
        for f in ("scores", "predictions", "decision_time", "tied"):
            assert np.array_equal(getattr(r, f), getattr(ref, f)), (key, f)
        want = ref.rates if not key[2] else runs["numpy", 256, True].rates
        assert r.rates == want, key
    full = runs["numpy", 256, True]
    for engine in ENGINES:
        for layer, c in full.counts.items():
            assert np.array_equal(runs[engine, 4, True].counts[layer], c), (engine, layer)
    # record=True runs whole windows: its counts equal the count read-out's, whatever decided
    count = simulate(q, x, timesteps=T, readout="count", encoding=encoding, seed=7, record=True)
    for layer, c in count.counts.items():
        assert np.array_equal(full.counts[layer], c), layer
    assert full.rates == count.rates
    # undecided samples predict what the count read-out predicts
    und = ref.decision_time < 0
    assert np.array_equal(ref.predictions[und], count.predictions[und])


@pytest.mark.parametrize("engine", ENGINES)
def test_early_stopping_skips_the_decided_samples_steps(engine):
    """The engines report the sample x timesteps they simulated (``info["sample_steps"]``): a
    decided sample stops (numpy engine: right at its decision; numba engine: within chunks that
    double, so before twice its decision time) and a batch ends once all are decided."""
    q, x = _many("mlp", n=64)
    T = 64
    info = {}
    r = simulate(q, x, timesteps=T, readout="first-spike", engine=engine, info=info)
    assert info["engine"] == engine
    steps = np.where(r.decision_time > 0, r.decision_time, T)
    assert (r.decision_time > 0).mean() > 0.5 and steps.sum() < len(x) * T / 2, "decisions too late to save work"
    if engine == "numpy":
        assert info["sample_steps"] == steps.sum()
    else:
        assert steps.sum() <= info["sample_steps"] < np.minimum(2 * steps, T).sum() + len(x)
    # the rates count the steps each sample ran, so they stay rates
    full = {}
    simulate(q, x, timesteps=T, readout="first-spike", engine=engine, info=full, record=True)
    assert full["sample_steps"] == len(x) * T
    # all decided at the first step: one step per sample, however long T is
    g = identity_net()
    info = {}
    r = simulate(g, currents(*[(255, 0, 0)] * 10), timesteps=1000, readout="first-spike", engine=engine, info=info)
    assert r.decision_time.tolist() == [1] * 10 and info["sample_steps"] == 10


def test_float_snn_runs_the_latency_readouts_too():
    q, x = _many("mlp", n=9)
    a = simulate(q, x, mode="float", timesteps=20, readout="k-spikes", k=2, batch_size=4)
    b = simulate(q, x, mode="float", timesteps=20, readout="k-spikes", k=2, batch_size=9, record=True)
    for f in ("scores", "predictions", "decision_time", "tied"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert (a.decision_time > 0).any()


def test_readout_decisions_rule():
    counts = np.array([[2, 2, 1], [2, 2, 1], [0, 1, 1], [1, 0, 0]])
    membrane = np.array([[5, 9, 3], [7, 7, 3], [0, 4, 4], [1, 2, 2]])
    step = np.array([4, 4, -1, 0])
    preds, tied, dt = readout_decisions(counts, membrane, step, 2)
    assert preds.tolist() == [1, 0, 2, 0]      # membrane; then lower index; undecided: count rule; decided
    assert tied.tolist() == [True, True, False, False]
    assert dt.tolist() == [5, 5, -1, 1]


def test_results_file_holds_decision_time_and_tied():
    from snn_compiler.data import result_bytes, results_bytes
    r = simulate(identity_net(), X, timesteps=8, readout="first-spike")
    with np.load(io.BytesIO(result_bytes(r))) as z:
        assert sorted(z.files) == ["decision_time", "predictions", "scores", "tied"]
        assert np.array_equal(z["decision_time"], r.decision_time) and np.array_equal(z["tied"], r.tied)
    c = simulate(identity_net(), X, timesteps=8, readout="count")
    with np.load(io.BytesIO(result_bytes(c))) as z:
        assert sorted(z.files) == ["predictions", "scores"]
    with np.load(io.BytesIO(results_bytes(c.scores, c.predictions, None, None))) as z:
        assert sorted(z.files) == ["predictions", "scores"]


def test_latency_plots_are_pngs():
    pytest.importorskip("matplotlib")
    from snn_compiler.plots import mean_latency, plot_accuracy_latency, plot_latency
    r = simulate(identity_net(), X, timesteps=8, readout="first-spike")
    y = np.array([1, 1, 0, 2, 0])
    png = plot_latency(None, 8, {"reference": (r.decision_time, r.predictions == y)})
    assert png.startswith(b"\x89PNG")
    assert mean_latency(r.decision_time, 8) == (3 + 2 + 2 + 8 + 1) / 5
    png = plot_accuracy_latency(None, {"reference": ([4, 8], [3.0, 3.2], [60.0, 80.0])})
    assert png.startswith(b"\x89PNG")


# ---- Lava -------------------------------------------------------------------------------------------

def _lava():
    from snn_compiler.backends import lava
    if not lava.available():
        pytest.skip("Lava backend needs .venv-lava (Python 3.10, lava-nc 0.10.0); run scripts/bootstrap.sh")
    return lava


@pytest.mark.lava
@pytest.mark.parametrize("net,readout,k,encoding,reset", [
    ("mlp", "first-spike", None, "poisson", "zero"), ("cnn", "k-spikes", 2, "constant", "subtract"),
    ("lif_mlp_subtract", "k-spikes", 3, "poisson", "subtract"), ("hand", "first-spike", None, "constant", "subtract")])
def test_lava_gives_the_references_decisions(net, readout, k, encoding, reset):
    """Lava's Output process records each sample's decision; it does not stop, so its counts and
    rates equal the reference's whole-window (record=True) run; decisions equal the stopped run's."""
    lava = _lava()
    if net == "hand":
        q, x, T = identity_net(), X, 8
    else:
        q, x = compiled(net, reset=reset, target=lava.TARGET)
        x = np.concatenate([x, x[::-1] * 0.6])
        T = 12
    kw = dict(timesteps=T, readout=readout, k=k, encoding=encoding, seed=4)
    got = lava.run(q, x, record=True, **kw)
    full = simulate(q, x, record=True, **kw)
    stopped = simulate(q, x, **kw)
    for f in ("scores", "predictions", "decision_time", "tied"):
        assert np.array_equal(getattr(got, f), getattr(full, f)), f
        assert np.array_equal(getattr(got, f), getattr(stopped, f)), f
    assert got.rates == full.rates
    for layer, c in full.counts.items():
        assert np.array_equal(got.counts[layer], c), layer
    if net == "hand":
        assert got.tied.any() and (got.decision_time < 0).any()
    else:
        assert (got.decision_time > 0).any()
