"""Packaging: scripts/check_wheel.sh builds a wheel, installs it (not editable) into a fresh venv and,
from outside the checkout, compiles, simulates and inspects a net with the installed `snnc`
(1.5-2 min on 2 cores). Deselect with -m "not slow"."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "check_wheel.sh")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, ".venv", "bin", "python")),
                    reason=".venv not set up (bash scripts/bootstrap.sh)")
@pytest.mark.skipif(shutil.which("git") is None or not os.path.exists(os.path.join(ROOT, ".git")),
                    reason="not a git checkout: the wheel's file list is compared with git ls-files")
def test_wheel_installs_and_runs_outside_the_checkout():
    r = subprocess.run(["bash", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"check_wheel.sh exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "check_wheel: OK" in r.stdout, r.stdout + r.stderr
