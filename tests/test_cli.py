"""End to end through the CLI: compile a saved model, simulate on every backend, inspect; errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from snn_compiler.cli import main  # noqa: E402

from models import unsupported, zoo  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    model, shape = zoo()["cnn"]
    rng = np.random.default_rng(0)
    x = rng.random((40,) + shape).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(d / "calib.npz", x=x[:20])
    np.savez(d / "data.npz", x=x, y=y)
    torch.jit.save(torch.jit.script(model), str(d / "model.pt"))
    torch.export.save(torch.export.export(model, (torch.from_numpy(x[:2]),)), str(d / "model.pt2"))
    torch.save(model, str(d / "pickled.pt"))
    return d


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("model", ["model.pt", "model.pt2"])
def test_compile_simulate_inspect(files, capsys, model):
    art = files / (model + ".snnc")
    code, out, err = run(["compile", files / model, "--input-shape", "1,8,8", "--calibration", files / "calib.npz",
                          "--bits", "8", "-o", art], capsys)
    assert code == 0, err
    assert art.exists()
    accs = {}
    for backend in ("reference", "float", "ann"):
        res = files / f"{backend}.npz"
        code, out, err = run(["simulate", art, "--data", files / "data.npz", "--backend", backend, "--timesteps", "64",
                              "--output", res], capsys)
        assert code == 0, err
        assert "accuracy" in out
        with np.load(res) as r:
            assert r["scores"].shape == (40, 10) and r["predictions"].shape == (40,)
            accs[backend] = (r["predictions"] == np.load(files / "data.npz")["y"]).mean()
    assert accs["ann"] == 1.0  # labels are the torch model's own predictions
    assert accs["reference"] >= 0.9 and accs["float"] >= 0.9
    code, out, err = run(["inspect", art], capsys)
    assert code == 0 and "threshold" in out and "Conv2d" in out
    code, out, err = run(["inspect", art, "--json"], capsys)
    info = json.loads(out)
    assert info["bits"] == 8 and any(r["op"] == "IF" and r["threshold"] >= 1 for r in info["layer_info"])


def test_sweep_with_plot_and_poisson_count(files, capsys):
    art = files / "sweep.snnc"
    assert run(["compile", files / "model.pt", "--input-shape", "1,8,8", "--calibration", files / "calib.npz",
                "--reset", "zero", "--bits", "4", "-o", art], capsys)[0] == 0
    code, out, err = run(["simulate", art, "--data", files / "data.npz", "--timesteps", "4,8", "--encoding", "poisson",
                          "--seed", "3", "--readout", "count", "--plot", files / "acc.png"], capsys)
    assert code == 0, err
    assert "T=4" in out and "T=8" in out
    assert (files / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_accuracy_plot_has_the_ann_line(files, capsys, monkeypatch):
    from snn_compiler import plots
    seen = {}
    real = plots.plot_accuracy
    monkeypatch.setattr(plots, "plot_accuracy", lambda *a, **kw: seen.update(kw) or real(*a, **kw))
    art = files / "ann_line.snnc"
    assert run(["compile", files / "model.pt", "--input-shape", "1,8,8", "--calibration", files / "calib.npz",
                "-o", art], capsys)[0] == 0
    assert run(["simulate", art, "--data", files / "data.npz", "--timesteps", "4,8", "--plot",
                files / "ann_line.png"], capsys)[0] == 0
    assert seen["ann"] == 100.0   # the labels are the torch model's own predictions


def test_pickle_is_refused_unless_allowed(files, capsys):
    out_path = files / "p.snnc"
    code, out, err = run(["compile", files / "pickled.pt", "--input-shape", "1,8,8", "--calibration",
                          files / "calib.npz", "-o", out_path], capsys)
    assert code != 0 and "pickle" in err.lower() and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out_path.exists()
    code, out, err = run(["compile", files / "pickled.pt", "--allow-pickle", "--input-shape", "1,8,8",
                          "--calibration", files / "calib.npz", "-o", out_path], capsys)
    assert code == 0, err and out_path.exists()


def test_unsupported_layer_is_named_and_nothing_is_written(files, capsys):
    model, shape, op, where = unsupported()["elu"]
    path = files / "elu.pt"
    torch.jit.save(torch.jit.trace(model, torch.zeros((1,) + shape)), str(path))
    code, out, err = run(["compile", path, "--input-shape", "1,8,8", "--calibration", files / "calib.npz",
                          "-o", files / "mp.snnc"], capsys)
    assert code != 0 and "elu" in err and where in err
    assert not (files / "mp.snnc").exists()


@pytest.mark.parametrize("content", [b"not a model at all", b"PK\x03\x04garbage"])
def test_not_a_model(files, capsys, content):
    p = files / "junk.pt"
    p.write_bytes(content)
    code, out, err = run(["compile", p, "--input-shape", "1,8,8", "--calibration", files / "calib.npz",
                          "-o", files / "j.snnc"], capsys)
    assert code != 0 and "model" in err.lower() and "Traceback" not in err
    assert not (files / "j.snnc").exists()


def test_bad_data_and_bad_artifact(files, capsys):
    np.savez(files / "wrong.npz", x=np.zeros((3, 5)))
    art = files / "model.pt.snnc"
    if not art.exists():
        run(["compile", files / "model.pt", "--input-shape", "1,8,8", "--calibration", files / "calib.npz", "-o", art],
            capsys)
    code, out, err = run(["simulate", art, "--data", files / "wrong.npz", "--output", files / "r.npz"], capsys)
    assert code != 0 and "shape" in err and not (files / "r.npz").exists()
    code, out, err = run(["simulate", files / "calib.npz", "--data", files / "data.npz"], capsys)
    assert code != 0 and "not an snnc artifact" in err
    code, out, err = run(["compile", files / "model.pt", "--input-shape", "1,8,8", "--bits", "1",
                          "--calibration", files / "calib.npz", "-o", files / "b.snnc"], capsys)
    assert code != 0 and "--bits" in err


def test_console_script_and_debug_traceback(files):
    exe = os.path.join(os.path.dirname(sys.executable), "snnc")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "compile" in r.stdout and "simulate" in r.stdout
    r = subprocess.run([exe, "--debug", "simulate", str(files / "nope.snnc"), "--data", str(files / "data.npz")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" in r.stderr


@pytest.mark.parametrize("args, words", [
    (["--bits", "0"], ["--bits", "2..16", "got 0"]),
    (["--input-bits", "0"], ["--input-bits", "got 0"]),
    (["--timesteps", "0"], ["--timesteps", "got 0"]),
    (["--timesteps", "20000"], ["--timesteps", "1..10000", "got 20000"]),
    (["--timesteps", "1000000000"], ["--timesteps", "1..10000"]),
    (["--chips", "0", "--target", "lava"], ["--chips", "got 0"]),
    (["--target", "lava", "--profile", ""], ["profile ''"]),
], ids=["bits-0", "input-bits-0", "timesteps-0", "timesteps-20000", "timesteps-1e9", "chips-0", "profile-empty"])
def test_a_value_given_is_validated_never_replaced_by_the_default(files, capsys, args, words):
    """0, an empty string and a T no engine runs are values the user gave: refused on one line
    naming the flag, nothing written (before: --bits 0 compiled 8-bit weights, --timesteps 20000
    compiled a network no engine would run)."""
    code, out, err = run(["compile", files / "model.pt", "--input-shape", "1,8,8", "--calibration", files / "calib.npz",
                          *args, "-o", files / "zero.snnc"], capsys)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]
    assert not (files / "zero.snnc").exists()


def test_an_empty_timesteps_list_is_refused_not_the_artifacts(files, capsys):
    art = files / "model.pt.snnc"
    if not art.exists():
        run(["compile", files / "model.pt", "--input-shape", "1,8,8", "--calibration", files / "calib.npz", "-o", art],
            capsys)
    for command in (["simulate", art, "--data", files / "data.npz"], ["check", art, "--data", files / "data.npz",
                                                                        "--backends", "reference,float"]):
        code, out, err = run([*command, "--timesteps", ""], capsys)
        assert code == 1 and "--timesteps" in err, err


def test_the_targets_default_bits_apply_only_when_none_are_given():
    from snn_compiler.targets import get_target
    assert get_target("reference").weight_bits(None) == 8 and get_target("truenorth").weight_bits(None) == 4
    assert get_target("reference").weight_bits(0) == 0  # passed on, for CompileConfig to refuse


def test_compile_channel_wise_from_the_cli(files, capsys):
    art = files / "cw.snnc"
    code, out, err = run(["compile", files / "model.pt2", "--calibration", files / "calib.npz", "--channel-wise",
                          "-o", art], capsys)
    assert code == 0, err
    from snn_compiler import artifact
    g = artifact.load(art)
    assert g.graph["snnc"]["channel_wise"] is True
    code, out, err = run(["simulate", art, "--data", files / "data.npz", "--timesteps", "64"], capsys)
    assert code == 0, err
