"""The README's install lines and quick start, run as a new user runs them: in a fresh Python 3.11
venv outside the checkout, `pip install torch==2.13.0` then `pip install "<checkout>[all]"`, then
the quick start's Python and shell blocks exactly as the README has them (read from README.md, so
an edit there is what gets tested), then an ONNX model through the same commands.

What differs from a user's machine, and why:
- PIP_CONSTRAINT pins every package to requirements/main.lock (without its hashes: a checkout
  install cannot carry them), so the install is reproducible and comes from pip's cache and the
  machine's local wheels instead of whatever the index has newest today; PIP_NO_COMPILE skips
  byte-compiling torch (which doubles the install time, as scripts/check_wheel.sh notes).
- The checkout is copied first (the files git knows), since pip builds in the source tree.
- The README's `model`, `x_train`, `y_train`, `x_test`, `y_test` and `x_calib` are a small
  seeded CNN (with a max pool) trained for a few seconds on synthetic 8x8 digits-like data.
- `snnc setup-lava` is left to tests/test_lava_setup.py: it needs a Python 3.10 and lava-nc.

Slow: 6.5-7.5 min measured on 2 cores shared with other test runs (pip install torch 147 s, the
`[all]` install 134 s, the quick start 2.5 min of which 53 s is simulate's first numba JIT); it
prints each step's time: marked `slow`, deselect with -m "not slow".
"""
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# Stands in for the user's trained model and data (see the module docstring).
PRELUDE = """
import numpy as np, torch
from torch import nn
torch.manual_seed(0)
torch.set_num_threads(1)
rng = np.random.default_rng(0)
protos = (rng.random((10, 1, 8, 8)) < 0.4).astype(np.float32)
def draw(n):
    y = rng.integers(0, 10, n)
    return torch.from_numpy(np.clip(0.7 * protos[y] + 0.5 * rng.random((n, 1, 8, 8)), 0, 1).astype(np.float32)), \\
        torch.from_numpy(y)
x_train, y_train = draw(600)
x_test, y_test = draw(120)
x_calib = x_train[:300]
model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                      nn.Flatten(), nn.Linear(64, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for epoch in range(8):
    for idx in torch.randperm(len(x_train), generator=torch.Generator().manual_seed(epoch)).split(50):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
        opt.step()
model.eval()
"""


def readme_blocks() -> dict:
    """The fenced blocks of the README's Install and Quick start sections, by section."""
    text = README.read_text()
    out = {}
    for title in ("Install", "Quick start"):
        m = re.search(rf"^## {title}\n(.*?)(?=^## )", text, re.S | re.M)
        assert m, f"README.md has no '## {title}' section"
        out[title] = re.findall(r"^```(\w+)\n(.*?)^```", m.group(1), re.S | re.M)
    return out


def _commands(block: str) -> list:
    """A shell block's commands, comments stripped (a `#` after two spaces starts one)."""
    return [re.split(r"\s{2,}#", line)[0].strip() for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_has_the_blocks_this_test_runs():
    """Cheap, always run: the README's shape that the slow test relies on."""
    b = readme_blocks()
    install = [c for lang, blk in b["Install"] if lang == "bash" for c in _commands(blk)]
    assert "pip install torch==2.13.0" in install
    assert any(c.startswith("pip install") and "/path/to/snnc[all]" in c for c in install)
    langs = [lang for lang, _ in b["Quick start"]]
    assert langs == ["python", "bash", "python"], langs
    shell = _commands(b["Quick start"][1][1])
    for cmd in ("compile", "inspect", "simulate", "check", "report", "export"):
        assert any(c.startswith(f"snnc {cmd} ") for c in shell), f"the quick start has no snnc {cmd}"


def _lock_constraints(path: Path) -> None:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+==[^\s\\]+)", (ROOT / "requirements" / "main.lock").read_text(), re.M)
    assert any(p.startswith("torch==") for p in pins), "requirements/main.lock names no torch"
    path.write_text("\n".join(pins) + "\n")


def _copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for f in (f.decode() for f in files if f):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("python3.11") is None, reason="no python3.11 to make the fresh venv with")
@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None,
                    reason="not a git checkout: the files to install are the ones git knows")
def test_readme_quick_start_in_a_fresh_venv(tmp_path):
    blocks = readme_blocks()
    src, work, venv = tmp_path / "snnc", tmp_path / "work", tmp_path / "venv"
    src.mkdir(), work.mkdir()
    _copy_checkout(src)
    _lock_constraints(tmp_path / "constraints.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "SNNC_"))}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", PIP_CONSTRAINT=str(tmp_path / "constraints.txt"),
               PIP_NO_COMPILE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", MPLBACKEND="Agg")
    log, timings = [], []

    def run(cmd, timeout=600, **kw):
        t0 = time.monotonic()
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout, **kw)
        shown = cmd if isinstance(cmd, str) else " ".join(map(str, cmd))[:120]
        timings.append(f"{time.monotonic() - t0:5.1f} s  {shown}")
        log.append(f"$ {shown}\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        assert r.returncode == 0, "\n".join(log[-1:])
        return r

    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True, env=env)
    # The README's Install block, as written (its path stands for the checkout's copy)
    for lang, blk in blocks["Install"]:
        for cmd in _commands(blk) if lang == "bash" else []:
            if cmd.startswith("pip install"):
                run(cmd.replace("/path/to/snnc", str(src)), shell=True)
    assert re.search(r"\d+\.\d+", run("snnc --version", shell=True).stdout)
    imported = run([venv / "bin" / "python", "-c", "import snn_compiler; print(snn_compiler.__file__)"]).stdout
    assert str(venv) in imported and str(ROOT) not in imported, imported

    # The quick start: the Python block, the shell block line by line, the Python API block
    (_, py1), (_, sh), (_, py2) = blocks["Quick start"]
    run([venv / "bin" / "python", "-c", PRELUDE + py1])
    outputs = {}
    for cmd in _commands(sh):
        r = run(cmd, shell=True)
        outputs[cmd.split()[1]] = r.stdout + r.stderr
    run([venv / "bin" / "python", "-c", PRELUDE + py2 + "\nassert snn.accuracy(x_test, y_test) >= 0.8\n"])

    # what each command was for
    assert re.search(r"accuracy", outputs["simulate"]) and (work / "accuracy.png").stat().st_size > 1000
    assert "2 (MaxPool2d)" in outputs["inspect"]   # the user's module beside the IR's names
    page = (work / "report.html").read_text()
    for section in ("Accuracy against timesteps", "Energy balance", "dead neurons", "from module", "Spike raster"):
        assert section in page, f"report.html has no {section!r}"
    assert (work / "net.nir").stat().st_size > 0 and (work / "net.snnc").stat().st_size > 0
    # type_check=False: nir 1.0.8's own type check refuses grouped convs (the max pool's stages),
    # typing their input as C / groups channels (see snn_compiler/frontend/nir/export.py)
    run([venv / "bin" / "python", "-c", "import nir; g = nir.read('net.nir', type_check=False); assert g.nodes"])

    # ONNX, as docs/usage.md writes the export, through the same commands
    run([venv / "bin" / "python", "-c", PRELUDE + 'torch.onnx.export(model.eval(), (x_train[:1],), "model.onnx", '
         'dynamo=False, opset_version=17)'])
    run("snnc compile model.onnx --calibration calib.npz --bits 8 -o onnx.snnc", shell=True)
    result = json.loads(run("snnc simulate onnx.snnc --data test.npz --timesteps 32 --json", shell=True).stdout)
    assert result["ok"] is True, result
    print("\n".join(["quick start, step by step:"] + timings))   # where the minutes go (pytest -s, or the junit log)
