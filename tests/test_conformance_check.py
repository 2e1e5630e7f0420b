"""``snnc check`` logic (snn_compiler.conformance): two backends on one network, compared.

Small nets from lava_nets (the real compile pipeline, no torch). A fake backend plants a
divergence (one neuron, from one timestep on) so the report can be checked against the plant.
"""
import copy
import json

import numpy as np
import pytest

from snn_compiler import backends as B
from snn_compiler.backends import lava
from snn_compiler.conformance import RATE_TOLERANCE, compare_backends, format_result
from snn_compiler.ir import op_of
from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.encode import input_chunks, input_steps

from lava_nets import compiled

T = 12


@pytest.fixture(scope="module")
def cnn():
    q, _ = compiled("cnn")
    x = np.random.default_rng(1).uniform(-0.2, 1.0, (10,) + _.shape[1:])
    return q, x


@pytest.mark.parametrize("encoding", ["constant", "poisson"])
def test_reference_engines_identical(cnn, encoding):
    q, x = cnn
    r = compare_backends(q, x, ("reference", "reference-numpy"), timesteps=T, encoding=encoding)
    assert r["identical"] and r["passed"] and r["first_divergence"] is None
    assert list(r["layers"]) == ["relu1", "relu2"]  # neuron layers, topological order (membrane read-out)
    assert all(s["identical"] and s["max_abs_diff"] == 0 for s in r["layers"].values())
    assert sum(int(c.sum()) for c in simulate(q, x, timesteps=T, record=True).counts.values()) > 0
    assert "IDENTICAL" in format_result(r)


@pytest.mark.parametrize("encoding", ["constant", "poisson"])
def test_runs_are_prefix_consistent(cnn, encoding):
    """What the bisection rests on: the first t steps of a T-step run are a t-step run, and a sample's
    run does not depend on the samples batched with it (its Poisson stream is its index's)."""
    q, x = cnn
    inp = op_of(q, "input")
    full = list(input_steps(inp, x, T, encoding, seed=3))
    for t in (1, 5, T):
        assert all(np.array_equal(a, b) for a, b in zip(full[:t], input_steps(inp, x, t, encoding, seed=3)))
    chunked = np.concatenate(list(input_chunks(inp, x, T, encoding, 3, chunk=5)))
    assert np.array_equal(chunked, np.stack(full))
    prev = None
    for t in range(1, T + 1):  # cumulative counts grow by 0 or 1 spike per neuron and step
        r = simulate(q, x, timesteps=t, encoding=encoding, seed=3, record=True, batch_size=4)
        if prev is not None:
            for n, c in r.counts.items():
                assert set(np.unique(c - prev.counts[n])) <= {0, 1}, (n, t)
        prev = r
    k = 6  # the re-run of one sample (with those before it) equals its row in the full run
    alone = simulate(q, x[:k + 1], timesteps=T, encoding=encoding, seed=3, record=True)
    assert all(np.array_equal(alone.counts[n][k], prev.counts[n][k]) for n in prev.counts)


def plant(monkeypatch, q, x, sample, layer, neuron, t0, what="count"):
    """Register backend "planted": the reference, except that the row equal to x[sample] gains one
    spike per step at ``neuron`` of ``layer`` from step t0 on (or, what="membrane", one unit of
    output membrane): consistent from step to step, like a real divergence."""
    target = np.asarray(x[sample])
    calls = []

    def run(graph, xs, **kw):
        res = simulate(graph, xs, mode="int", **kw)
        extra = max(0, kw["timesteps"] - t0 + 1)
        calls.append((len(xs), kw["timesteps"]))
        for row in np.flatnonzero([np.array_equal(r, target) for r in np.asarray(xs)]):
            arr = res.counts[layer] if what == "count" else res.scores
            arr[row].flat[neuron] += extra
        return res

    monkeypatch.setitem(B.BACKENDS, "planted", run)
    return calls


@pytest.mark.parametrize("encoding", ["constant", "poisson"])
@pytest.mark.parametrize("t0", [1, 7, T])
def test_planted_divergence_is_named(monkeypatch, cnn, encoding, t0):
    q, x = cnn
    calls = plant(monkeypatch, q, x, sample=4, layer="relu2", neuron=5, t0=t0)
    r = compare_backends(q, x, ("reference", "planted"), timesteps=T, encoding=encoding, seed=2)
    assert not r["identical"] and not r["passed"]
    assert r["layers"]["relu1"]["identical"] and not r["layers"]["relu2"]["identical"]
    fd = r["first_divergence"]
    shape = q.nodes["relu2"]["shape"]
    ref = simulate(q, x, timesteps=t0, encoding=encoding, seed=2, record=True).counts["relu2"][4].flat[5]
    assert fd == {"sample": 4, "layer": "relu2", "neuron": 5, "index": list(np.unravel_index(5, shape)),
                  "timestep": t0, "quantity": "count", "values": {"reference": int(ref), "planted": int(ref) + 1}}
    # cheap: only the diverging sample is re-run (Poisson: with the samples before it), log2 T times
    assert all(n == (1 if encoding == "constant" else 5) for n, _ in calls[1:])
    assert len(calls) <= 2 + int(np.ceil(np.log2(T)))
    text = format_result(r)
    assert f"DIVERGED: first at sample 4, layer relu2, neuron 5" in text and f"timestep {t0}" in text


def test_planted_readout_divergence(monkeypatch, cnn):
    """Counts all equal, the output membrane not: the read-out is named, as a membrane value."""
    q, x = cnn
    plant(monkeypatch, q, x, sample=2, layer=None, neuron=3, t0=9, what="membrane")
    r = compare_backends(q, x, ("reference", "planted"), timesteps=T, readout="membrane")
    fd = r["first_divergence"]
    assert (fd["sample"], fd["layer"], fd["neuron"], fd["timestep"], fd["quantity"]) == (2, "output", 3, 9, "membrane")
    assert fd["values"]["planted"] == fd["values"]["reference"] + 1
    assert all(s["identical"] for s in r["layers"].values()) and not r["readout_stats"]["identical"]


def test_divergence_that_needs_the_batch(monkeypatch, cnn):
    """A backend whose result depends on batching: named at T with a note, not bisected."""
    q, x = cnn

    def run(graph, xs, **kw):
        res = simulate(graph, xs, mode="int", **kw)
        if len(xs) > 1:
            res.counts["relu1"][3].flat[0] += 1
        return res

    monkeypatch.setitem(B.BACKENDS, "batchy", run)
    fd = compare_backends(q, x, ("reference", "batchy"), timesteps=T)["first_divergence"]
    assert (fd["sample"], fd["layer"], fd["neuron"], fd["timestep"]) == (3, "relu1", 0, None)
    assert "batching" in fd["note"]


def test_float_within_tolerance_and_perturbed_out():
    q, x = compiled("mlp")
    x = np.random.default_rng(1).uniform(-0.2, 1.0, (100,) + x.shape[1:])
    r = compare_backends(q, x, ("reference", "float"), timesteps=16)
    assert r["mode"] == "tolerance" and r["within_tolerance"] and r["passed"], format_result(r)
    assert r["tolerance"] == RATE_TOLERANCE
    assert max(s["mean_abs_rate_diff"] for s in r["layers"].values()) < RATE_TOLERANCE / 4  # measured ~0.005
    assert "WITHIN TOLERANCE" in format_result(r) and "0.05 spikes/neuron/step" in format_result(r)

    bad = copy.deepcopy(q)
    op_of(bad, "relu1").threshold *= 2  # the integer layer fires at half the rate it should
    r = compare_backends(bad, x, ("reference", "float"), timesteps=16)
    assert not r["passed"] and not r["layers"]["relu1"]["within_tolerance"], format_result(r)
    assert "OUT OF TOLERANCE" in format_result(r)
    # the same perturbation passes a tolerance wide enough to hold it
    assert compare_backends(bad, x, ("reference", "float"), timesteps=16, tolerance=1.0, min_agreement=0)["passed"]


def test_refusals(cnn):
    q, x = cnn
    with pytest.raises(ValueError, match="no spikes"):
        compare_backends(q, x, ("reference", "ann"), timesteps=T)
    with pytest.raises(ValueError, match="exactly two"):
        compare_backends(q, x, ("reference",), timesteps=T)
    with pytest.raises(ValueError, match="unknown backend"):
        compare_backends(q, x, ("reference", "nope"), timesteps=T)
    with pytest.raises(ValueError, match="tolerance"):
        compare_backends(q, x, ("reference", "float"), timesteps=T, tolerance=float("nan"))


def test_json_output(monkeypatch, cnn):
    q, x = cnn
    plant(monkeypatch, q, x, sample=1, layer="relu1", neuron=0, t0=3)
    for pair in (("reference", "planted"), ("reference", "reference-numpy"), ("reference", "float")):
        r = compare_backends(q, x, pair, timesteps=T)
        back = json.loads(json.dumps(r, allow_nan=False))
        assert back == r and {"identical", "within_tolerance", "passed", "backends", "timesteps", "samples",
                              "layers", "first_divergence"} <= set(back)


@pytest.mark.lava
@pytest.mark.skipif(not lava.available(), reason="Lava backend needs .venv-lava; run scripts/bootstrap.sh")
def test_reference_and_lava_identical():
    q, x = compiled("mlp", target=lava.TARGET)
    r = compare_backends(q, x[:4], ("reference", "lava"), timesteps=10, encoding="poisson", readout="count")
    assert r["identical"] and r["first_divergence"] is None, format_result(r)
    assert list(r["layers"]) == ["relu1", "relu2", "output"]


def test_cli_check_exit_codes(monkeypatch, cnn, tmp_path, capsys):
    """Through `snnc check`: 0 when identical, 3 on a divergence (named), 1 on an error."""
    from snn_compiler import artifact
    from snn_compiler.cli import main
    q, x = cnn
    artifact.save(q, tmp_path / "net.snnc")
    np.savez(tmp_path / "d.npz", x=x)
    base = ["check", str(tmp_path / "net.snnc"), "--data", str(tmp_path / "d.npz"), "--timesteps", str(T)]
    assert main(base + ["--backends", "reference,reference-numpy"]) == 0
    assert "identical" in capsys.readouterr().out.lower()
    plant(monkeypatch, q, x, sample=2, layer="relu2", neuron=7, t0=5)
    assert main(base + ["--backends", "reference,planted", "--json"]) == 3
    fd = json.loads(capsys.readouterr().out)["first_divergence"]
    assert (fd["sample"], fd["layer"], fd["neuron"], fd["timestep"]) == (2, "relu2", 7, 5)
    assert main(base + ["--backends", "reference,ann"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
