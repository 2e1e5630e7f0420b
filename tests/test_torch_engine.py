"""The torch engine: the integer SNN bit for bit as the numpy engine; the ANN reading in torch."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.ir import neuron as N  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.sim import emulator, plan, readout, torch_ann, torch_engine  # noqa: E402
from snn_compiler.sim.emulator import simulate  # noqa: E402
from snn_compiler.sim.encode import ENCODINGS, SEQUENCE_ENCODINGS, input_gain  # noqa: E402

from test_engines import _beyond_snn_form, conv_net, quantized_nets, residual_net, sequence_of  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])


def _same(a, b):
    """Two SimResults are identical: scores, predictions, rates, per-layer counts, decisions."""
    assert np.array_equal(a.scores, b.scores), (a.scores, b.scores)
    assert np.array_equal(a.predictions, b.predictions)
    assert a.rates == b.rates
    assert (a.counts is None) == (b.counts is None)
    if a.counts is not None:
        assert a.counts.keys() == b.counts.keys()
        for k in a.counts:
            assert np.array_equal(a.counts[k], b.counts[k]), k
    for f in ("decision_time", "tied"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None and y is None) or np.array_equal(x, y), f


# ---- the neuron step ---------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bits=st.sampled_from([9, 16, 24, 40, 62]), reset=st.sampled_from(N.RESETS),
       leak=st.sampled_from(["none", "scalar", "per_channel"]), decay_u=st.sampled_from([N.DECAY_ONE, 0, 1, 2048, 4095]),
       spiking=st.booleans())
def test_int_step_equals_the_neuron_rule(seed, bits, reset, leak, decay_u, spiking):
    """torch_engine.int_step == ir.neuron.int_step over several steps, registers at their extremes."""
    rng = np.random.default_rng(seed)
    shape = (3, 4, 5)
    vmax = (1 << (bits - 1)) - 1
    theta = int(rng.choice([1, 2, vmax, rng.integers(1, vmax + 1)]))
    decay_v = None if leak == "none" else rng.integers(0, 4097, 1 if leak == "scalar" else 3)
    op = O.IF(scale=1.0, threshold=theta, bias=rng.integers(-vmax, vmax + 1, shape), v_init=0, step=1.0, reset=reset,
              membrane_bits=bits, decay_v=decay_v, beta=None if decay_v is None else 1 - decay_v / 4096.0,
              decay_u=decay_u)
    p = N.IntParams.of(op, shape)
    tp = torch_engine.TorchParams(p, torch.device("cpu"))
    v = rng.integers(-vmax, vmax + 1, (2,) + shape)
    u = rng.integers(-vmax, vmax + 1, (2,) + shape)
    tv, tu = torch.from_numpy(v.copy()), torch.from_numpy(u.copy())
    for _ in range(4):
        cur = rng.integers(-(1 << 30), 1 << 30, (2,) + shape) * rng.integers(0, 2)
        s = N.int_step(v, u if decay_u != N.DECAY_ONE else None, cur, p, spiking)
        pre = torch.empty_like(tv)
        ts = torch_engine.int_step(tv, tu if decay_u != N.DECAY_ONE else None, torch.from_numpy(cur), tp, spiking, pre)
        assert np.array_equal(v, tv.numpy()) and np.array_equal(u, tu.numpy())
        assert (s is None) == (ts is None)
        if s is not None:
            assert np.array_equal(s, ts.numpy())


# ---- whole networks ----------------------------------------------------------------------------

def _run_both(g, x, device="cpu", **kw):
    a = simulate(g, x, engine="numpy", **kw)
    info = {}
    b = simulate(g, x, engine="torch", device=device, info=info, **kw)
    assert info["engine"] == "torch"
    _same(a, b)
    return a


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(net=quantized_nets(), timesteps=st.integers(1, 24), encoding=st.sampled_from(tuple(ENCODINGS)),
       readout=st.sampled_from(readout.READOUTS), k=st.integers(1, 3), record=st.booleans(),
       batch_size=st.integers(1, 9), seed=st.integers(0, 3), decay_u=st.sampled_from([N.DECAY_ONE, N.DECAY_ONE, 1, 3000]))
def test_torch_engine_equals_numpy_engine_on_random_networks(net, timesteps, encoding, readout, k, record, batch_size,
                                                            seed, decay_u):
    """Every encoding, read-out (latency ones with and without early stop), IF and LIF layers
    (with current memory too), registers anywhere in their ranges."""
    g, x = net
    for n in g:
        if isinstance(g.nodes[n]["op"], O.Neuron):
            g.nodes[n]["op"].decay_u = decay_u
    g.graph["snnc"]["input_gain"] = input_gain(encoding, g.nodes["in"]["op"])  # pso: the gain the weights "carry"
    _run_both(g, x, timesteps=timesteps, encoding=encoding, readout=readout, k=k if readout == "k-spikes" else None,
              record=record, batch_size=batch_size, seed=seed)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(net=quantized_nets(), timesteps=st.integers(1, 16), encoding=st.sampled_from(SEQUENCE_ENCODINGS),
       readout=st.sampled_from(readout.READOUTS), record=st.booleans(), batch_size=st.integers(1, 9),
       seed=st.integers(0, 3), events=st.booleans(), decay_u=st.sampled_from([N.DECAY_ONE, 3000]))
def test_torch_engine_equals_numpy_engine_on_random_sequences(net, timesteps, encoding, readout, record, batch_size,
                                                             seed, events, decay_u):
    """Time-varying input (N, T, *shape), every read-out (early stop drops a decided sample's frames)."""
    g, x = net
    for n in g:
        if isinstance(g.nodes[n]["op"], O.Neuron):
            g.nodes[n]["op"].decay_u = decay_u
    seq = sequence_of(x, timesteps, np.random.default_rng(seed), events)
    _run_both(g, seq, encoding=encoding, readout=readout, k=2 if readout == "k-spikes" else None, record=record,
              batch_size=batch_size, seed=seed)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("encoding", tuple(ENCODINGS))
@pytest.mark.parametrize("readout", readout.READOUTS)
def test_torch_engine_equals_numpy_engine_on_compiled_convs(device, encoding, readout):
    rng = np.random.default_rng(1)
    g = conv_net(rng, (1, 1), (1, 1), (1, 1), 2)
    x = rng.random((11, 4, 9, 9))
    q = compile_model(g, CompileConfig(bits=6, calibration=x, reset="zero" if readout == "count" else "subtract",
                                       encoding=encoding))
    for record in (False, True):
        a = _run_both(q, x, device, timesteps=16, encoding=encoding, readout=readout,
                      k=2 if readout == "k-spikes" else None, record=record, batch_size=4)
    assert sum(a.rates.values()) > 0  # the comparison saw spikes


@pytest.mark.parametrize("device", DEVICES)
def test_torch_engine_equals_numpy_engine_on_residual_signed_input(device):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(20, 12))
    q = compile_model(residual_net(rng), CompileConfig(bits=8, calibration=x))
    for enc in ("constant", "poisson"):
        _run_both(q, x, device, timesteps=9, encoding=enc, record=True)


@pytest.mark.parametrize("case", ["padded_pool", "overlapping_pool", "spikes_added", "neurons_on_input",
                                  "neurons_on_flatten"])
def test_torch_engine_equals_numpy_engine_beyond_snn_form(case):
    rng = np.random.default_rng(0)
    g = _beyond_snn_form(case, rng)
    x = rng.random((5, 2, 6, 6))
    a = _run_both(g, x, timesteps=7, encoding="poisson", readout="membrane", record=True)
    assert sum(int(c.sum()) for c in a.counts.values()) > 0


def test_float64_kernels_where_float32_is_not_exact():
    """Sums beyond 2**24 (wide input levels) run in float64, still exact."""
    from builders import int_chain
    g = int_chain([np.array([[1], [-1]]), np.eye(2, dtype=np.int64)], [1 << 32, 1], input_levels=(1 << 32) - 1,
                  membrane_bits=40)
    assert plan.Plan(g, "int", "constant").weights["fc0"].dtype == np.float64
    x = np.array([[1.0], [0.6], [0.3]])
    a = _run_both(g, x, timesteps=3, readout="membrane", record=True)
    assert len(np.unique(a.counts["if0"].sum(axis=1))) > 1  # currents of 2**32 scale made the difference


def test_torch_engine_refusals():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 12))
    q = compile_model(residual_net(rng), CompileConfig(bits=8, calibration=x))
    with pytest.raises(ValueError, match="integer mode"):
        simulate(q, x, mode="float", engine="torch")
    with pytest.raises(ValueError, match="engine 'torch' only"):
        simulate(q, x, engine="numpy", device="cpu")
    with pytest.raises(ValueError, match="device must be"):
        simulate(q, x, engine="torch", device="tpu")
    if not CUDA:
        with pytest.raises(ValueError, match="no CUDA GPU"):
            simulate(q, x, engine="torch", device="cuda")


def test_exact_kernels_restores_torch_settings():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
              torch.get_float32_matmul_precision(), torch._C._get_nnpack_enabled())
    torch.set_float32_matmul_precision("medium")
    try:
        with torch_engine.exact_kernels(torch.device("cpu")):
            assert torch.get_float32_matmul_precision() == "highest" and not torch._C._get_nnpack_enabled()
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before[2])
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch._C._get_nnpack_enabled()) == \
        (before[0], before[1], before[3])


@pytest.mark.skipif(not CUDA, reason="no CUDA GPU")
def test_cuda_equals_cpu_on_a_wide_conv():
    """Wide convolutions (float32 sums near 2**24) on CUDA: cuDNN off, no TF32, exact."""
    rng = np.random.default_rng(3)
    g = conv_net(rng, (1, 1), (1, 1), (1, 1), 1)
    x = rng.random((64, 4, 9, 9))
    q = compile_model(g, CompileConfig(bits=8, calibration=x))
    _run_both(q, x, "cuda", timesteps=32, encoding="poisson", readout="count", record=True, batch_size=32)


# ---- the ANN reading (calibration) -------------------------------------------------------------

def _maxpool_net(rng):
    from snn_compiler.ir import add_op, new_graph
    g = new_graph()
    add_op(g, "in", O.Input((3, 8, 8)))
    add_op(g, "c1", O.Conv2d(rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4), padding=(1, 1)), ["in"])
    add_op(g, "bn", O.BatchNorm(rng.normal(size=4), rng.random(4) + 0.5, rng.normal(size=4), rng.normal(size=4)), ["c1"])
    add_op(g, "r1", O.IF(), ["bn"])
    add_op(g, "mp", O.MaxPool2d((3, 3), (2, 2), (1, 1)), ["r1"])
    add_op(g, "af", O.Affine(rng.random(4) + 0.5, rng.normal(size=4)), ["mp"])
    add_op(g, "ap", O.AvgPool2d((2, 2), (2, 2)), ["af"])
    add_op(g, "f", O.Flatten(), ["ap"])
    add_op(g, "fc", O.Dense(rng.normal(size=(5, 16)), rng.normal(size=5)), ["f"])
    add_op(g, "out", O.Output(), ["fc"])
    from snn_compiler.ir import verify
    verify(g)
    return g


@pytest.mark.parametrize("which", ["maxpool", "residual", "conv", "qcfs"])
def test_ann_reading_matches_numpy_within_float32(which):
    """Every op kind's ANN reading in torch (float32) within 1e-4 * (1 + max|a|) of the numpy one."""
    rng = np.random.default_rng(5)
    if which == "maxpool":
        g, x = _maxpool_net(rng), rng.normal(size=(10, 3, 8, 8))
    elif which == "residual":
        g, x = residual_net(rng), rng.normal(size=(10, 12))
    elif which == "conv":
        g, x = conv_net(rng, (2, 1), (1, 0), (1, 1), 2), rng.random((10, 4, 9, 9))
    else:  # a QCFS staircase instead of the ReLU
        g, x = residual_net(rng), rng.normal(size=(10, 12))
        g.nodes["r1"]["op"] = N.QCFS(4, 1.5)
    keep = list(g)
    clip = [n for n in g if O.is_hidden_neuron(g.nodes[n]["op"])][:1]
    ref = list(emulator.iter_ann(g, x, keep=keep, batch_size=4, clip=clip))
    got = list(torch_ann.iter_ann(g, x, keep=keep, batch_size=4, clip=clip))
    assert len(ref) == len(got) == 3
    for r, t in zip(ref, got):
        assert r.keys() == t.keys()
        for n in r:
            assert t[n].shape == r[n].shape and t[n].dtype == np.float32, n
            assert np.abs(t[n] - r[n]).max(initial=0) <= 1e-4 * (1 + np.abs(r[n]).max(initial=0)), n


@pytest.mark.parametrize("norm", ["percentile:99.9", "max"])
def test_calibration_through_torch_matches_numpy(monkeypatch, norm):
    """Scales (lambda per layer) through torch equal the numpy path's to a relative 1e-4, and the
    environment switch picks the path."""
    from snn_compiler.ir import add_op, new_graph, verify
    rng = np.random.default_rng(2)
    g = new_graph()  # conv, batch norm, max pool (lowered into IF layers), residual join, dense
    add_op(g, "in", O.Input((3, 8, 8)))
    add_op(g, "c1", O.Conv2d(rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4), padding=(1, 1)), ["in"])
    add_op(g, "bn", O.BatchNorm(rng.normal(size=4), rng.random(4) + 0.5, rng.normal(size=4), rng.normal(size=4)), ["c1"])
    add_op(g, "r1", O.IF(), ["bn"])
    add_op(g, "c2", O.Conv2d(rng.normal(size=(4, 4, 3, 3)), None, padding=(1, 1)), ["r1"])
    add_op(g, "add", O.Add(), ["c2", "r1"])
    add_op(g, "r2", O.IF(), ["add"])
    add_op(g, "mp", O.MaxPool2d((2, 2), (2, 2)), ["r2"])
    add_op(g, "f", O.Flatten(), ["mp"])
    add_op(g, "fc", O.Dense(rng.normal(size=(5, 64)), rng.normal(size=5)), ["f"])
    add_op(g, "out", O.Output(), ["fc"])
    verify(g)
    x = rng.normal(size=(40, 3, 8, 8))
    scales, calls = {}, []
    read = torch_ann.iter_ann
    monkeypatch.setattr(torch_ann, "iter_ann", lambda *a, **kw: calls.append(1) or read(*a, **kw))
    for engine in ("numpy", "torch"):
        monkeypatch.setenv(torch_ann.CALIBRATION_ENV, engine)
        assert torch_ann.calibration_engine() == engine
        q = compile_model(g, CompileConfig(bits=8, calibration=x, norm=norm))
        assert len(calls) == (engine == "torch"), engine
        scales[engine] = {n: q.nodes[n]["op"].scale for n in q if isinstance(q.nodes[n]["op"], O.Neuron)}
    assert scales["numpy"].keys() == scales["torch"].keys() and len(scales["numpy"]) >= 3
    for n, lam in scales["numpy"].items():
        assert scales["torch"][n] == pytest.approx(lam, rel=1e-4), n
    monkeypatch.setenv(torch_ann.CALIBRATION_ENV, "gpu")
    with pytest.raises(ValueError, match=torch_ann.CALIBRATION_ENV):
        torch_ann.calibration_engine()


def test_cli_simulate_engine_torch(tmp_path, capsys):
    """``snnc simulate --engine torch --device cpu`` writes the numpy engine's results; --device
    without --engine torch is refused in one line."""
    import json

    from snn_compiler import artifact
    from snn_compiler.cli import main
    rng = np.random.default_rng(7)
    x = rng.normal(size=(12, 12))
    q = compile_model(residual_net(rng), CompileConfig(bits=8, calibration=x))
    artifact.save(q, tmp_path / "net.snnc")
    np.savez(tmp_path / "data.npz", x=x, y=rng.integers(0, 3, 12))
    outs = {}
    for engine in ("numpy", "torch"):
        args = ["simulate", str(tmp_path / "net.snnc"), "--data", str(tmp_path / "data.npz"), "--timesteps", "8",
                "--readout", "count", "--engine", engine, "--output", str(tmp_path / f"{engine}.npz"), "--json",
                "--no-progress"] + (["--device", "cpu"] if engine == "torch" else [])
        assert main(args) == 0
        assert json.loads(capsys.readouterr().out)["results"][0]["samples"] == 12
        with np.load(tmp_path / f"{engine}.npz") as z:
            outs[engine] = {k: z[k] for k in z.files}
    assert outs["numpy"].keys() == outs["torch"].keys()
    assert all(np.array_equal(outs["numpy"][k], outs["torch"][k]) for k in outs["numpy"])
    assert main(["simulate", str(tmp_path / "net.snnc"), "--data", str(tmp_path / "data.npz"), "--device", "cpu"]) == 1
    assert "--device applies to --engine torch only" in capsys.readouterr().err



def test_state_in_int32_only_where_the_bounds_prove_it():
    """Leak-free layers with small proved currents run in int32; 2**32-level input currents, leaky
    layers and unproved currents stay int64 (the equality tests above cover both)."""
    from builders import int_chain
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 12))
    q = compile_model(residual_net(rng), CompileConfig(bits=8, calibration=x))
    dtypes = torch_engine.TorchPlan(plan.Plan(q, "int", "constant")).state_dtype
    assert set(dtypes.values()) == {torch.int32}
    g = int_chain([np.array([[1], [-1]]), np.eye(2, dtype=np.int64)], [1 << 32, 1], input_levels=(1 << 32) - 1,
                  membrane_bits=40)
    dtypes = torch_engine.TorchPlan(plan.Plan(g, "int", "constant")).state_dtype
    assert dtypes == {"if0": torch.int64, "out": torch.int64}  # currents of 2**32; 40-bit membranes
    layer = next(n for n in q if O.is_hidden_neuron(q.nodes[n]["op"]))
    q.nodes[layer]["op"].decay_v = np.array([100])
    q.nodes[layer]["op"].beta = np.array([1 - 100 / 4096])
    assert torch_engine.TorchPlan(plan.Plan(q, "int", "constant")).state_dtype[layer] == torch.int64
