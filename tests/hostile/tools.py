"""Shared tools of the hostile-input tests: run the real CLI in a subprocess and check that a
refusal is one line on stderr, a non-zero exit, no traceback, and that nothing on disk changed."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def snnc(*args, cwd=None, env=None, timeout=300, input=None):
    """Run ``python -m snn_compiler.cli ARGS``; returns the CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "snn_compiler.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, input=input)


def assert_refused(proc, *words):
    """Non-zero exit, exactly one non-empty line on stderr, no traceback, every word in it."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, f"exit 0; stdout: {proc.stdout!r}; stderr: {proc.stderr!r}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, f"{len(lines)} stderr lines:\n{proc.stderr}"
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(folder) -> dict:
    """{relative path: (kind, sha256 or link target)} of everything under ``folder``, links not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
            elif p.is_dir():
                out[rel] = ("dir", None)
            else:
                out[rel] = ("special", None)
    return out


