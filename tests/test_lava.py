"""Lava backend conformance: Lava's bit-accurate simulator against the reference, spike for spike.

Every test runs real Lava (lava-nc 0.10.0 in .venv-lava, through the backend's worker) and is
skipped, with the reason, when that environment is missing. Small nets, 6 samples, T = 12:
about a second per Lava run.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snn_compiler import artifact
from snn_compiler.backends import lava
from snn_compiler.ir import ops as O
from snn_compiler.sim.emulator import simulate
from snn_compiler.targets import TargetError

import lava_nets
from lava_nets import compiled

pytestmark = [
    pytest.mark.lava,
    pytest.mark.skipif(not lava.available(),
                       reason="Lava backend needs .venv-lava (Python 3.10, lava-nc 0.10.0); run scripts/bootstrap.sh"),
]

T = 12


def assert_same(ref, got, readout):
    """Scores (membrane values or spike counts), predictions, rates and every layer's counts equal."""
    assert np.array_equal(ref.scores, got.scores), f"{readout} scores differ:\n{ref.scores}\n{got.scores}"
    assert np.array_equal(ref.predictions, got.predictions)
    assert ref.rates == got.rates
    assert set(ref.counts) == set(got.counts)
    for layer in ref.counts:
        assert ref.counts[layer].shape == got.counts[layer].shape, layer
        diff = np.flatnonzero(ref.counts[layer] != got.counts[layer])
        assert diff.size == 0, f"layer {layer}: {diff.size} neurons differ in spike count"


def compare(q, x, timesteps=T, encoding="constant", seed=5, readouts=("count", "membrane"), **kw):
    infos = []
    for readout in readouts:
        ref = simulate(q, x, timesteps=timesteps, readout=readout, encoding=encoding, seed=seed, record=True)
        info = {}
        got = lava.run(q, x, timesteps=timesteps, readout=readout, encoding=encoding, seed=seed, record=True,
                       info=info, **kw)
        assert_same(ref, got, readout)
        assert sum(int(c.sum()) for c in ref.counts.values()) > 0, "no spikes at all: the test would prove nothing"
        infos.append(info)
    return infos


@pytest.mark.parametrize("encoding", ["constant", "poisson"])
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("net", ["mlp", "cnn", "resnet", "rescnn"])
def test_lava_matches_reference(net, reset, bits, encoding):
    q, x = compiled(net, bits=bits, reset=reset, timesteps=T, target=lava.TARGET)
    infos = compare(q, x, encoding=encoding, readouts=("count", "membrane") if bits == 8 else ("count",))
    kinds = infos[0]["kinds"]
    assert kinds["output"] == "snnc"  # the read-out always runs on the snnc neuron
    if reset == "subtract":
        assert set(kinds.values()) == {"snnc"}
    elif bits == 4:  # small weights: every hidden layer fits stock LIF exactly
        assert {k for n, k in kinds.items() if n != "output"} == {"lif"}


@pytest.mark.parametrize("net", ["lif_mlp_subtract", "lif_mlp_zero", "lif_cnn_subtract", "lif_cnn_zero",
                                 "lif_resnet_zero"])
def test_lava_matches_reference_on_lif_nets(net):
    """Trained LIF layers (per-channel decays, both resets) run on the snnc neuron, spike for spike."""
    q, x = compiled(net, bits=8, timesteps=T, target=lava.TARGET)
    assert any(q.nodes[n]["op"].decay_v is not None for n in q if isinstance(q.nodes[n]["op"], O.Neuron))
    infos = compare(q, x)
    assert set(infos[0]["kinds"].values()) == {"snnc"}


@settings(max_examples=4, deadline=None, derandomize=True)
@given(decay_u=st.one_of(st.sampled_from([0, 41]), st.integers(1, 4095)),
       net=st.sampled_from(["mlp", "lif_mlp_subtract", "lif_cnn_zero"]))
def test_lava_matches_reference_with_current_memory(decay_u, net):
    """CUBA layers (the current register keeps 1 - decay_u/4096 of itself each step) on the snnc
    neuron, spike for spike; their recorded current range holds what u accumulates."""
    build = lava_nets.with_current_memory(lava_nets.NETS[net], decay_u)
    try:
        q, x = compiled(build, bits=8, timesteps=T, target=lava.TARGET)
    except TargetError as e:  # a long current memory can outgrow Loihi's 24-bit register: said, not wrapped
        assert "current register" in str(e) and decay_u * T < 64 * 4096
        return
    compare(q, x, readouts=("count",))


@pytest.mark.parametrize("decay_u", [1024, 3000])
def test_lava_runs_cuba_layers_that_fit(decay_u):
    q, x = compiled(lava_nets.with_current_memory(lava_nets.NETS["lif_mlp_zero"], decay_u), bits=8, timesteps=T,
                    target=lava.TARGET)
    compare(q, x, readouts=("count", "membrane"))


@pytest.mark.parametrize("neurons", ["snnc", "lif"])
def test_reset_zero_with_one_neuron_kind(neurons):
    """Reset to zero on the snnc neuron only, and on stock LIF for every hidden layer."""
    q, x = compiled("cnn", bits=4, reset="zero", target=lava.TARGET)
    infos = compare(q, x, encoding="poisson", readouts=("count",), neurons=neurons)
    assert {k for n, k in infos[0]["kinds"].items() if n != "output"} == {neurons}


@pytest.mark.parametrize("net", ["mlp", "rescnn"])
def test_nine_bit_weights_the_edge_of_what_lava_keeps(net):
    """--bits 9: weights reach +-255, the widest Lava's Dense (MIXED, 9 bits) keeps exactly."""
    q, x = compiled(net, bits=9, target=lava.TARGET)
    assert max(int(np.abs(q.nodes[n]["op"].weight_int).max()) for n in q
               if getattr(q.nodes[n]["op"], "weight_int", None) is not None) == 255
    compare(q, x, readouts=("count",))


@pytest.mark.parametrize("timesteps", [1, 3])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_windows_shorter_than_the_pipeline(timesteps, reset):
    """T smaller than the network's depth (5): windows of successive samples overlap in the pipeline."""
    q, x = compiled("resnet", bits=4, reset=reset, timesteps=timesteps, target=lava.TARGET)
    compare(q, x, timesteps=timesteps, readouts=("count", "membrane"))


@pytest.mark.parametrize("net,reset,encoding", [("mlp", "subtract", "constant"), ("cnn", "zero", "poisson"),
                                                  ("rescnn", "subtract", "poisson")])
def test_lava_matches_reference_on_sequences(net, reset, encoding):
    """Time-varying input (N, T = 8, *shape), one frame per step: Lava's source streams the
    frames as the reference encodes them (sim.encode), spike for spike."""
    q, x = compiled(net, reset=reset, timesteps=8, target=lava.TARGET)
    rng = np.random.default_rng(8)
    seq = x[:, None] * rng.uniform(0, 1.3, (len(x), 8) + x.shape[1:])
    seq[:, 3] = 0.0  # a silent frame in the middle
    compare(q, seq, timesteps=8, encoding=encoding)
    got = lava.run(q, seq, readout="count", encoding=encoding, seed=5)  # T from the data
    assert np.array_equal(got.scores, simulate(q, seq, readout="count", encoding=encoding, seed=5).scores)
    with pytest.raises(ValueError, match="sequence of 8 steps per sample; timesteps 9 disagrees"):
        lava.run(q, seq, timesteps=9)


def test_cli_check_lava_on_a_sequence_file(tmp_path, capsys):
    """``snnc check --backends reference,lava`` on a (N, T, *shape) data file: T from the file, exit 0."""
    from snn_compiler import cli
    q, x = compiled("cnn", reset="zero", timesteps=8, target=lava.TARGET)
    seq = x[:, None] * (np.random.default_rng(9).random((len(x), 8) + x.shape[1:]) < 0.5)
    artifact.save(q, tmp_path / "net.snnc")
    np.savez(tmp_path / "seq.npz", x=seq)
    assert cli.main(["check", str(tmp_path / "net.snnc"), "--data", str(tmp_path / "seq.npz"), "--backends",
                     "reference,lava", "--readout", "count", "--no-progress"]) == 0
    assert "T=8" in capsys.readouterr().out


@pytest.mark.parametrize("net", ["mlp", "cnn"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_unsigned_input_and_v_init_zero(net, reset):
    """The other tests feed signed graded input (levels 127); here unsigned (255) and v_init 0."""
    q, x = compiled(net, bits=8, reset=reset, v_init="zero", signed=False, target=lava.TARGET)
    assert not q.nodes["input"]["op"].signed
    compare(q, x, encoding="poisson", readouts=("count", "membrane"))


def assert_no_shared_memory_left(err):
    """A killed Lava run leaves its channels in /dev/shm unless the backend unlinks them."""
    assert err.shm, "the worker logged no shared-memory segment: the check would prove nothing"
    assert [n for n in err.shm if os.path.exists(os.path.join("/dev/shm", n))] == []


def test_process_exception_is_a_clear_error_and_leaves_no_process():
    q, x = compiled("mlp", target=lava.TARGET)
    with pytest.raises(lava.LavaError, match=r"'relu2'.*raised at step 4.*fault injection") as e:
        lava.run(q, x, timesteps=T, fault=("relu2", 4), timeout=60)
    assert "process group" in str(e.value)
    assert lava.group_members(e.value.pgid) == []
    assert_no_shared_memory_left(e.value)


def test_timeout_kills_the_whole_process_group():
    q, x = compiled("cnn", target=lava.TARGET)
    with pytest.raises(lava.LavaError, match="timed out after 3 s") as e:
        lava.run(q, np.repeat(x, 50, axis=0), timesteps=T, timeout=3)
    assert lava.group_members(e.value.pgid) == []
    assert_no_shared_memory_left(e.value)


def test_missing_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SNNC_LAVA_PYTHON", "/nonexistent/python")
    q, x = compiled("mlp", target=lava.TARGET)
    with pytest.raises(lava.LavaError, match=r"needs its Python 3.10 environment .*SNNC_LAVA_PYTHON=/nonexistent/python.*snnc setup-lava"):
        lava.run(q, x, timesteps=T)
    monkeypatch.setenv("SNNC_LAVA_PYTHON", sys.executable)  # a Python without Lava
    with pytest.raises(lava.LavaError, match="lacks lava-nc 0.10.0 or snnc: run `snnc setup-lava`"):
        lava.run(q, x, timesteps=T)


def test_build_network_returns_the_process_graph(tmp_path):
    """The Python API (Lava side): processes and ports of the graph, run with its own run config."""
    q, x = compiled("resnet", bits=8, reset="zero", target=lava.TARGET)
    artifact.save(q, tmp_path / "net.snnc")
    np.save(tmp_path / "x.npy", x)
    ref = simulate(q, x, timesteps=T, readout="count")
    np.save(tmp_path / "ref.npy", ref.scores.astype(np.int64))
    script = textwrap.dedent(f"""
        import lava.proc.dense.process  # lava first
        import numpy as np
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.dense.process import Dense
        from snn_compiler import artifact
        from snn_compiler.backends.lava.build import build_network
        from snn_compiler.backends.lava.procs.process import SnncNeuron, SnncDelay
        g = artifact.load("{tmp_path}/net.snnc")
        x = np.load("{tmp_path}/x.npy")
        net = build_network(g, x, timesteps={T}, readout="count")
        assert isinstance(net.output, SnncNeuron) and net.output_port is net.output.s_out
        assert net.input_ports == [] and net.source is not None
        assert any(isinstance(p, SnncDelay) for p in net.processes.values())   # residual balance
        assert isinstance(net.synapses["fc0"], Dense)
        try:
            net.run(steps=7, run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))   # in two parts
            net.run(steps=net.hardware_steps - 7)
            counts = net.output_counts()
        finally:
            net.stop()
        assert np.array_equal(counts, np.load("{tmp_path}/ref.npy")), counts
        bare = build_network(g, None, timesteps={T}, n_samples=2)
        assert bare.source is None and len(bare.input_ports) == 2   # fc0 and the long skip fc_skip (delayed)
        print("ok")
    """)
    proc = subprocess.Popen([lava.lava_python(), "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        lava.kill_group(proc.pid)  # nothing may outlive the test, even on timeout
    assert proc.returncode == 0 and out.strip().endswith("ok"), out


def _children(pid):
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
            found.append((int(d), cmd))
    return found


def test_killed_caller_leaves_no_lava_process(tmp_path):
    """SIGKILL the Python that called run(): the worker notices and kills its whole group."""
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})
        import numpy as np
        from lava_nets import compiled
        from snn_compiler.backends import lava
        q, x = compiled("cnn", target=lava.TARGET)
        lava.run(q, np.repeat(x, 100, axis=0), timesteps={T}, timeout=600)
    """)
    caller = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while worker is None and time.monotonic() < deadline:
            worker = next((p for p, cmd in _children(caller.pid) if "backends.lava.worker" in cmd), None)
            time.sleep(0.2)
        assert worker is not None, "the Lava worker never started"
        job = next(cmd.split()[-1] for p, cmd in _children(caller.pid) if p == worker)
        deadline = time.monotonic() + 60
        while len(lava.group_members(worker)) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)  # until Lava has started its process models
        assert len(lava.group_members(worker)) >= 4
        from snn_compiler.backends.lava.shm import shm_names
        shm = shm_names(job)
        assert shm, "no shared memory logged"
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait()
        deadline = time.monotonic() + 10
        while lava.group_members(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lava.group_members(worker) == []
        assert not os.path.exists(job), "the job folder outlived the run"
        assert [n for n in shm if os.path.exists(os.path.join("/dev/shm", n))] == []
    finally:  # clean up even when the test fails
        lava.kill_group(caller.pid)
        caller.wait()
        if worker is not None:
            lava.kill_group(worker)


def test_cli_simulate_backend_lava_writes_the_references_results(tmp_path, monkeypatch):
    """``snnc simulate --backend lava`` from the main environment: same RESULTS.npz as the reference."""
    from snn_compiler import cli
    from snn_compiler import backends

    monkeypatch.setitem(backends.BACKENDS, "lava", lava.run)  # (registered by the lead; harmless if already)
    q, x = compiled("rescnn", bits=8, target=lava.TARGET)
    artifact.save(q, tmp_path / "net.snnc")
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(len(x)) % 4)
    out = {}
    for backend in ("reference", "lava"):
        out[backend] = tmp_path / f"{backend}.npz"
        rc = cli.main(["simulate", str(tmp_path / "net.snnc"), "--data", str(tmp_path / "data.npz"), "--backend",
                       backend, "--timesteps", "8", "--readout", "count", "--encoding", "poisson", "--no-progress",
                       "--output", str(out[backend])])
        assert rc == 0
    with np.load(out["reference"]) as a, np.load(out["lava"]) as b:
        assert a.files == b.files
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k


def test_membrane_saturates_exactly_like_the_reference():
    """Currents of millions per step (near the 24-bit current limit) drive the Output accumulator's
    24-bit membrane into saturation at +vmax and -vmax (the snnc neuron clips like the reference);
    then the same currents through a hidden IF layer with a 17-bit threshold, Poisson input."""
    from builders import int_chain
    vmax = (1 << 23) - 1
    w = np.concatenate([np.full((1, 100), 255), np.full((1, 100), -255), np.tile([255, -200], (1, 50))])
    out = int_chain([w], [1], biases=[np.array([0, 0, 4095])])
    x = np.stack([np.ones(100), np.linspace(0, 1, 100), np.linspace(1, 0, 100)])
    ref = simulate(out, x, timesteps=6, readout="membrane", record=True)
    assert np.abs(ref.scores).max() == vmax  # the test really saturates
    assert_same(ref, lava.run(out, x, timesteps=6, readout="membrane", record=True), "membrane")
    hidden = int_chain([w, np.array([[1, 1, 1]] * 2)], [(1 << 17) - 1, 1], v_inits=[(1 << 16) - 1, 0])
    for readout in ("membrane", "count"):
        ref = simulate(hidden, x, timesteps=16, readout=readout, encoding="poisson", seed=1, record=True)
        got = lava.run(hidden, x, timesteps=16, readout=readout, encoding="poisson", seed=1, record=True)
        assert_same(ref, got, readout)


@pytest.mark.parametrize("net,reset,encoding", [("wide_rescnn", "subtract", "constant"),
                                                ("depthwise", "subtract", "poisson"),
                                                ("depthwise", "zero", "constant")])
def test_convs_beyond_lava_convs_int8_groups_run_as_sparse(net, reset, encoding):
    """Issue 12: the 1x1 depthwise identity skip snnc makes on 128 channels, and a 130-group 3x3
    depthwise conv, would wrap Lava Conv's int8 groups Var: they run as Sparse connections (scipy
    CSR, one entry per synapse), spike for spike equal to the reference."""
    from scipy.sparse import issparse
    from snn_compiler.backends.lava.plan import make_plan
    q, x = compiled(net, bits=8, reset=reset, target=lava.TARGET)
    wide = {c.name: c for c in make_plan(q).conns if c.kind == "sparse" and "groups" in c.why}
    assert "add.skip1" in wide and (net == "wide_rescnn" or "dw" in wide)
    for c in wide.values():
        assert issparse(c.weight) and c.weight.nnz <= c.weight.shape[0] * 9  # at most 3x3 taps per neuron
    compare(q, x, encoding=encoding)


def test_lava_sparse_process_holds_the_csr_matrix(tmp_path):
    """Lava side: the connection built for a 130-group conv is a stock Sparse process whose weights
    Var holds the plan's CSR matrix (never a dense array)."""
    q, x = compiled("depthwise", target=lava.TARGET)
    artifact.save(q, tmp_path / "net.snnc")
    script = textwrap.dedent(f"""
        import lava.proc.dense.process  # lava first
        from lava.proc.conv.process import Conv
        from lava.proc.sparse.process import Sparse
        from scipy.sparse import issparse
        from snn_compiler import artifact
        from snn_compiler.backends.lava.build import build_network
        net = build_network(artifact.load("{tmp_path}/net.snnc"), None, timesteps={T}, n_samples=1)
        skip, dw = net.synapses["add.skip1"], net.synapses["dw"]
        assert isinstance(skip, Sparse) and isinstance(dw, Sparse) and isinstance(net.synapses["conv1"], Conv)
        for syn, nnz in ((skip, 130 * 16), (dw, None)):
            w = syn.weights.init
            assert issparse(w) and w.shape == (130 * 16, 130 * 16) and (nnz is None or w.nnz == nnz), (w, nnz)
        print("ok")
    """)
    proc = subprocess.Popen([lava.lava_python(), "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        lava.kill_group(proc.pid)
    assert proc.returncode == 0 and out.strip().endswith("ok"), out
