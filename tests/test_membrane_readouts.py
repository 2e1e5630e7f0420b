"""Read-outs over time of a non-spiking output: membrane-sum (sum over t of v[t]) and membrane-max
(max over t), the same from the numpy, numba and torch engines."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snn_compiler.sim import fast
from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.encode import SEQUENCE_ENCODINGS
from snn_compiler.sim.readout import check_readout

from builders import int_chain
from test_engines import quantized_nets, sequence_of
from test_record_steps import ENGINES


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(net=quantized_nets(), timesteps=st.integers(1, 12), sequence=st.booleans(),
       encoding=st.sampled_from(SEQUENCE_ENCODINGS), readout=st.sampled_from(["membrane-sum", "membrane-max"]),
       batch_size=st.integers(1, 9), seed=st.integers(0, 3), step_frames=st.sampled_from([fast.STEP_FRAMES, 1, 7]))
def test_engines_fold_the_output_membrane_alike(net, timesteps, sequence, encoding, readout, batch_size, seed,
                                                step_frames):
    g, x = net
    if sequence:
        x = sequence_of(x, timesteps, np.random.default_rng(seed), seed % 2 == 0)
    kw = dict(timesteps=None if sequence else timesteps, encoding=encoding if sequence else "constant",
              readout=readout, record=True, batch_size=batch_size, seed=seed)
    saved, fast.STEP_FRAMES = fast.STEP_FRAMES, step_frames
    try:
        results = {e: simulate(g, x, engine=e, **kw) for e in ENGINES}
    finally:
        fast.STEP_FRAMES = saved
    a = results["numpy"]
    assert a.scores.shape == (len(x),) + tuple(g.nodes["out"]["shape"])
    assert np.array_equal(a.predictions, np.argmax(a.scores, axis=1))
    for e, b in results.items():
        assert np.array_equal(a.scores, b.scores), (e, a.scores, b.scores)
        assert np.array_equal(a.predictions, b.predictions), e
        assert a.rates == b.rates, e


@pytest.mark.parametrize("mode", ["int", "float"])
def test_the_folds_are_the_sum_and_max_of_each_steps_membrane(mode):
    """v[t] read independently: the membrane read-out (v[T'-1]) of runs of T' = 1..T steps."""
    rng = np.random.default_rng(1)
    g = int_chain([rng.integers(-4, 9, (6, 5)), rng.integers(-6, 7, (4, 6))], [50, 20],
                  biases=[np.zeros(6, np.int64), rng.integers(-3, 4, 4)])
    x = rng.integers(0, 256, (5, 5)).astype(float)
    engines = ENGINES if mode == "int" else ["numpy"]
    per_step = np.stack([simulate(g, x, mode=mode, timesteps=t, engine="numpy").scores for t in range(1, 9)])
    assert len({tuple(s.ravel()) for s in per_step}) > 2  # the membrane does move over time
    for e in engines:
        assert np.array_equal(simulate(g, x, mode=mode, timesteps=8, readout="membrane-sum", engine=e).scores,
                              per_step.sum(0)), e
        assert np.array_equal(simulate(g, x, mode=mode, timesteps=8, readout="membrane-max", engine=e).scores,
                              per_step.max(0)), e


def test_backends_without_the_fold_refuse_it_in_one_line():
    """Lava (and any caller not folding the membrane) calls check_readout without over_time."""
    for r in ("membrane-sum", "membrane-max"):
        with pytest.raises(ValueError, match=rf"^readout '{r}' runs on the reference engines .* only so far"):
            check_readout(r)
        assert check_readout(r, over_time=True) is None


def test_the_cli_reads_the_membrane_over_time(tmp_path):
    from snn_compiler import artifact
    from cli_run import run_in_process
    rng = np.random.default_rng(2)
    g = int_chain([rng.integers(-3, 8, (5, 4)), rng.integers(-5, 6, (3, 5))], [40, 30])
    artifact.save(g, tmp_path / "net.snnc")
    x = rng.integers(0, 256, (6, 4)).astype(float)
    np.savez(tmp_path / "d.npz", x=x)
    r = run_in_process(["simulate", tmp_path / "net.snnc", "--data", tmp_path / "d.npz", "--timesteps", "7",
                        "--readout", "membrane-max", "--output", tmp_path / "r.npz"])
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "r.npz", allow_pickle=False) as z:
        assert np.array_equal(z["scores"], simulate(g, x, timesteps=7, readout="membrane-max").scores)


@pytest.mark.lava
@pytest.mark.parametrize("readout", ["membrane-sum", "membrane-max"])
def test_lava_folds_the_membrane_it_records_as_the_reference(readout):
    """Lava runs the membrane read-out and records the read-out's membrane every step; the host folds
    it with the reference's rule: the same scores, predictions and per-step record."""
    from snn_compiler.backends import lava
    from lava_nets import compiled
    if not lava.available():
        pytest.skip("no Lava environment (.venv-lava)")
    q, x = compiled("mlp", target=lava.TARGET)
    out = next(n for n in q if getattr(q.nodes[n]["op"], "readout", False))
    ref = simulate(q, x, timesteps=8, readout=readout, record_steps=[out])
    got = lava.run(q, x, timesteps=8, readout=readout, record_steps=[out])
    assert np.array_equal(ref.scores, got.scores) and np.array_equal(ref.predictions, got.predictions)
    assert np.array_equal(ref.steps[out], got.steps[out])
    assert lava.run(q, x, timesteps=8, readout=readout).steps is None
