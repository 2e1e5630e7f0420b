"""Data larger than memory: a directory of .npz shards or an .npy pair, read a batch at a time,
gives exactly the in-memory run (simulate and sweep); bad streamed data is refused in one line."""
import csv
import json
import os

import numpy as np
import pytest

from snn_compiler import artifact
from snn_compiler.cli import main
from snn_compiler.data import DataError
from snn_compiler.data_stream import open_source
from snn_compiler.runs import Runner
from snn_compiler.sim.emulator import simulate
from snn_compiler.sweep import TIMING

from lava_nets import compiled

N = 37   # not a multiple of any shard or batch size used here


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    q, x = compiled("cnn")
    rng = np.random.default_rng(5)
    x = rng.uniform(x.min(), 1.0, (N,) + x.shape[1:])
    y = rng.integers(0, 5, N)
    artifact.save(q, str(d / "net.snnc"))
    np.savez(d / "data.npz", x=x, y=y)
    shards = d / "shards"
    shards.mkdir()
    for i, (lo, hi) in enumerate([(0, 10), (10, 11), (11, 30), (30, N)]):   # uneven, one of a single sample
        np.savez(shards / f"part-{i:03d}.npz", x=x[lo:hi], y=y[lo:hi])
    pair = d / "pair"
    pair.mkdir()
    np.save(pair / "x.npy", x.astype(np.float32))   # stored narrower: each batch is widened like DATA.npz's x
    np.save(pair / "y.npy", y)
    return q, x, y, d


def fields(r):
    return {k: getattr(r, k) for k in ("scores", "predictions", "decision_time", "tied")}


def same(a, b):
    for k, v in fields(a).items():
        w = getattr(b, k)
        assert (v is None) == (w is None), k
        assert v is None or np.array_equal(v, w), k
    assert a.rates == b.rates
    if a.counts is not None:
        assert set(a.counts) == set(b.counts) and all(np.array_equal(a.counts[n], b.counts[n]) for n in a.counts)


@pytest.mark.parametrize("encoding,readout,k", [("constant", "membrane", None), ("poisson", "count", None),
                                                ("poisson", "first-spike", None), ("constant", "k-spikes", 2),
                                                ("poisson", "membrane-sum", None)])
def test_streamed_runs_equal_the_in_memory_run(net, encoding, readout, k):
    q, x, y, d = net
    opts = dict(timesteps=9, encoding=encoding, seed=3, readout=readout, k=k, record=readout == "count")
    want = simulate(q, x, **opts)
    for path in (d / "shards", d / "pair", f"{d / 'pair' / 'x.npy'},{d / 'pair' / 'y.npy'}"):
        src = open_source(path, q.nodes["input"]["shape"], n_outputs=5)
        assert src.streamed and src.n == N and np.array_equal(src.y, y)
        for batch in (4, 256):
            got, _ = Runner(q, src, "reference", batch_size=batch).run(opts)
            same(got, want)


def test_simulate_cli_streams_the_same_results(net, tmp_path, capsys):
    q, x, y, d = net
    outs = {}
    for name, data in (("memory", d / "data.npz"), ("shards", d / "shards"), ("pair", d / "pair")):
        out = tmp_path / f"{name}.npz"
        code = main(["simulate", str(d / "net.snnc"), "--data", str(data), "--timesteps", "6", "--encoding", "poisson",
                     "--batch-size", "8", "--output", str(out), "--json"])
        assert code == 0, capsys.readouterr().err
        outs[name] = (dict(np.load(out)), json.loads(capsys.readouterr().out)["results"][0])
    ref, row = outs["memory"]
    for name, (got, grow) in outs.items():
        assert set(got) == set(ref) and all(np.array_equal(got[k], ref[k]) for k in ref), name
        assert grow["accuracy"] == row["accuracy"] and grow["samples"] == N, name


def test_sweep_over_shards_gives_the_in_memory_rows(net, tmp_path, capsys):
    q, x, y, d = net
    rows = {}
    for name, data in (("memory", d / "data.npz"), ("shards", d / "shards")):
        out = tmp_path / name
        out.mkdir()
        code = main(["sweep", str(d / "net.snnc"), "--data", str(data), "--grid", "timesteps=3,7", "--grid",
                     "encoding=constant,poisson", "--batch-size", "8", "--no-plot", "-o", str(out), "--json"])
        assert code == 0, capsys.readouterr().err
        capsys.readouterr()
        with open(out / "sweep.csv") as f:
            rows[name] = sorted(tuple((k, v) for k, v in r.items() if k not in TIMING + ("fingerprint",))
                                for r in csv.DictReader(f))
    assert rows["memory"] == rows["shards"] and len(rows["memory"]) == 4
    # the synaptic operations are report.analysis's, read from a whole run's recorded counts
    from snn_compiler.report.analysis import events_per_inference
    from snn_compiler.report.energy import energy
    q = artifact.load(str(d / "net.snnc"))
    for row in map(dict, rows["shards"]):
        T, enc = int(row["timesteps"]), row["encoding"]
        r = simulate(q, x, timesteps=T, encoding=enc, seed=0, record=True)
        want = round(float(energy(q, events_per_inference(q, x, r.counts, T, enc, 0))["sops"]), 3)
        assert float(row["sops_per_inference"]) == want, row


def test_peak_memory_of_a_batch_is_bounded(net, monkeypatch):
    """Batches never exceed what was asked, however big a shard; READ_BYTES caps an .npy read."""
    import snn_compiler.data_stream as ds
    q, x, y, d = net
    monkeypatch.setattr(ds, "READ_BYTES", x[0].nbytes * 3)
    src = open_source(d / "pair", q.nodes["input"]["shape"])
    sizes = [len(b) for _, b in src.batches(100)]
    assert max(sizes) <= 2 and sum(sizes) == N   # 3 float64 rows of budget, each counted with its float32 copy


def bad(tmp_path, name, **arrays):
    d = tmp_path / name
    d.mkdir()
    for f, a in arrays.items():
        if f.endswith(".npz"):
            np.savez(d / f, **a)
        else:
            np.save(d / f, a)
    return d


def test_bad_streamed_data_is_refused_in_one_line(net, tmp_path):
    q, x, y, d = net
    shape = q.nodes["input"]["shape"]
    cases = [
        (bad(tmp_path, "empty"), "without .npz shards or x.npy"),
        (bad(tmp_path, "shapes", **{"a.npz": dict(x=x[:3], y=y[:3]), "b.npz": dict(x=x[:3, :, :2], y=y[:3])}),
         "every shard holds samples of one shape"),
        (bad(tmp_path, "labels", **{"a.npz": dict(x=x[:3], y=y[:3]), "b.npz": dict(x=x[:3])}),
         "give labels in every shard or in none"),
        (bad(tmp_path, "nox", **{"a.npz": dict(z=x[:3])}), "no array 'x'"),
        (bad(tmp_path, "ylen", **{"x.npy": x, "y.npy": y[:-1]}), "must be 37 integer labels"),
        (bad(tmp_path, "yrange", **{"x.npy": x, "y.npy": y + 5}), "labels 'y' must be in 0..4"),
        (bad(tmp_path, "fortran", **{"x.npy": np.asfortranarray(x)}), "Fortran order"),
    ]
    cut = bad(tmp_path, "cut", **{"x.npy": x})
    with open(cut / "x.npy", "r+b") as f:
        f.truncate(os.path.getsize(cut / "x.npy") - 8)
    cases.append((cut, "cut short or altered"))
    for path, message in cases:
        with pytest.raises(DataError, match=message) as e:
            open_source(path, shape, n_outputs=5)
        assert "\n" not in str(e.value)
    nan = bad(tmp_path, "nan", **{"x.npy": np.where(np.arange(x.size).reshape(x.shape) == 100, np.nan, x)})
    with pytest.raises(DataError, match="NaN"):   # found in the batch that holds it
        list(open_source(nan, shape).batches(8))


def test_other_backends_refuse_streamed_data(net, capsys):
    q, x, y, d = net
    code = main(["simulate", str(d / "net.snnc"), "--data", str(d / "shards"), "--backend", "ann"])
    assert code == 1 and "runs the reference and float backends" in capsys.readouterr().err
