"""snnc sweep: the grid's rows equal snnc simulate's runs; resumable; a pool gives the same rows."""
import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from snn_compiler.cli import main  # noqa: E402
from snn_compiler.sweep import TIMING  # noqa: E402


GRID = ["--grid", "bits=3,8", "--grid", "timesteps=2,5", "--grid", "encoding=constant,poisson"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small MLP trained a few seconds on digits: its rows differ with bits, T and encoding, so a row
    that ran the wrong setting shows (the zoo's random nets predict one class almost everywhere)."""
    pytest.importorskip("sklearn")
    from snn_compiler.demo import digits_split
    d = tmp_path_factory.mktemp("sweep")
    x_tr, x_te, y_tr, y_te = digits_split()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.eval()
    np.savez(d / "calib.npz", x=x_tr[:100])
    np.savez(d / "data.npz", x=x_te[:40], y=y_te[:40])
    torch.jit.save(torch.jit.script(model), str(d / "model.pt"))
    return d


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def sweep(files, out, capsys, *extra):
    out.mkdir(exist_ok=True)
    code, stdout, err = run(["sweep", files / "model.pt", "--data", files / "data.npz", "--calibration",
                             files / "calib.npz", *GRID, *extra, "-o", out, "--json"], capsys)
    assert code == 0, err
    return json.loads(stdout)


def rows_of(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def untimed(rows):
    return sorted(tuple((k, v) for k, v in r.items() if k not in TIMING) for r in rows)


def test_rows_equal_simulate_and_resume(files, tmp_path, capsys):
    out = tmp_path / "out"
    s = sweep(files, out, capsys)
    assert s["ran"] == 8 and s["skipped"] == 0 and len(s["rows"]) == 8
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "sweep.json").read_text())["rows"] == s["rows"]
    table = rows_of(out / "sweep.csv")
    assert len({r["accuracy"] for r in table}) >= 3, table   # the settings matter here
    assert len(table) == 8
    assert {(r["bits"], r["timesteps"], r["encoding"]) for r in table} == {
        (b, t, e) for b in ("3", "8") for t in ("2", "5") for e in ("constant", "poisson")}
    # every row is what snnc simulate gives on the artifact the sweep compiled for its bits
    for bits in ("3", "8"):
        art = files / f"b{bits}.snnc"
        code, _, err = run(["compile", files / "model.pt", "--calibration", files / "calib.npz", "--bits", bits,
                            "-o", art], capsys)
        assert code == 0, err
        for r in (r for r in s["rows"] if r["bits"] == bits):
            code, stdout, err = run(["simulate", art, "--data", files / "data.npz", "--timesteps", r["timesteps"],
                                     "--encoding", r["encoding"], "--json"], capsys)
            assert code == 0, err
            assert json.loads(stdout)["results"][0]["accuracy"] == r["accuracy"]
            assert r["samples"] == 40 and r["sops_per_inference"] > 0
    # a rerun runs nothing; two deleted rows are run again, and only they
    again = sweep(files, out, capsys)
    assert again["ran"] == 0 and again["skipped"] == 8 and again["rows"] == s["rows"]
    lines = (out / "sweep.csv").read_text().splitlines(keepends=True)
    (out / "sweep.csv").write_text("".join(lines[:3] + lines[5:]))
    third = sweep(files, out, capsys)
    assert third["ran"] == 2 and third["skipped"] == 6
    assert untimed(rows_of(out / "sweep.csv")) == untimed(table)
    # a row cut off by a kill is dropped and run again
    (out / "sweep.csv").write_text("".join(lines[:-1]) + lines[-1][:10])
    fourth = sweep(files, out, capsys)
    assert fourth["ran"] == 1 and untimed(rows_of(out / "sweep.csv")) == untimed(table)
    # other input files: their rows are not the old ones
    np.savez(files / "data2.npz", x=np.load(files / "data.npz")["x"][:10], y=np.load(files / "data.npz")["y"][:10])
    code, stdout, err = run(["sweep", files / "model.pt", "--data", files / "data2.npz", "--calibration",
                             files / "calib.npz", "--grid", "timesteps=4", "-o", out, "--json", "--no-plot"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["ran"] == 1


def test_workers_give_the_same_rows(files, tmp_path, capsys):
    one = sweep(files, tmp_path / "one", capsys, "--no-plot", "--grid", "seed=0,1")
    two = sweep(files, tmp_path / "two", capsys, "--no-plot", "--grid", "seed=0,1", "--workers", "2")
    assert one["ran"] == two["ran"] == 16
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in one["rows"]]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in two["rows"]]
    assert untimed(rows_of(tmp_path / "one" / "sweep.csv")) == untimed(rows_of(tmp_path / "two" / "sweep.csv"))


def test_ray_gives_the_same_rows_over_compiled_settings(files, tmp_path, capsys):
    """2 bit widths x 2 T x 2 encodings from the model file: on a local Ray cluster of 2 workers
    (each reads both artifacts once) the rows are the local sweep's, timing aside."""
    pytest.importorskip("ray")
    local = sweep(files, tmp_path / "local", capsys, "--no-plot")
    on_ray = sweep(files, tmp_path / "ray", capsys, "--no-plot", "--ray", "local", "--workers", "2")
    assert local["ran"] == on_ray["ran"] == 8
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in local["rows"]]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in on_ray["rows"]]


def test_artifact_input_reuses_it(files, tmp_path, capsys):
    art = files / "art.snnc"
    assert run(["compile", files / "model.pt", "--calibration", files / "calib.npz", "-o", art], capsys)[0] == 0
    out = tmp_path / "a"
    out.mkdir()
    code, stdout, err = run(["sweep", art, "--data", files / "data.npz", "--grid", "timesteps=2,4", "--grid",
                             "readout=count,first-spike", "-o", out, "--json", "--no-plot"], capsys)
    assert code == 0, err
    s = json.loads(stdout)
    assert s["ran"] == 4 and {r["bits"] for r in s["rows"]} == {"8"}
    assert not (out / "artifacts").exists()
    latency = [r for r in s["rows"] if r["readout"] == "first-spike"]
    assert all(r["sops_per_inference"] is None for r in latency)


@pytest.mark.parametrize("grid, message", [
    (["--grid", "colour=1,2"], "unknown key"),
    (["--grid", "timesteps="], "empty value"),
    (["--grid", "timesteps=4,,8"], "empty value"),
    (["--grid", "timesteps=4", "--grid", "timesteps=8"], "given twice"),
    (["--grid", "timesteps=4,4"], "repeated"),
    (["--grid", "timesteps=0"], "outside"),
    (["--grid", "bits=x"], "not a whole number"),
    (["--grid", "encoding=morse"], "not one of"),
    (["--grid", "readout=k-spikes"], "not one of"),
    (["--grid", "norm=max,bogus"], "--grid norm: --norm must be"),
    (["--grid", "timesteps"], "KEY=V1,V2"),
    (["--workers", "0"], "--workers must be >= 1"),
])
def test_bad_grids_refused_in_one_line(files, tmp_path, capsys, grid, message):
    code, out, err = run(["sweep", files / "model.pt", "--data", files / "data.npz", *grid, "-o", tmp_path,
                          "--no-plot"], capsys)
    assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "sweep.csv").exists()


def test_compile_keys_refused_for_an_artifact(files, tmp_path, capsys):
    art = files / "art2.snnc"
    assert run(["compile", files / "model.pt", "--calibration", files / "calib.npz", "-o", art], capsys)[0] == 0
    code, _, err = run(["sweep", art, "--data", files / "data.npz", "--grid", "bits=4", "-o", tmp_path], capsys)
    assert code == 1 and "only run parameters" in err and len(err.strip().splitlines()) == 1


ROWS = 400   # rows of the killed sweep's grid (a few ms each)


def test_a_killed_sweep_keeps_its_finished_rows(files, tmp_path, capsys):
    """SIGTERM in the middle: the finished rows stay in sweep.csv, whole; the rerun runs only the rest. A row
    takes milliseconds, so the grid is long enough that a poll of this process starved by a busy machine
    (CI's other jobs) still lands before the last row (8 rows all finished once under CI's load)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    art = files / "killed.snnc"
    assert run(["compile", files / "model.pt", "--calibration", files / "calib.npz", "-o", art], capsys)[0] == 0
    out = tmp_path / "k"
    out.mkdir()
    argv = ["sweep", str(art), "--data", str(files / "data.npz"), "--grid",
            "timesteps=" + ",".join(str(t) for t in range(1000, 1000 + ROWS)), "--no-plot", "-o", str(out)]
    p = subprocess.Popen([sys.executable, "-m", "snn_compiler.cli", *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    table = out / "sweep.csv"
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        if table.exists() and len(table.read_text().splitlines()) >= 2:   # header and one row
            p.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "rows finished and are kept" in err
    kept = rows_of(table)
    assert 1 <= len(kept) < ROWS and table.read_text().endswith("\n")
    assert not (out / "sweep.json").exists()
    code, stdout, err = run([*argv, "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["ran"] == ROWS - len(kept) and len(rows_of(table)) == ROWS
    assert os.listdir(out) == ["sweep.csv"] or sorted(os.listdir(out)) == ["sweep.csv", "sweep.json"]


def test_norm_is_compiled_once_per_setting(files, tmp_path, capsys):
    s = sweep(files, tmp_path / "n", capsys, "--no-plot", "--grid", "norm=max,percentile:99")
    assert s["ran"] == 16
    assert len(list((tmp_path / "n" / "artifacts").iterdir())) == 4   # 2 bits x 2 norms
    assert {r["norm"] for r in s["rows"]} == {"max", "percentile:99"}
