"""Data beyond the calibration range: the input layer clips it, and snnc simulate says so (issue 19, item 6)."""
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(__file__))
from cli_run import run_in_process  # noqa: E402
from models import zoo  # noqa: E402

from snn_compiler.input_range import clipped_input_warning  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.sim.encode import quantize_input  # noqa: E402


@pytest.mark.parametrize("signed", [False, True])
def test_the_warning_counts_exactly_the_values_the_encoder_clips(signed):
    inp = O.Input(shape=(4,), scale=2.0, bits=8, signed=signed)
    step = 2.0 / inp.levels
    edges = np.array([2.0, 2.0 + step / 2, 2.0 + step / 2 - 1e-9, -step / 2, -step / 2 - 1e-9,
                      -2.0 - step / 2, -2.0 - step / 2 + 1e-9, 0.3])
    x = np.concatenate([edges, np.random.default_rng(0).normal(size=1000) * 2])
    clipped = np.rint(x / 2.0 * inp.levels) != quantize_input(inp, x)
    assert clipped.any() and not clipped.all()
    assert clipped_input_warning(inp, x[~clipped]) is None
    assert clipped_input_warning(inp, x[clipped]).startswith("100% of the input values lie outside")
    msg = clipped_input_warning(inp, x)
    assert msg.startswith(f"{100 * clipped.mean():.3g}% of the input values") and ("[-2, 2]" if signed else "[0, 2]") in msg
    assert clipped_input_warning(O.Input(shape=(4,)), x) is None  # not normalised yet (the compile's calibration)


def test_snnc_simulate_warns_when_the_data_lie_beyond_the_calibration_range(tmp_path):
    model, shape = zoo()["cnn"]
    x = np.random.default_rng(0).random((30,) + shape).astype(np.float32)  # calibration in [0, 1]
    np.savez(tmp_path / "calib.npz", x=x[:20])
    np.savez(tmp_path / "same.npz", x=x[20:])
    np.savez(tmp_path / "wide.npz", x=x[20:] * 16)  # a newcomer's data, 16x the range
    torch.export.save(torch.export.export(model, (torch.from_numpy(x[:2]),)), str(tmp_path / "m.pt2"))
    art = tmp_path / "m.snnc"
    r = run_in_process(["compile", tmp_path / "m.pt2", "--calibration", tmp_path / "calib.npz", "-o", art])
    assert r.returncode == 0, r.stderr
    top = float(x[:20].max())
    r = run_in_process(["simulate", art, "--data", tmp_path / "same.npz", "--timesteps", "4"])
    assert r.returncode == 0 and "outside the range" not in r.stderr, r.stderr
    r = run_in_process(["simulate", art, "--data", tmp_path / "wide.npz", "--timesteps", "4"])
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stderr.splitlines() if "outside the range" in ln)
    assert f"calibrated on [0, {top:.4g}]" in line and "clips them" in line
