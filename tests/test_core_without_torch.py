"""The core (IR, passes, emulator, artifact, CLI's simulate/inspect) imports and runs without torch,
also under the Lava environment's Python 3.10 / networkx 2.8.7 / numpy 1.x when it exists."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = r"""
import sys
sys.modules["torch"] = None  # any 'import torch' now fails
sys.path.insert(0, "tests")
import numpy as np, networkx
from builders import int_chain
from snn_compiler import artifact, cli, summary as inspect
from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, ops as O
from snn_compiler.sim.emulator import simulate
rng = np.random.default_rng(0)
g = new_graph()
add_op(g, "in", O.Input((1, 6, 6)))
add_op(g, "c", O.Conv2d(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2)), ["in"])
add_op(g, "r", O.IF(), ["c"])
add_op(g, "p", O.AvgPool2d((2, 2), (2, 2)), ["r"])
add_op(g, "f", O.Flatten(), ["p"])
add_op(g, "d", O.Dense(rng.normal(size=(3, 8))), ["f"])
add_op(g, "out", O.Output(), ["d"])
q = compile_model(g, CompileConfig(calibration=rng.random((10, 1, 6, 6))))
r = simulate(q, rng.random((4, 1, 6, 6)), timesteps=8, engine="numpy")
assert r.scores.shape == (4, 3)
print(inspect.layer_table(inspect.summary(q)).splitlines()[0])
print("ok", networkx.__version__)
"""


def run_script(python):
    return subprocess.run([python, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_core_runs_without_torch():
    r = run_script(sys.executable)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, ".venv-lava", "bin", "python")), reason=".venv-lava not set up")
def test_core_runs_in_lava_environment():
    r = run_script(os.path.join(ROOT, ".venv-lava", "bin", "python"))
    assert r.returncode == 0 and "ok 2." in r.stdout, r.stderr
