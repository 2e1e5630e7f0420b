"""record_steps / --record: chosen layers' spikes at every step, (N, T, neurons) uint8, the same
from the numpy, numba and torch engines, summing over T to the recorded spike counts."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snn_compiler import artifact
from snn_compiler.ir import ops as O
from snn_compiler.sim import fast, readout
from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.encode import SEQUENCE_ENCODINGS

from builders import int_chain
from cli_run import run_in_process
from test_engines import quantized_nets, sequence_of

ENGINES = ["numpy"] + (["numba"] if fast.available() else [])
try:
    from snn_compiler.sim import torch_engine
    if torch_engine.available():
        ENGINES.append("torch")
except ImportError:  # the core without torch
    pass


def _spiking_layers(g, readout_name):
    return [n for n in g if isinstance(g.nodes[n]["op"], O.NEURONS)
            and not (O.is_readout(g.nodes[n]["op"]) and readout_name.startswith("membrane"))]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(net=quantized_nets(), timesteps=st.integers(1, 12), sequence=st.booleans(),
       encoding=st.sampled_from(SEQUENCE_ENCODINGS),
       readout_name=st.sampled_from(["membrane", "count", "first-spike"]), batch_size=st.integers(1, 9),
       seed=st.integers(0, 3), step_frames=st.sampled_from([fast.STEP_FRAMES, 1, 7]))
def test_engines_record_the_same_spikes_every_step(net, timesteps, sequence, encoding, readout_name, batch_size,
                                                    seed, step_frames):
    """Random nets (MLP, conv with pools and Flattens, residual joins): per-step spikes equal across
    engines (numba in chunks of steps: ``step_frames`` small), and sum over T to the counts."""
    g, x = net
    if sequence:
        x = sequence_of(x, timesteps, np.random.default_rng(seed), seed % 2 == 0)
    layers = _spiking_layers(g, readout_name)
    kw = dict(timesteps=None if sequence else timesteps, encoding=encoding if sequence else "constant",
              readout=readout_name, record=True, batch_size=batch_size, seed=seed, record_steps=layers)
    saved, fast.STEP_FRAMES = fast.STEP_FRAMES, step_frames
    try:
        results = {e: simulate(g, x, engine=e, **kw) for e in ENGINES}
    finally:
        fast.STEP_FRAMES = saved
    a = results["numpy"]
    assert list(a.steps) == layers
    for n in layers:
        s = a.steps[n]
        assert s.dtype == np.uint8 and s.shape == (len(x), timesteps, int(np.prod(g.nodes[n]["shape"])))
        assert s.max(initial=0) <= 1
        assert np.array_equal(s.sum(axis=1, dtype=np.int64), a.counts[n].reshape(len(x), -1)), n
        for e, b in results.items():
            assert np.array_equal(s, b.steps[n]), (e, n)
            assert np.array_equal(a.scores, b.scores), e


def test_a_latency_readout_records_every_step_without_early_stop():
    """first-spike stops a decided sample; recording its steps runs all T, with the same decisions."""
    g = int_chain([np.eye(3, dtype=np.int64) * 4, np.eye(3, dtype=np.int64)], [4, 1])
    x = np.array([[255, 0, 0], [0, 0, 255], [0, 0, 0]], float)
    plain = simulate(g, x, timesteps=6, readout="first-spike", engine="numpy")
    for e in ENGINES:
        r = simulate(g, x, timesteps=6, readout="first-spike", engine=e, record_steps=["if0", "out"])
        assert np.array_equal(r.predictions, plain.predictions) and np.array_equal(r.decision_time, plain.decision_time)
        assert r.steps["out"].shape == (3, 6, 3)
        assert r.steps["out"][2].sum() == 0 and r.steps["out"][0, :, 0].sum() > 1  # ran past its decision


def test_bad_layers_and_too_much_memory_are_refused_in_one_line(monkeypatch):
    g = int_chain([np.eye(2, dtype=np.int64), np.eye(2, dtype=np.int64)], [1, 1])
    x = np.ones((2, 2))
    with pytest.raises(ValueError, match=r"cannot record layer 'nope': it is not in the network; neuron layers: if0, out$"):
        simulate(g, x, timesteps=3, record_steps=["nope"])
    with pytest.raises(ValueError, match=r"'fc0': it is not a neuron layer"):
        simulate(g, x, timesteps=3, readout="count", record_steps=["fc0"])
    with pytest.raises(ValueError, match="list of layer names"):
        simulate(g, x, timesteps=3, record_steps="if0")
    monkeypatch.setattr(readout, "RECORD_STEPS_MAX_BYTES", 2 * 3 * 2 - 1)
    with pytest.raises(ValueError, match=r"^recording if0 for 2 samples x 3 steps needs .* GiB bound"):
        simulate(g, x, timesteps=3, record_steps=["if0"])
    assert simulate(g, x[:1], timesteps=3, record_steps=["if0"]).steps["if0"].shape == (1, 3, 2)
    with pytest.raises(ValueError, match=r"^recording out for 1 samples"):  # a membrane: 8 bytes a value
        simulate(g, x[:1], timesteps=3, record_steps=["out"])


def test_the_cli_writes_the_spikes_of_the_last_timesteps(tmp_path):
    rng = np.random.default_rng(0)
    g = int_chain([rng.integers(-3, 8, (5, 4)), rng.integers(-3, 8, (3, 5))], [40, 30])
    artifact.save(g, tmp_path / "net.snnc")
    x = rng.integers(0, 256, (7, 4)).astype(float)
    np.savez(tmp_path / "d.npz", x=x)
    base = ["simulate", tmp_path / "net.snnc", "--data", tmp_path / "d.npz", "--readout", "count"]
    r = run_in_process(base + ["--timesteps", "3,5", "--record", "if0,out", "--output", tmp_path / "r.npz"])
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "r.npz", allow_pickle=False) as z:
        got = {k: z[k] for k in z.files}
    want = simulate(g, x, timesteps=5, readout="count", record=True, record_steps=["if0", "out"])
    assert set(got) == {"scores", "predictions", "spikes/if0", "spikes/out"}
    for n in ("if0", "out"):
        assert got[f"spikes/{n}"].dtype == np.uint8 and np.array_equal(got[f"spikes/{n}"], want.steps[n])
        assert np.array_equal(got[f"spikes/{n}"].sum(1), want.counts[n])
    r = run_in_process(base[:-1] + ["membrane", "--timesteps", "4", "--record", "out", "--output", tmp_path / "m.npz"])
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert z["membrane/out"].shape == (7, 4, 3) and np.array_equal(z["membrane/out"][:, -1], z["scores"])
    r = run_in_process(base + ["--record", "if9", "--output", tmp_path / "r2.npz"])
    assert r.returncode != 0 and "cannot record layer 'if9'" in r.stderr and not (tmp_path / "r2.npz").exists()
    r = run_in_process(base + ["--record", "if0"])
    assert r.returncode != 0 and "give --output" in r.stderr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(net=quantized_nets(), timesteps=st.integers(1, 10), sequence=st.booleans(),
       readout_name=st.sampled_from(["membrane", "membrane-sum", "membrane-max"]), batch_size=st.integers(1, 9),
       seed=st.integers(0, 3), step_frames=st.sampled_from([fast.STEP_FRAMES, 1, 7]))
def test_a_membrane_readout_records_its_membrane_every_step(net, timesteps, sequence, readout_name, batch_size, seed,
                                                           step_frames):
    """Per-step outputs for sequence tasks: the non-spiking read-out's v[t], equal across engines;
    its last step, sum and maximum are the membrane, membrane-sum and membrane-max read-outs."""
    g, x = net
    if sequence:
        x = sequence_of(x, timesteps, np.random.default_rng(seed), seed % 2 == 0)
    kw = dict(timesteps=None if sequence else timesteps, batch_size=batch_size, seed=seed)
    saved, fast.STEP_FRAMES = fast.STEP_FRAMES, step_frames
    try:
        results = {e: simulate(g, x, engine=e, readout=readout_name, record_steps=["out"], **kw) for e in ENGINES}
    finally:
        fast.STEP_FRAMES = saved
    v = results["numpy"].steps["out"]
    assert v.dtype == np.int64 and v.shape == (len(x), timesteps, int(np.prod(g.nodes["out"]["shape"])))
    for e, r in results.items():
        assert np.array_equal(r.steps["out"], v), e
    fold = {"membrane": v[:, -1], "membrane-sum": v.sum(1), "membrane-max": v.max(1)}[readout_name]
    assert np.array_equal(results["numpy"].scores.reshape(len(x), -1), fold)


def test_the_float_snn_records_spikes_and_membrane_too():
    rng = np.random.default_rng(0)
    g = int_chain([rng.integers(-3, 8, (5, 4)), rng.integers(-3, 8, (3, 5))], [40, 30])
    x = rng.integers(0, 256, (4, 4)).astype(float)
    r = simulate(g, x, mode="float", timesteps=6, record=True, record_steps=["if0", "out"])
    assert r.steps["if0"].dtype == np.uint8 and r.steps["out"].dtype == np.float64
    assert r.counts["if0"].sum() > 0 and np.array_equal(r.steps["if0"].sum(1), r.counts["if0"])
    assert np.array_equal(r.steps["out"][:, -1], r.scores)
