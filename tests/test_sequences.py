"""Time-varying input (issue 18, item 1): x of shape (N, T, *input shape), one frame per step, T
from the data, entering every engine through snn_compiler.sim.encode (one definition)."""
import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import ops as O
from snn_compiler.sim import fast
from snn_compiler.sim.emulator import simulate, spike_trace
from snn_compiler.sim.encode import (SEQUENCE_ENCODINGS, input_chunks, input_steps, quantize_input, run_timesteps,
                                     sequence_steps)

from builders import int_chain
from test_engines import conv_net

ENGINES = ["numpy"] + (["numba"] if fast.available() else []) + ["torch"]
S4 = O.Input((2, 3), scale=2.0, bits=4, signed=True)   # L = 7


def _torch_or_skip(engine):
    if engine == "torch":
        pytest.importorskip("torch")


# ---- how a sequence is recognised --------------------------------------------------------------

def test_shapes_decide_static_or_sequence():
    assert sequence_steps((5,), np.zeros((3, 5))) is None
    assert sequence_steps((5,), np.zeros((3, 7, 5))) == 7
    assert sequence_steps((2, 4, 4), np.zeros((3, 2, 4, 4))) is None
    assert sequence_steps((2, 4, 4), np.zeros((3, 6, 2, 4, 4))) == 6
    # (N, C, H, W) with a vector input (F,) is neither a sample nor a sequence: refused, never reshaped
    for bad in [(3, 2, 4, 5), (3, 4), (3, 7, 4), (5,)]:
        with pytest.raises(ValueError, match=r"takes samples \(N, 5\) or sequences \(N, T, 5\)"):
            sequence_steps((5,), np.zeros(bad))


def test_run_timesteps_takes_T_from_a_sequence_and_refuses_another():
    seq = np.zeros((2, 9, 5))
    assert run_timesteps((5,), seq) == 9 and run_timesteps((5,), seq, 9, "poisson") == 9
    assert run_timesteps((5,), np.zeros((2, 5))) == 32 and run_timesteps((5,), np.zeros((2, 5)), 4) == 4
    with pytest.raises(ValueError, match="sequence of 9 steps per sample; timesteps 8 disagrees"):
        run_timesteps((5,), seq, 8)
    for enc in ("pso", "burst", "ch"):
        with pytest.raises(ValueError, match=f"encoding '{enc}' cannot take a sequence"):
            run_timesteps((5,), seq, None, enc)
    with pytest.raises(ValueError, match="timesteps must be in 1..10000"):
        run_timesteps((5,), np.zeros((2, 0, 5)))
    with pytest.raises(ValueError, match="timesteps must be a whole number"):
        run_timesteps((5,), np.zeros((2, 5)), 2.0)


# ---- the encoding of a sequence ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["int", "float"])
def test_constant_sequence_is_each_frame_quantized_by_the_static_rule(mode):
    rng = np.random.default_rng(0)
    seq = rng.uniform(-2.5, 2.5, (4, 11, 2, 3))
    got = np.concatenate(list(input_chunks(S4, seq, 11, "constant", mode=mode, chunk=3)))
    for t in range(11):
        want = quantize_input(S4, seq[:, t]) if mode == "int" else seq[:, t] / S4.scale
        assert np.array_equal(got[t], want), t
    assert np.array_equal(np.stack(list(input_steps(S4, seq, 11, mode=mode))), got)
    assert np.array_equal(np.concatenate(list(input_chunks(S4, seq, 5, "constant", mode=mode))), got[:5])  # a prefix


@pytest.mark.parametrize("encoding", SEQUENCE_ENCODINGS)
@pytest.mark.parametrize("mode", ["int", "float"])
def test_equal_frames_encode_exactly_as_the_static_sample(encoding, mode):
    rng = np.random.default_rng(1)
    x = rng.uniform(-2.5, 2.5, (5, 2, 3))
    seq = np.repeat(x[:, None], 13, axis=1)
    for chunk in (1, 4, None):
        a = np.concatenate(list(input_chunks(S4, x, 13, encoding, 7, range(10, 15), mode, chunk)))
        b = np.concatenate(list(input_chunks(S4, seq, 13, encoding, 7, range(10, 15), mode, chunk)))
        assert a.dtype == b.dtype and np.array_equal(a, b), chunk


def test_poisson_sequence_follows_each_frame():
    """A frame of 0 never fires, a frame of L always fires: the probability is the step's own."""
    inp = O.Input((50,), scale=1.0, bits=8)
    seq = np.zeros((2, 6, 50))
    seq[:, 1::2] = 1.0
    got = np.concatenate(list(input_chunks(inp, seq, 6, "poisson", 3)))
    assert (got[0::2] == 0).all() and (got[1::2] == 255).all()
    with pytest.raises(ValueError, match="sequence of 6 steps per sample; 7 steps cannot be run"):
        next(input_chunks(inp, seq, 7, "poisson"))
    with pytest.raises(ValueError, match="'burst' cannot take a sequence"):
        next(input_chunks(inp, seq, 6, "burst"))


# ---- engines ----------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_a_non_spiking_output_integrates_every_frame(engine):
    """Output = input, weight 1, membrane read-out: v[T-1] - v(zeros) is the sum of the quantized
    frames, so each step saw its own frame (not the first, not the mean)."""
    _torch_or_skip(engine)
    g = int_chain([np.eye(3, dtype=int)], [1000])
    rng = np.random.default_rng(2)
    seq = rng.uniform(0, 1, (4, 10, 3))
    seq[:, ::3] = 0.0
    got = simulate(g, seq, engine=engine).scores - simulate(g, np.zeros_like(seq), engine=engine).scores
    assert np.array_equal(got, quantize_input(g.nodes["in"]["op"], seq).sum(axis=1))


@pytest.fixture(scope="module")
def conv():
    rng = np.random.default_rng(4)
    x = rng.random((6, 4, 9, 9))
    return compile_model(conv_net(rng, (1, 1), (1, 1), (1, 1), 2), CompileConfig(bits=6, calibration=x)), x


@pytest.mark.parametrize("encoding", SEQUENCE_ENCODINGS)
@pytest.mark.parametrize("readout", ["membrane", "count", "first-spike"])
def test_engines_agree_on_a_conv_net_fed_frames(conv, encoding, readout):
    q, x = conv
    rng = np.random.default_rng(5)
    seq = x[:, None] * (rng.random((6, 12, 4, 9, 9)) < 0.4)
    runs = [simulate(q, seq, engine=e, encoding=encoding, readout=readout, record=True, batch_size=4, seed=3)
            for e in ENGINES if e != "torch" or pytest.importorskip("torch")]
    for r in runs[1:]:
        assert np.array_equal(r.scores, runs[0].scores) and r.rates == runs[0].rates
        for k in r.counts:
            assert np.array_equal(r.counts[k], runs[0].counts[k]), k
    assert runs[0].counts["r1"].sum() > 0
    if readout == "first-spike":  # early stop: decided samples leave the batch, their frames with them
        stopped = [simulate(q, seq, engine=e, encoding=encoding, readout=readout, batch_size=4, seed=3) for e in ENGINES]
        for r in stopped:
            assert np.array_equal(r.predictions, runs[0].predictions) and r.rates == stopped[0].rates
            assert np.array_equal(r.decision_time, runs[0].decision_time)
        assert (runs[0].decision_time > 1).any()  # some samples decided late: the frames after a drop mattered
    # T equal frames = the static sample run for T steps, engine by engine
    same = np.repeat(x[:, None], 12, axis=1)
    for e in ENGINES:
        a = simulate(q, same, engine=e, encoding=encoding, readout=readout, record=True, seed=3)
        b = simulate(q, x, timesteps=12, engine=e, encoding=encoding, readout=readout, record=True, seed=3)
        assert np.array_equal(a.scores, b.scores) and a.rates == b.rates, e


def test_float_mode_and_spike_trace_take_sequences(conv):
    q, x = conv
    rng = np.random.default_rng(6)
    seq = x[:, None] * (rng.random((6, 7, 4, 9, 9)) < 0.5)
    f = simulate(q, seq, mode="float")
    assert f.scores.shape == (6, 5) and np.isfinite(f.scores).all()
    same = np.repeat(x[:, None], 7, axis=1)
    assert np.array_equal(simulate(q, same, mode="float").scores, simulate(q, x, mode="float", timesteps=7).scores)
    trace = spike_trace(q, seq[:2], None, ["r1"])
    assert trace["r1"].shape == (7, 2, 6, 9, 9)
    counts = simulate(q, seq[:2], readout="count", record=True, engine="numpy").counts["r1"]
    assert np.array_equal(trace["r1"].sum(axis=0), counts)


def test_simulate_refuses_bad_sequences_in_one_line(conv):
    q, x = conv
    seq = np.repeat(x[:, None], 5, axis=1)
    cases = [(dict(timesteps=6), "sequence of 5 steps per sample; timesteps 6 disagrees"),
             (dict(encoding="burst"), "'burst' cannot take a sequence"),
             (dict(x=seq[:, :, :2]), r"takes samples \(N, 4, 9, 9\) or sequences \(N, T, 4, 9, 9\)"),
             (dict(x=seq[:, :, :, None]), r"input data has shape \(6, 5, 4, 1, 9, 9\)"),
             (dict(x=np.where(seq > 0.5, np.nan, seq)), "NaN or infinite")]
    for kw, msg in cases:
        data = kw.pop("x", seq)
        with pytest.raises(ValueError, match=msg) as e:
            simulate(q, data, **kw)
        assert "\n" not in str(e.value)
    assert simulate(q, np.zeros((0, 5, 4, 9, 9))).scores.shape == (0, 5)


# ---- the Python API, data files, the CLI and snnc check ------------------------------------------

def test_snn_run_classify_accuracy_take_sequences(conv):
    from snn_compiler.convert import SNN
    q, x = conv
    snn = SNN(q, timesteps=16, readout="count")
    seq = x[:, None] * (np.random.default_rng(7).random((6, 5, 4, 9, 9)) < 0.5)
    ref = simulate(q, seq, readout="count")
    assert np.array_equal(snn.run(seq), ref.scores.astype(np.int64))  # T = 5 from the data, not the SNN's 16
    assert np.array_equal(snn.classify(seq), ref.predictions)
    assert snn.accuracy(seq, ref.predictions) == 1.0
    assert np.array_equal(snn.run(seq, backend="float"), simulate(q, seq, mode="float", readout="count").scores)
    with pytest.raises(ValueError, match="sequence of 5 steps per sample; timesteps 16 disagrees"):
        snn.run(seq, timesteps=16)
    with pytest.raises(ValueError, match="the ANN reading takes static samples"):
        snn.classify(seq, backend="ann")


def test_data_files_hold_sequences(tmp_path):
    from snn_compiler.data import DataError, load_data
    seq = np.random.default_rng(8).random((3, 4, 2, 5))
    np.savez(tmp_path / "seq.npz", x=seq, y=np.array([0, 1, 0]))
    x, y = load_data(tmp_path / "seq.npz", (2, 5), sequences=True)
    assert x.shape == (3, 4, 2, 5) and np.array_equal(x, seq)
    with pytest.raises(DataError, match=r"seq.npz: samples have shape \(4, 2, 5\), the network takes \(N, 2, 5\); "
                                        r"that is a sequence \(N, T, ...\), which snnc simulate and snnc check take"):
        load_data(tmp_path / "seq.npz", (2, 5))  # calibration data, snnc report: static samples only
    bad = seq.copy()
    bad[2, 3, 1, 4] = np.inf
    np.savez(tmp_path / "bad.npz", x=bad)
    with pytest.raises(DataError, match=r"bad.npz: 'x' holds 1 NaN or infinite values \(first in sample 2\)"):
        load_data(tmp_path / "bad.npz", (2, 5), sequences=True)
    np.savez(tmp_path / "wrong.npz", x=seq[:, :, :, :4])
    with pytest.raises(DataError, match=r"samples have shape \(4, 2, 4\), the network takes \(N, 2, 5\) or "
                                        r"sequences \(N, T, 2, 5\)"):
        load_data(tmp_path / "wrong.npz", (2, 5), sequences=True)


def test_channels_last_sequences_of_a_channels_last_model(tmp_path):
    from snn_compiler.data import load_data
    seq = np.random.default_rng(11).random((3, 4, 5, 6, 2))  # (N, T, H, W, C)
    np.savez(tmp_path / "seq.npz", x=seq)
    notes = []
    x, _ = load_data(tmp_path / "seq.npz", (2, 5, 6), layout="channels_last", notes=notes, sequences=True)
    assert np.array_equal(x, seq.transpose(0, 1, 4, 2, 3))
    assert notes == [f"{tmp_path / 'seq.npz'}: x is channels-last (N, T, 5, 6, 2) as the model declares; transposed "
                     f"once to the IR's (N, T, 2, 5, 6)"]
    np.savez(tmp_path / "img.npz", x=seq[:, 0])
    x, _ = load_data(tmp_path / "img.npz", (2, 5, 6), layout="channels_last")  # static samples as before
    assert np.array_equal(x, seq[:, 0].transpose(0, 3, 1, 2))


def _cli(*args):
    from cli_run import run_in_process
    return run_in_process(args)


def test_cli_simulate_and_check_take_T_from_a_sequence_file(conv, tmp_path):
    from snn_compiler import artifact
    q, x = conv
    seq = x[:, None] * (np.random.default_rng(9).random((6, 5, 4, 9, 9)) < 0.5)
    y = simulate(q, seq, readout="count").predictions
    artifact.save(q, tmp_path / "net.snnc")
    np.savez(tmp_path / "seq.npz", x=seq, y=y)
    out = tmp_path / "res.npz"
    r = _cli("simulate", tmp_path / "net.snnc", "--data", tmp_path / "seq.npz", "--readout", "count", "--output", out)
    assert r.returncode == 0, r.stderr
    assert "reference T=5: 6 samples" in r.stdout and "accuracy 100.00%" in r.stdout
    assert np.array_equal(np.load(out)["predictions"], y)
    r = _cli("simulate", tmp_path / "net.snnc", "--data", tmp_path / "seq.npz", "--timesteps", "8")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].endswith(
        "seq.npz holds sequences of 5 steps per sample, which set T; leave --timesteps out")
    r = _cli("check", tmp_path / "net.snnc", "--data", tmp_path / "seq.npz", "--backends", "reference,reference-numpy")
    assert r.returncode == 0, r.stderr
    assert "T=5" in r.stdout
    r = _cli("report", tmp_path / "net.snnc", "--data", tmp_path / "seq.npz", "-o", tmp_path / "r.html")
    assert r.returncode == 1 and "that is a sequence (N, T, ...), which snnc simulate and snnc check take" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.html").exists()


def test_check_bisects_a_sequence_on_its_first_frames(monkeypatch, conv):
    """A divergence planted from step t0 on is found at t0: re-runs take the first t frames."""
    from snn_compiler import backends as B
    from snn_compiler.conformance import compare_backends
    q, x = conv
    seq = x[:, None] * (np.random.default_rng(10).random((6, 12, 4, 9, 9)) < 0.5)
    calls = []

    def planted(graph, xs, **kw):
        res = simulate(graph, xs, mode="int", **kw)
        calls.append(xs.shape[1])
        for row in np.flatnonzero([np.array_equal(r[0], seq[4, 0]) for r in xs]):
            res.counts["r2"][row].flat[3] += max(0, xs.shape[1] - 7 + 1)
        return res

    monkeypatch.setitem(B.BACKENDS, "planted", planted)
    r = compare_backends(q, seq, ("reference", "planted"))
    fd = r["first_divergence"]
    assert r["timesteps"] == 12 and (fd["sample"], fd["layer"], fd["neuron"], fd["timestep"]) == (4, "r2", 3, 7)
    assert calls[0] == 12 and all(t < 12 for t in calls[2:])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_large_float32_data_with_one_bad_value_is_refused(bad):
    """From data.PARALLEL_CHECK values on, float32 data takes the one-pass check (numba's, where
    installed): one bad value anywhere, the last included, is still found and named."""
    from snn_compiler.data import PARALLEL_CHECK, DataError, check_values
    x = np.zeros((8, PARALLEL_CHECK // 8 + 3), np.float32)
    x[::3, ::7] = 1.5
    check_values("events", x)
    x[7, -1] = bad
    with pytest.raises(DataError, match=r"events: 'x' holds 1 NaN or infinite values \(first in sample 7\)"):
        check_values("events", x)
    check_values("events", np.arange(10, dtype=np.int64))  # integers: always finite, within float32
