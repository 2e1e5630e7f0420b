"""The --ray option of snnc simulate and snnc sweep: each command starts its own local cluster
(--ray local) and gives exactly the local command's results; without ray, --ray is refused before
any work, naming the extra that brings it; a bad address is one line."""
import csv
import json

import numpy as np
import pytest

from snn_compiler import artifact
from snn_compiler.cli import main
from snn_compiler.sweep import TIMING

from lava_nets import compiled


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("raycli")
    q, x = compiled("mlp")
    rng = np.random.default_rng(1)
    x = rng.uniform(x.min(), 1.0, (30,) + x.shape[1:])
    artifact.save(q, str(d / "net.snnc"))
    np.savez(d / "data.npz", x=x, y=rng.integers(0, 5, len(x)))
    return d


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_without_ray_the_option_names_the_extra(files, tmp_path, capsys, monkeypatch):
    import snn_compiler.extras as extras
    real = extras.importlib.util.find_spec
    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    out = tmp_path / "r.npz"
    code, _, err = run(capsys, "simulate", files / "net.snnc", "--data", files / "data.npz", "--ray", "local",
                       "--output", out)
    assert code == 1 and "pip install 'snnc[ray]'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    (tmp_path / "sw").mkdir()
    code, _, err = run(capsys, "sweep", files / "net.snnc", "--data", files / "data.npz", "--ray", "auto",
                       "--no-plot", "-o", tmp_path / "sw")
    assert code == 1 and "pip install 'snnc[ray]'" in err
    assert not (tmp_path / "sw" / "sweep.csv").exists()


@pytest.mark.parametrize("args,message", [(["--ray", "nowhere"], "expected local"),
                                          (["--workers", "2"], "--workers applies with --ray only"),
                                          (["--ray", "local", "--backend", "ann"], "runs the reference and float"),
                                          (["--ray", "local", "--workers", "0"], "--workers must be >= 1")])
def test_bad_ray_options_are_one_line(files, capsys, args, message):
    code, _, err = run(capsys, "simulate", files / "net.snnc", "--data", files / "data.npz", *args)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_an_address_nobody_answers_is_one_line_at_once(files, capsys):
    """Ray would retry it for minutes; a TCP probe refuses it in one line."""
    pytest.importorskip("ray")
    code, _, err = run(capsys, "simulate", files / "net.snnc", "--data", files / "data.npz", "--ray", "127.0.0.1:1")
    assert code == 1 and "no Ray cluster answers there" in err and len(err.strip().splitlines()) == 1


def test_simulate_on_ray_equals_simulate(files, tmp_path, capsys):
    pytest.importorskip("ray")
    outs = {}
    for name, extra in (("local", []), ("ray", ["--ray", "local", "--workers", "2"])):
        out = tmp_path / f"{name}.npz"
        code, stdout, err = run(capsys, "simulate", files / "net.snnc", "--data", files / "data.npz", "--timesteps",
                                "4,9", "--encoding", "poisson", "--readout", "first-spike", "--batch-size", "4",
                                "--output", out, "--json", *extra)
        assert code == 0, err
        outs[name] = (dict(np.load(out)), json.loads(stdout)["results"])
    (a, rows_a), (b, rows_b) = outs["local"], outs["ray"]
    assert set(a) == set(b) == {"scores", "predictions", "decision_time", "tied"}
    assert all(np.array_equal(a[k], b[k]) for k in a)
    drop = ("seconds", "sample_timesteps_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows_a] == \
           [{k: v for k, v in r.items() if k not in drop} for r in rows_b]


def test_sweep_on_ray_gives_the_local_rows_and_resumes(files, tmp_path, capsys):
    pytest.importorskip("ray")
    grid = ["--grid", "timesteps=2,6", "--grid", "encoding=constant,poisson", "--grid", "readout=membrane,first-spike"]
    rows = {}
    for name, extra in (("local", []), ("ray", ["--ray", "local", "--workers", "2"])):
        out = tmp_path / name
        out.mkdir()
        code, stdout, err = run(capsys, "sweep", files / "net.snnc", "--data", files / "data.npz", *grid,
                                "--batch-size", "4", "--no-plot", "-o", out, "--json", *extra)
        assert code == 0, err
        assert json.loads(stdout)["ran"] == 8
        with open(out / "sweep.csv") as f:
            rows[name] = sorted(tuple((k, v) for k, v in r.items() if k not in TIMING) for r in csv.DictReader(f))
    assert rows["local"] == rows["ray"] and len(rows["ray"]) == 8
    # a cut table (a killed sweep) reruns only its missing rows, on Ray as well
    table = tmp_path / "ray" / "sweep.csv"
    lines = table.read_text().splitlines(keepends=True)
    table.write_text("".join(lines[:5]) + lines[5][:10])   # 4 rows kept, the 5th cut mid-line
    code, stdout, err = run(capsys, "sweep", files / "net.snnc", "--data", files / "data.npz", *grid,
                            "--batch-size", "4", "--no-plot", "-o", tmp_path / "ray", "--json", "--ray", "local")
    assert code == 0, err
    assert json.loads(stdout)["ran"] == 4 and json.loads(stdout)["skipped"] == 4
    with open(table) as f:
        again = sorted(tuple((k, v) for k, v in r.items() if k not in TIMING) for r in csv.DictReader(f))
    assert again == rows["local"]


def test_a_killed_ray_sweep_keeps_its_rows_and_leaves_no_cluster(files, tmp_path, capsys):
    """SIGTERM mid-sweep (Ray sets its own SIGTERM handler, which snnc's replaces again): exit 143
    with the usual lines, the finished rows kept, the local cluster's processes gone; the rerun
    runs only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time
    pytest.importorskip("ray")
    out = tmp_path / "k"
    out.mkdir()
    argv = ["sweep", str(files / "net.snnc"), "--data", str(files / "data.npz"), "--grid",
            "timesteps=" + ",".join(str(t) for t in range(3000, 3008)), "--no-plot", "-o", str(out),
            "--ray", "local", "--workers", "2"]
    p = subprocess.Popen([sys.executable, "-m", "snn_compiler.cli", *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    table = out / "sweep.csv"
    deadline = time.time() + 180
    while p.poll() is None and time.time() < deadline:
        if table.exists() and len(table.read_text().splitlines()) >= 2:   # header and one row
            p.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "rows finished and are kept" in err and "terminated by signal 15" in err
    kept = len(table.read_text().splitlines()) - 1
    assert 1 <= kept < 8
    time.sleep(2)
    left = subprocess.run(["pgrep", "-g", str(p.pid)], capture_output=True, text=True).stdout.split()
    assert not left, f"processes of the killed sweep's cluster are still running: {left}"
    code, stdout, err = run(capsys, *argv, "--json")
    assert code == 0, err
    assert json.loads(stdout)["ran"] == 8 - kept
