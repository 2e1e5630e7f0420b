"""--json on every command: exactly one JSON object on stdout, with the result, the warnings and,
on failure, the error; the command's own text goes to stderr."""
import json

import pytest
import torch
from torch import nn

from snn_compiler import cli

COMMANDS = [["compile", "missing.pt", "-o", "o.snnc"], ["simulate", "missing.snnc", "--data", "d.npz"],
            ["inspect", "missing.snnc"], ["check", "missing.snnc", "--data", "d.npz"],
            ["report", "missing.snnc", "--data", "d.npz", "-o", "r.html"],
            ["export", "missing.snnc", "--format", "nir", "-o", "o.nir"],
            ["bin-events", "missing.npz", "--bins", "4", "-o", "o.npz"]]


def one_object(out: str) -> dict:
    obj = json.loads(out)          # raises unless stdout is exactly one JSON document
    assert isinstance(obj, dict)
    return obj


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
def test_a_failure_is_one_json_object_with_the_error(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv + ["--json"]) != 0
    out, err = capsys.readouterr()
    obj = one_object(out)
    assert obj["command"] == argv[0] and obj["ok"] is False and obj["exit_code"] != 0
    assert "missing" in obj["error"] and obj["warnings"] == []
    assert "missing" in err          # the human line is still there, on stderr


def test_success_carries_the_result_and_the_warnings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()), "m.pt")
    assert cli.main(["compile", "m.pt", "--input-shape", "4", "-o", "m.snnc", "--json"]) == 0
    out, _ = capsys.readouterr()
    obj = one_object(out)
    assert obj["ok"] is True and obj["output"] == "m.snnc" and obj["bits"] == 8
    assert any("data-free" in w or "calibration" in w for w in obj["warnings"])   # no --calibration: said
    assert cli.main(["inspect", "m.snnc", "--json"]) == 0
    obj = one_object(capsys.readouterr()[0])
    assert obj["ok"] is True and len(obj["layer_info"]) >= 4
