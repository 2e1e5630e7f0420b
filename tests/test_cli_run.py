"""tests/cli_run.py: a CLI run in the test's process gives what the same run in a new process gives
(exit status, stdout, stderr), so the CLI tests that use it keep testing what a user sees."""
import os
import sys

import pytest

from cli_run import run_in_process, run_subprocess


@pytest.mark.parametrize("args", [
    ["--version"],                                  # argparse's action: SystemExit(0), stdout
    ["compile"],                                    # argparse's error: SystemExit(2), usage on stderr
    ["inspect", "missing.snnc"],                    # snnc's own refusal: one line, status 1
    ["simulate", "missing.snnc", "--data", "x.npz", "--timesteps", "0"],
], ids=["version", "usage-error", "refusal", "bad-option-value"])
def test_in_process_run_is_the_subprocess_run(tmp_path, args):
    here = run_in_process(args, cwd=tmp_path)
    there = run_subprocess(args, cwd=tmp_path)
    assert (here.returncode, here.stdout, here.stderr) == (there.returncode, there.stdout, there.stderr)


def test_debug_traceback_and_status_match(tmp_path):
    here = run_in_process(["--debug", "inspect", "missing.snnc"], cwd=tmp_path)
    there = run_subprocess(["--debug", "inspect", "missing.snnc"], cwd=tmp_path)
    assert here.returncode == there.returncode == 1
    assert "Traceback" in here.stderr and "Traceback" in there.stderr
    assert here.stderr.splitlines()[-1] == there.stderr.splitlines()[-1]


def test_in_process_run_leaves_the_process_as_it_was(tmp_path, monkeypatch):
    """The run's folder is first on sys.path, as with python -m; afterwards the working directory,
    sys.path and a module found there are as before (a second run imports its own copy again)."""
    from snn_compiler import cli
    (tmp_path / "snnc_cli_run_probe.py").write_text("import os\nprint('imported from', os.getcwd())\n")

    def main(argv):  # stands in for a command that imports what the working directory holds
        import snnc_cli_run_probe  # noqa: F401
        return 0
    monkeypatch.setattr(cli, "main", main)
    cwd, path = os.getcwd(), list(sys.path)
    for _ in range(2):
        r = run_in_process(["anything"], cwd=tmp_path)
        assert r.returncode == 0 and r.stdout == f"imported from {tmp_path}\n", r
        assert os.getcwd() == cwd and sys.path == path and "snnc_cli_run_probe" not in sys.modules
