"""Fixtures of the hostile-input tests (tools in tools.py)."""
import numpy as np
import pytest

from .tools import snapshot, snnc


@pytest.fixture(scope="session")
def cnn_files(tmp_path_factory):
    """A folder with model.pt (the zoo's small CNN, TorchScript), calib.npz (12 samples), data.npz
    (24 samples labelled with the model's own predictions) and net.snnc compiled from them.
    Tests must leave it as they found it."""
    torch = pytest.importorskip("torch")
    from models import zoo
    d = tmp_path_factory.mktemp("cnn")
    model, shape = zoo()["cnn"]
    x = np.random.default_rng(0).random((24,) + shape).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(d / "calib.npz", x=x[:12])
    np.savez(d / "data.npz", x=x, y=y)
    torch.jit.save(torch.jit.script(model), str(d / "model.pt"))
    proc = snnc("compile", d / "model.pt", "--input-shape", "1,8,8", "--calibration", d / "calib.npz", "-o", d / "net.snnc")
    assert proc.returncode == 0, proc.stderr
    return d


@pytest.fixture
def unchanged():
    """``with unchanged(folder): ...`` asserts that nothing under ``folder`` was added, removed or changed."""
    from contextlib import contextmanager

    @contextmanager
    def watch(folder):
        before = snapshot(folder)
        yield
        after = snapshot(folder)
        assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                                 if before.get(k) != after.get(k)}
    return watch
