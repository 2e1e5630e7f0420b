"""Every error is one line; inspect's JSON is always valid JSON; a closed pipe ends inspect quietly."""
import json
import subprocess
import sys

import numpy as np
import pytest

from .tools import assert_refused, snnc

torch = pytest.importorskip("torch")


@pytest.fixture
def net(cnn_files):
    return cnn_files


def test_not_in_snn_form_is_one_line(tmp_path):
    # Linear-Linear chains now compose into one connection (passes/compose_linear.py); two 3x3 convs
    # with nothing between them do not
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, padding=1),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)).eval()
    torch.jit.save(torch.jit.script(model), str(tmp_path / "m.pt"))
    assert_refused(snnc("compile", tmp_path / "m.pt", "--input-shape", "1,6,6", "-o", tmp_path / "o.snnc"),
                   "SNN form", "ReLU")


def test_yaml_error_in_a_profile_is_one_line(net, tmp_path):
    (tmp_path / "p.yaml").write_text("name: x\ncore: {neurons: [1, 2\n  bad: : :\n")
    assert_refused(snnc("compile", net / "model.pt", "--input-shape", "1,8,8", "--profile", tmp_path / "p.yaml",
                        "-o", tmp_path / "o.snnc"), "p.yaml")


def test_inspect_json_is_valid_even_with_nan(monkeypatch, capsys, net):
    from snn_compiler import summary as I
    from snn_compiler.cli import main
    real = I.summary

    def with_nan(q, **kw):
        info = real(q, **kw)
        info["layer_info"][1]["expected_rate"] = float("nan")
        info["extra"] = np.float64("inf")
        return info
    monkeypatch.setattr(I, "summary", with_nan)
    assert main(["inspect", str(net / "net.snnc"), "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert info["layer_info"][1]["expected_rate"] is None and info["extra"] is None


def test_inspect_into_a_closed_pipe_exits_quietly(net):
    p = subprocess.Popen([sys.executable, "-m", "snn_compiler.cli", "inspect", str(net / "net.snnc")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()   # the reader (`head`) is gone before snnc writes
    _, err = p.communicate(timeout=120)
    assert err == b"", err.decode()
    assert p.returncode in (0, 141)
