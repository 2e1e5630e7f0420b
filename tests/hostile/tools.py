"""Shared tools of the hostile-input tests: run the real CLI (in process, or in a new one where the
test needs it) and check that a refusal is one line on stderr, a non-zero exit, no traceback, and
that nothing on disk changed."""
import hashlib
import os
from pathlib import Path

from cli_run import run_in_process, run_subprocess


ROOT = Path(__file__).resolve().parents[2]


def snnc(*args, cwd=None, env=None, timeout=300, input=None, separate_process=False):
    """Run the CLI on ARGS; returns the CompletedProcess (text mode). In this process through
    ``cli.main`` (tests/cli_run.py) unless a new one is asked for or needed: ``separate_process``,
    ``env`` (read at start-up, e.g. PYTHONHASHSEED), ``input`` or SNNC_TEST_SUBPROCESS=1."""
    if separate_process or env or input is not None or os.environ.get("SNNC_TEST_SUBPROCESS") == "1":
        return run_subprocess(args, cwd=cwd, env=env, timeout=timeout, input=input)
    return run_in_process(args, cwd=cwd, timeout=timeout)


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




def npy_header(shape, dtype) -> bytes:
    """The bytes np.save writes before an array of ``shape`` and ``dtype``: a member that starts
    with them declares that array."""
    import io
    import numpy as np
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                             "shape": tuple(shape)})
    return b.getvalue()


def declare_size(path, member, size) -> None:
    """Make zip ``path`` declare ``size`` inflated bytes for ``member`` (local header and central
    directory alike; size < 4 GiB), as a decompression bomb declares what it inflates to."""
    import struct
    data = bytearray(Path(path).read_bytes())
    name = member.encode()
    for sig, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        at = data.find(sig)
        while at >= 0:
            n = struct.unpack_from("<H", data, at + name_len_at)[0]
            if data[at + name_at:at + name_at + n] == name:
                struct.pack_into("<I", data, at + size_at, size)
            at = data.find(sig, at + 4)
    Path(path).write_bytes(bytes(data))
