"""`snnc report`: the figures it computes agree with direct runs, the energy count with a hand count,
and the page embeds every figure."""
import re

import numpy as np
import pytest

from snn_compiler.ir import ops as O
from snn_compiler.report import analysis, build_report, energy
from snn_compiler.report.html import render
from snn_compiler.sim.emulator import simulate, spike_trace

from builders import int_chain

torch = pytest.importorskip("torch")


def test_synaptic_operations_against_a_hand_count():
    # in(3) -> fc0 (2x3, one zero weight) -> if0(2) -> fc1 (1x2) -> out(1)
    g = int_chain([np.array([[1, 0, 2], [3, 4, 5]]), np.array([[7, 7]])], thresholds=[4, 4])
    e = energy.energy(g, {"in": 12.0, "if0": 5.0})
    # fan-out: each input value drives 5 nonzero synapses / 3 inputs; each if0 spike drives 1 synapse
    assert e["sops"] == pytest.approx(12.0 * 5 / 3 + 5.0 * 1)
    assert e["macs"] == 6 + 2
    assert e["snn_nJ"] == pytest.approx(e["sops"] * energy.PJ_PER_SOP / 1e3)
    assert "Davies" in e["sources"] and "Horowitz" in e["sources"]


def test_spike_trace_sums_to_the_simulators_counts():
    g = int_chain([np.array([[40, -3, 25], [12, 30, -8]]), np.array([[9, -4]])], thresholds=[60, 9])
    x = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    tr = spike_trace(g, x, 20, ["if0", "out"])
    assert tr["if0"].shape == (20, 2, 2) and tr["if0"].dtype == bool
    for engine in ("numpy", "numba"):
        r = simulate(g, x, timesteps=20, readout="count", record=True, engine=engine)
        assert (tr["if0"].sum(0) == r.counts["if0"]).all() and (tr["out"].sum(0) == r.counts["out"]).all()


@pytest.fixture(scope="module")
def compiled():
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from snn_compiler.frontend import from_module
    from models import zoo
    model, shape = zoo()["cnn"]
    x = np.random.default_rng(0).random((80,) + shape).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    g = from_module(model, shape)
    plain = compile_model(g, CompileConfig(bits=6, calibration=x[:40], timesteps=16))
    mapped = compile_model(g, CompileConfig(bits=6, calibration=x[:40], timesteps=16, profile="loihi2"))
    return plain, mapped, x, y


def test_report_figures_agree_with_direct_runs(compiled):
    q, _, x, y = compiled
    info = build_report(q, x, y, timesteps=[4, 16], samples=60)
    x, y = x[:60], y[:60]
    sweep, st = info["sweep"], info["stats"]
    for i, T in enumerate([4, 16]):
        for mode in ("int", "float"):
            acc = 100 * (simulate(q, x, mode=mode, timesteps=T).predictions == y).mean()
            assert sweep[mode][i] == pytest.approx(acc)
    acc = st["accuracy"]
    assert sum(st["causes"].values()) == pytest.approx(acc["ann"] - acc["int"])
    assert acc["int"] == pytest.approx(sweep["int"][1])           # both at the artifact's T = 16
    hidden = [n for n in q if O.is_hidden_neuron(q.nodes[n]["op"])]
    assert sorted(st["layers"]) == sorted(hidden) and st["worst_layer"] in hidden
    for L in st["layers"].values():
        assert 0 <= L["clipped"] <= 1 and -1 <= L["correlation"] <= 1 and L["rate"] >= 0
    r = simulate(q, x, timesteps=16, record=True)
    assert st["layers"][hidden[0]]["rate"] == pytest.approx(r.counts[hidden[0]].mean() / 16)
    assert info["energy"]["sops"] > 0 and info["energy"]["macs"] > 0
    page = render(info)
    # accuracy, layers, rate distribution, energy, raster
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 5
    assert st["worst_layer"] in page and "Horowitz" in page and "T grid [4, 16]" in page
    assert "95% Wilson interval" in page and "Energy balance." in page and "dead neurons" in page
    assert "The compiled layers (snnc inspect)" in page and "threshold" in page
    # energy at every T follows the integer SNN's own events at that T
    for i, T in enumerate([4, 16]):
        r = simulate(q, x, timesteps=T, record=True)
        events = analysis.events_per_inference(q, x, r.counts, T)
        assert sweep["energy_nJ"][i] == pytest.approx(energy.energy(q, events)["snn_nJ"])
    assert info["energy"]["snn_nJ"] == pytest.approx(sweep["energy_nJ"][1])   # the artifact's T = 16
    for n in hidden:
        per_neuron = r.counts[n].reshape(len(x), -1).mean(axis=0)
        assert st["activity"][n]["dead"] == int((per_neuron == 0).sum())
        assert sum(st["activity"][n]["rate_histogram"]) == per_neuron.size
    for mode in ("int", "float"):
        for acc_i, (lo, hi) in zip(sweep[mode], sweep["interval"][mode]):
            assert lo <= acc_i <= hi and hi - lo > 0
    assert "<h2>Cores</h2>" not in page


def test_a_mapped_artifact_shows_its_cores(compiled):
    _, mapped, x, y = compiled
    info = build_report(mapped, x, None, timesteps=[16], samples=20)
    assert not info["labelled"] and info["cores"]["cores_used"] >= 1
    page = render(info)
    assert "<h2>Cores</h2>" in page and len(re.findall(r"data:image/png;base64,", page)) == 6


def test_cli_report_writes_one_page_and_never_over_its_inputs(compiled, tmp_path, capsys):
    from snn_compiler import artifact
    from snn_compiler.cli import main
    q, _, x, y = compiled
    artifact.save(q, tmp_path / "net.snnc")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    args = ["report", str(tmp_path / "net.snnc"), "--data", str(tmp_path / "data.npz"), "--samples", "30",
            "--timesteps", "8,16"]
    assert main(args + ["-o", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "layer introducing most error" in out and (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    assert main(args + ["-o", str(tmp_path / "data.npz")]) == 1
    assert "input" in capsys.readouterr().err


def test_the_worst_layer_is_the_first_silent_one_and_the_report_warns(compiled, tmp_path, capsys):
    """A layer whose scale is far too large fires nothing; its rate error in its own (threshold)
    units still looks small, which once made the report name a layer after it. The first silent
    layer is where the signal dies: the report names it, and warns, as simulate does."""
    from snn_compiler import artifact
    from snn_compiler.cli import main
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from snn_compiler.frontend import from_module
    from models import zoo
    _, _, x, y = compiled
    model, shape = zoo()["cnn"]
    with pytest.warns(UserWarning, match="layer 'features.6' is silent at T=16"):  # compile's, from the expected rates
        q = compile_model(from_module(model, shape), CompileConfig(bits=6, calibration=x[:40], timesteps=16,
                                                                   layer_factors={"features.6": 100.0}))
    with pytest.warns(UserWarning, match="layer 'features.6' is silent at T=16: 0 spikes"):
        info = build_report(q, x, y, timesteps=[16], samples=40)
    st = info["stats"]
    assert st["layers"]["features.6"]["rate"] == 0 and st["layers"]["features.6"]["activity"] == "silent"
    assert st["worst_layer"] == "features.6"
    assert st["layers"]["features.2"]["activity"] is None
    # simulate says so too, per T, naming the layer (the CLI prints each warning once)
    artifact.save(q, tmp_path / "net.snnc")
    np.savez(tmp_path / "data.npz", x=x[:40], y=y[:40])
    assert main(["simulate", str(tmp_path / "net.snnc"), "--data", str(tmp_path / "data.npz"), "--timesteps", "16,32"]) == 0
    err = capsys.readouterr().err
    assert "layer 'features.6' is silent at T=16" in err and "layer 'features.6' is silent at T=32" in err
    assert "features.2' is" not in err


def test_wilson_interval_and_energy_balance_by_hand():
    lo, hi = analysis.wilson(98.0, 500)               # 490 of 500 correct
    assert lo == pytest.approx(96.36, abs=0.01) and hi == pytest.approx(98.91, abs=0.01)
    assert analysis.wilson(100.0, 20)[1] == pytest.approx(100.0)
    assert "no more energy than the fp32 ANN at T <= 8" in energy.balance([40.0, 90.0, 200.0], [4, 8, 16], 100.0)
    worse = energy.balance([769.0, 1500.0], [32, 64], 18.0)
    assert "more energy than the fp32 ANN at every T" in worse and "43x" in worse and "QCFS" in worse
