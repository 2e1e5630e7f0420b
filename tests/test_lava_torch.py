"""Trained-network shapes through the real frontend onto Lava: every model of the test zoo
(strided, dilated, grouped and depthwise convs, padded and adaptive pools, residual blocks with
BatchNorm), compiled with ``--target lava``, runs spike for spike like the reference; and the CLI
path ``snnc compile --target lava`` / ``snnc simulate --backend lava``."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from snn_compiler.backends import lava  # noqa: E402
from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.sim.emulator import simulate  # noqa: E402

from models import zoo  # noqa: E402
from test_lava import assert_same  # noqa: E402

pytestmark = [
    pytest.mark.lava,
    pytest.mark.skipif(not lava.available(),
                       reason="Lava backend needs .venv-lava (Python 3.10, lava-nc 0.10.0); run scripts/bootstrap.sh"),
]


def _compiled(name, bits=8, reset="subtract"):
    from snn_compiler.frontend import from_module
    model, shape = zoo()[name]
    rng = np.random.default_rng(1)
    x = rng.random((24,) + shape).astype(np.float32)
    graph = from_module(model, shape)
    q = compile_model(graph, CompileConfig(bits=bits, reset=reset, calibration=x[:16], timesteps=10, target="lava"),
                      target=lava.TARGET)
    return q, x[16:20]


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("name", sorted(zoo()))
def test_zoo_model_on_lava_matches_reference(name, reset):
    q, x = _compiled(name, reset=reset)
    readout = "count" if reset == "zero" else "membrane"
    ref = simulate(q, x, timesteps=10, readout=readout, encoding="poisson", seed=2, record=True)
    got = lava.run(q, x, timesteps=10, readout=readout, encoding="poisson", seed=2, record=True)
    assert_same(ref, got, readout)


def test_cli_compile_target_lava_then_simulate_backend_lava(tmp_path, monkeypatch, capsys):
    from snn_compiler import backends
    from snn_compiler.cli import main

    monkeypatch.setitem(backends.BACKENDS, "lava", lava.run)      # the lead registers both;
    monkeypatch.setitem(backends.TARGETS, "lava", lava.TARGET)    # harmless when already there
    model, shape = zoo()["resnet"]
    rng = np.random.default_rng(0)
    x = rng.random((20,) + shape).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x[:16])
    np.savez(tmp_path / "data.npz", x=x[16:])
    torch.jit.save(torch.jit.script(model), str(tmp_path / "model.pt"))
    art = tmp_path / "model.snnc"
    assert main(["compile", str(tmp_path / "model.pt"), "--input-shape", "1,8,8", "--calibration",
                 str(tmp_path / "calib.npz"), "--bits", "8", "--target", "lava", "-o", str(art)]) == 0
    for backend in ("reference", "lava"):
        assert main(["simulate", str(art), "--data", str(tmp_path / "data.npz"), "--backend", backend,
                     "--timesteps", "8", "--no-progress", "--output", str(tmp_path / f"{backend}.npz")]) == 0
    with np.load(tmp_path / "reference.npz") as a, np.load(tmp_path / "lava.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
