"""Recurrent NIR graphs (cycles read the previous step), CubaLI read-outs and NIR Delay nodes: import
equal to the equations stepped by hand, and to Norse's own simulation of the same graph where Norse
is installed (``bash benchmarks/setup_peers.sh --all``)."""
import warnings

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from recurrent_nets import float_reference, recurrent_cuba, to_nir  # noqa: E402
from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend.nir import NIRError, from_nir  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.sim.emulator import simulate  # noqa: E402

DT = 1e-3
T = 40


def _spikes(seed=1, n=32, steps=T, n_in=12, p=0.3):
    return (np.random.default_rng(seed).random((n, steps, n_in)) < p).astype(float)


def _compile(graph, x, bits=8):
    return compile_model(from_nir(graph, dt=DT), CompileConfig(bits=bits, calibration=x[:, 0], timesteps=x.shape[1]))


@pytest.mark.parametrize("kw", [dict(), dict(second=True), dict(alpha=0.75, beta=0.8), dict(threshold=0.4)])
def test_a_recurrent_nir_graph_is_its_equations_spike_for_spike(kw):
    """A CubaLIF layer with a recurrent Linear (and a feedback from a second layer into the first):
    each cycle is cut at the spikes it reads one step late, and the float SNN equals the NIR
    equations (forward Euler) stepped by hand."""
    g = recurrent_cuba(reset="zero", **kw)
    x = _spikes()
    q = _compile(to_nir(g, DT), x)
    delays = [n for n in q if isinstance(q.nodes[n]["op"], O.Delay)]
    assert sorted(delays) == (["hid.delay", "hid2.delay"] if kw.get("second") else ["hid.delay"])
    count, _ = float_reference(g, x)
    assert np.array_equal(simulate(q, x, mode="float", readout="count").scores, count)
    assert 0 < count.mean() < T


def test_reports_name_the_nir_nodes_each_layer_came_from():
    from snn_compiler import origins
    g = from_nir(to_nir(recurrent_cuba(reset="zero"), DT), dt=DT)
    assert origins.label(g, "rec") == "rec (Linear)"
    assert origins.label(g, "hid") == "hid (CubaLIF)"
    assert origins.label(g, "hid.delay") == "hid (CubaLIF)"  # the recurrent connection of layer hid


def test_a_cubali_read_out_is_the_membrane_of_the_equations():
    g = recurrent_cuba(reset="zero")
    x = _spikes()
    q = _compile(to_nir(g, DT, li_readout=True), x)
    _, v = float_reference(g, x, membrane=True)
    fl = simulate(q, x, mode="float", readout="membrane")
    assert np.allclose(fl.scores, v, rtol=1e-9, atol=1e-9)
    it = simulate(q, x, mode="int", readout="membrane")
    assert np.mean(it.predictions == fl.predictions) >= 0.85


def _with_delay(ng, delay):
    nodes = dict(ng.nodes)
    edges = [e for e in ng.edges if e != ("hid", "fc_out")] + [("hid", "d"), ("d", "fc_out")]
    nodes["d"] = nir.Delay(delay=np.full(16, delay))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_a_nir_delay_of_whole_steps_delays_the_spikes_it_carries():
    """A Delay of 2 dt between the recurrent layer and the read-out is a Delay(2) on those spikes:
    the same as the IR net built with that Delay by hand."""
    g = recurrent_cuba(reset="zero")
    x = _spikes()
    q = _compile(_with_delay(to_nir(g, DT), 2 * DT), x)
    (d2,) = [n for n in q if isinstance(q.nodes[n]["op"], O.Delay) and q.nodes[n]["op"].steps == 2]
    assert list(q.predecessors(d2)) == ["hid"]
    by_hand = recurrent_cuba(reset="zero")
    by_hand.remove_edge("hid", "fc_out")
    by_hand.add_node("late", op=O.Delay((16,), steps=2))
    by_hand.add_edge("hid", "late", port=0)
    by_hand.add_edge("late", "fc_out", port=0)
    ref = compile_model(by_hand, CompileConfig(bits=8, calibration=x[:, 0], timesteps=T))
    a, b = (simulate(h, x, mode="float", readout="count").scores for h in (q, ref))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, simulate(_compile(to_nir(g, DT), x), x, mode="float", readout="count").scores)


@pytest.mark.parametrize("delay, why", [(1.5 * DT, "1.5 steps of dt 0.001; snnc .* whole steps >= 1"),
                                        (0.0, "0 steps of dt"), (np.inf, "one finite value")])
def test_a_delay_of_no_whole_step_is_refused(delay, why):
    with pytest.raises(NIRError, match=f"NIR node 'd' \\(Delay\\): its delay.*{why}"):
        from_nir(_with_delay(to_nir(recurrent_cuba(reset="zero"), DT), delay), dt=DT)


def test_a_cycle_of_currents_is_refused_as_an_algebraic_loop():
    ng = to_nir(recurrent_cuba(reset="zero"), DT)
    nodes = dict(ng.nodes)
    nodes["loop"] = nir.Linear(weight=np.eye(16))
    edges = list(ng.edges) + [("fc_in", "loop"), ("loop", "fc_in")]
    nodes["fc_in"] = nir.Linear(weight=np.ones((16, 12)))
    with pytest.raises(NIRError, match="cycle without a spiking neuron or a Delay"):
        from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), dt=DT)


def test_a_recurrent_nir_file_compiles_from_the_cli(tmp_path):
    from cli_run import run_in_process as run_cli
    path = tmp_path / "rnn.nir"
    nir.write(str(path), to_nir(recurrent_cuba(reset="zero"), DT))
    x = _spikes(n=8)
    np.savez(tmp_path / "seq.npz", x=x, y=np.zeros(8, np.int64))
    np.savez(tmp_path / "frames.npz", x=x.reshape(-1, 12), y=np.zeros(8 * T, np.int64))  # the input's range
    out = tmp_path / "rnn.snnc"
    r = run_cli(["compile", str(path), "--dt", str(DT), "-o", str(out), "--calibration", str(tmp_path / "frames.npz")])
    assert r.returncode == 0, r.stderr
    r = run_cli(["simulate", str(out), "--data", str(tmp_path / "seq.npz"), "--readout", "count", "--json"])
    assert r.returncode == 0, r.stderr


# ---- Norse, the peer that runs recurrent NIR graphs here -------------------------------------------

def _norse_counts(ng, x):
    torch = pytest.importorskip("torch")
    import_nir = pytest.importorskip("norse.torch.utils.import_nir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = import_nir.from_nir(ng, dt=DT)
    state, count = None, 0
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, state = net(torch.from_numpy(x[:, t].astype(np.float32)), state)
            count = count + y
    return count.numpy()


@pytest.mark.parametrize("kw", [dict(), dict(second=True), dict(alpha=0.75, beta=0.8)])
def test_norse_and_snnc_agree_on_a_recurrent_cuba_graph(kw):
    """The same NIR graph in Norse 1.1 (float32) and in snnc: predictions equal on >= 95% of samples
    for the float SNN and >= 85% for int8 (the issue's bars; float32 against float64 may move a
    spike that lands within rounding of the threshold)."""
    ng = to_nir(recurrent_cuba(reset="zero", **kw), DT)
    x = _spikes(seed=5, n=200)
    norse = _norse_counts(ng, x)
    q = _compile(ng, x)
    fl = simulate(q, x, mode="float", readout="count")
    it = simulate(q, x, mode="int", readout="count")
    pred = np.argmax(norse, axis=1)  # the same tie rule (the first of equal counts) on both sides
    assert np.mean(np.argmax(fl.scores, axis=1) == pred) >= 0.95
    assert np.mean(np.argmax(it.scores, axis=1) == pred) >= 0.85
    assert np.mean(np.all(fl.scores == norse, axis=1)) >= 0.95  # the output spike counts themselves


@pytest.mark.parametrize("kw", [dict(second=True), dict(delay=3)])
def test_a_recurrent_network_exported_to_nir_comes_back_the_same(kw):
    """Export (float form) and import: the same integer spikes. A 1-step Delay closing a cycle is the
    NIR cycle itself (not written); a longer one is a NIR Delay of steps * dt."""
    from snn_compiler.frontend.nir.export import export_nir
    x = _spikes()
    q = compile_model(recurrent_cuba(reset="zero", **kw), CompileConfig(bits=8, calibration=x[:, 0], timesteps=T))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # integer decays: recorded in the metadata
        ng = export_nir(q, form="float")
    delays = [n for n, node in ng.nodes.items() if type(node).__name__ == "Delay"]
    assert len(delays) == (1 if kw.get("delay", 1) > 1 else 0)
    back = compile_model(from_nir(ng), CompileConfig(bits=8, calibration=x[:, 0], timesteps=T))
    a, b = (simulate(h, x, readout="count", record=True) for h in (q, back))
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.counts["hid"], b.counts["hid"])
