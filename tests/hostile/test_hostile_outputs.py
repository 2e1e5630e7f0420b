"""Outputs never destroy anything: not an input, not a special file, nothing left by a failure or a kill."""
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from snn_compiler.outputs import OutputError, PendingOutputs, TMP_PREFIX, write_files

from .tools import assert_refused, snnc

torch = pytest.importorskip("torch")


@pytest.fixture
def files(cnn_files):
    return cnn_files


COMPILE = ["compile", "model.pt", "--input-shape", "1,8,8", "--calibration", "calib.npz"]
SIMULATE = ["simulate", "net.snnc", "--data", "data.npz", "--timesteps", "4"]


@pytest.mark.parametrize("args", [
    COMPILE + ["-o", "model.pt"],
    COMPILE + ["-o", "calib.npz"],
    COMPILE + ["-o", "./sub/../model.pt"],
    SIMULATE + ["--output", "net.snnc"],
    SIMULATE + ["--output", "data.npz"],
    SIMULATE + ["--plot", "net.snnc"],
    SIMULATE + ["--output", "r.npz", "--plot", "r.npz"],
], ids=["compile-o-model", "compile-o-calib", "compile-o-model-dotdot", "sim-output-artifact", "sim-output-data",
        "sim-plot-artifact", "output-equals-plot"])
def test_an_output_naming_an_input_is_refused(files, unchanged, args):
    (files / "sub").mkdir(exist_ok=True)
    with unchanged(files):
        assert_refused(snnc(*args, cwd=files), "output")


def test_an_output_linked_to_an_input_is_refused(files, unchanged, tmp_path):
    (tmp_path / "link.snnc").symlink_to(files / "model.pt")
    os.link(files / "data.npz", tmp_path / "hard.npz")
    with unchanged(files), unchanged(tmp_path):
        assert_refused(snnc(*COMPILE, "-o", tmp_path / "link.snnc", cwd=files), "input")
        assert_refused(snnc(*SIMULATE, "--output", tmp_path / "hard.npz", cwd=files), "input")


@pytest.mark.parametrize("special", ["/dev/null", "/dev/zero", "fifo", "directory"])
def test_special_files_are_never_replaced(files, unchanged, tmp_path, special):
    if special == "fifo":
        special = tmp_path / "f.fifo"
        os.mkfifo(special)
    elif special == "directory":
        special = tmp_path / "adir"
        special.mkdir()
    before = os.stat(special)
    with unchanged(files), unchanged(tmp_path):
        assert_refused(snnc(*SIMULATE, "--output", special, cwd=files), str(special))
        assert_refused(snnc(*COMPILE, "-o", special, cwd=files), str(special))
    after = os.stat(special)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino


def test_a_symlink_is_written_through(files, tmp_path):
    target = tmp_path / "real.npz"
    target.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    proc = snnc(*SIMULATE, "--output", link, cwd=files)
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    with np.load(target) as r:
        assert r["predictions"].shape == (24,)


def test_new_files_respect_the_umask_and_replaced_files_keep_their_mode(tmp_path):
    old = os.umask(0o027)
    try:
        write_files({tmp_path / "new.bin": b"1"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.bin").st_mode) == 0o640
    (tmp_path / "kept.bin").write_bytes(b"0")
    os.chmod(tmp_path / "kept.bin", 0o604)
    write_files({tmp_path / "kept.bin": b"1"})
    assert stat.S_IMODE(os.stat(tmp_path / "kept.bin").st_mode) == 0o604
    assert (tmp_path / "kept.bin").read_bytes() == b"1"


def test_a_failing_command_leaves_no_file(files, unchanged, tmp_path):
    with unchanged(files), unchanged(tmp_path):
        # the results are ready before the plot's directory turns out not to exist
        assert_refused(snnc(*SIMULATE, "--output", tmp_path / "r.npz", "--plot", tmp_path / "missing" / "p.png",
                            cwd=files), "does not exist")


def test_truenorth_leaves_no_corelet_when_the_artifact_fails(tmp_path, monkeypatch, capsys):
    from snn_compiler import artifact
    from snn_compiler.cli import main
    model = torch.nn.Sequential(torch.nn.Linear(16, 20), torch.nn.ReLU(), torch.nn.Linear(20, 4)).eval()
    torch.jit.save(torch.jit.script(model), str(tmp_path / "model.pt"))
    np.savez(tmp_path / "calib.npz", x=(np.random.default_rng(0).random((32, 16)) > 0.5).astype(np.float32))
    args = ["compile", str(tmp_path / "model.pt"), "--target", "truenorth", "--bits", "3", "--input-bits", "1",
            "--input-shape", "16", "--calibration", str(tmp_path / "calib.npz"), "-o", str(tmp_path / "tn.snnc")]

    def fail(graph):
        raise OSError("disk full")
    monkeypatch.setattr(artifact, "to_bytes", fail)
    assert main(args) == 1 and "disk full" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["calib.npz", "model.pt"]
    monkeypatch.undo()
    assert main(args) == 0
    assert sorted(os.listdir(tmp_path)) == ["calib.npz", "model.pt", "tn.corelet.json", "tn.snnc"]


def test_all_outputs_appear_together_or_none(tmp_path):
    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")
    pending = PendingOutputs()
    pending.add(tmp_path / "a.bin", b"a")
    pending.add(tmp_path / "b.bin", boom)
    with pytest.raises(RuntimeError):
        pending.commit()
    assert os.listdir(tmp_path) == []
    with pytest.raises(OutputError, match="another output"):
        write_files({tmp_path / "c.bin": b"c", str(tmp_path / "x" / ".." / "c.bin"): b"d"})
    assert os.listdir(tmp_path) == []


SLOW_WRITER = """
import os, sys, time
from snn_compiler.cli import main
import snn_compiler.outputs as outputs
real = outputs.PendingOutputs._write_tmp
def slow(dest, content, tmps, key):
    real(dest, content, tmps, key)
    print("written", flush=True)
    time.sleep(30)   # SIGTERM arrives between the write and the rename
outputs.PendingOutputs._write_tmp = staticmethod(slow)
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_between_write_and_rename_leaves_nothing(files, unchanged, tmp_path):
    with unchanged(files), unchanged(tmp_path):
        proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, *SIMULATE, "--output", str(tmp_path / "r.npz")],
                                cwd=files, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        line = ""
        while "written" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "written" in line, proc.stderr.read()
        assert any(n.startswith(TMP_PREFIX) for n in os.listdir(tmp_path))  # the write happened
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM
        assert "terminated" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_two_compiles_give_identical_artifacts(files, tmp_path):
    for name in ("a.snnc", "b.snnc"):
        proc = snnc(*COMPILE, "-o", tmp_path / name, cwd=files)
        assert proc.returncode == 0, proc.stderr
        time.sleep(1.1)  # a zip timestamp would now differ
    assert (tmp_path / "a.snnc").read_bytes() == (tmp_path / "b.snnc").read_bytes()


SIGNAL_BETWEEN_RENAMES = """
import os, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # (an xdist worker ignores SIGINT; its children inherit that)
import snn_compiler.cli as cli
import snn_compiler.outputs as outputs
renames = []
class SlowRenames:   # outputs' os, with a pause after its first rename
    def __getattr__(self, name):
        return getattr(os, name)
    def replace(self, src, dst):
        os.replace(src, dst)
        renames.append(dst)
        if len(renames) == 1:
            print("renamed", flush=True)
            # the signal arrives between the two renames: wait until the test says it sent it (a fixed
            # 5 s pause was outrun on a loaded machine: the run finished before the signal came)
            deadline = time.monotonic() + 60
            while not os.path.exists(os.environ["SNNC_TEST_SIGNAL_SENT"]) and time.monotonic() < deadline:
                time.sleep(0.02)
outputs.os = SlowRenames()
# a thread that takes process signals while the main thread blocks them, as numba's and torch's do
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_renames_leaves_all_outputs_and_says_so(files, tmp_path, sig):
    """A signal that arrives while the outputs are renamed into place, on any thread, cannot split
    them: every output is in place and the message names them (before: r.npz kept, p.png not,
    and "no output was written")."""
    out, plot = tmp_path / "r.npz", tmp_path / "p.png"
    sent = tmp_path / "signal-sent"
    proc = subprocess.Popen([sys.executable, "-c", SIGNAL_BETWEEN_RENAMES, *SIMULATE, "--output", str(out),
                             "--plot", str(plot)], cwd=files, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, SNNC_TEST_SIGNAL_SENT=str(sent)))
    deadline, line = time.monotonic() + 120, ""
    while "renamed" not in line and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
    assert "renamed" in line, proc.stderr.read()
    proc.send_signal(sig)
    sent.touch()
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == (130 if sig == signal.SIGINT else 128 + sig), err
    assert out.exists() and plot.exists() and not [n for n in os.listdir(tmp_path) if n.startswith(TMP_PREFIX)]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "written" in lines[0] and "no output" not in lines[0], err
    assert str(out) in lines[0] and str(plot) in lines[0]
