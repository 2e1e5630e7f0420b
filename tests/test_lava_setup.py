"""`snnc setup-lava`: a pip user's one command for the Lava backend's environment. It builds a
Python 3.10 venv from the shipped lock, copies this snnc into it, records it, and the backend then
finds it without a checkout's .venv-lava and runs spike for spike like the reference."""
import numpy as np
import pytest

from snn_compiler import cli
from snn_compiler.backends import lava
from snn_compiler.backends.lava import environment
from snn_compiler.sim.emulator import simulate

from lava_nets import compiled


def _python310():
    try:
        return environment.default_python310()
    except RuntimeError:
        return None


pytestmark = [pytest.mark.lava, pytest.mark.slow,
              pytest.mark.skipif(_python310() is None, reason="no Python 3.10 on this machine")]


@pytest.fixture
def no_checkout_env(tmp_path, monkeypatch):
    """As a pip install sees it: no SNNC_LAVA_PYTHON, no checkout .venv-lava, config under tmp."""
    monkeypatch.delenv("SNNC_LAVA_PYTHON", raising=False)
    monkeypatch.setattr(environment, "REPO", tmp_path / "no-checkout")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def test_without_an_environment_the_message_names_the_command(no_checkout_env):
    assert not lava.available()
    with pytest.raises(lava.LavaError, match=r"snnc setup-lava"):
        lava.lava_python()


def test_setup_lava_then_the_backend_runs_equal_to_the_reference(no_checkout_env, capsys):
    env_dir = no_checkout_env / "lava-venv"
    assert cli.main(["setup-lava", "--dir", str(env_dir)]) == 0
    recorded = (no_checkout_env / "config" / "snnc" / "lava-python").read_text().strip()
    assert recorded == str(env_dir / "bin" / "python") and lava.lava_python() == recorded
    assert (env_dir / "snnc-core" / "snn_compiler" / "backends" / "lava" / "worker.py").is_file()
    q, x = compiled("mlp", target=lava.TARGET)
    ref = simulate(q, x, timesteps=8, readout="count", record=True)
    got = lava.run(q, x, timesteps=8, readout="count", record=True)
    assert np.array_equal(ref.scores, got.scores)
    assert all(np.array_equal(ref.counts[k], got.counts[k]) for k in ref.counts)
    # a second run reuses the environment; a folder that is not one is refused, nothing changed
    assert cli.main(["setup-lava", "--dir", str(env_dir)]) == 0
    (no_checkout_env / "plain").mkdir()
    assert cli.main(["setup-lava", "--dir", str(no_checkout_env / "plain")]) == 1
    assert "is not a virtual environment" in capsys.readouterr().err
    assert lava.lava_python() == recorded
