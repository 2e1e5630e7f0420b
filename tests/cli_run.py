"""Run the snnc CLI from a test, in this process or in a new one, with the same result either way.

In process (the default of ``hostile.tools.snnc``): ``snn_compiler.cli.main(argv)`` with stdout and
stderr captured and argparse's ``SystemExit`` read as the exit status. It saves the ~2 s start of a
Python that imports torch on every call, which made the CLI tests most of the suite's time.
In a new process: ``python -m snn_compiler.cli`` -- for what only a process boundary shows (start-up
environment such as PYTHONHASHSEED, signals, standard input, a crash), and for all calls when
SNNC_TEST_SUBPROCESS=1 is set (to check that both ways still agree).
"""
import contextlib
import faulthandler
import importlib
import io
import os
import subprocess
import sys
import traceback


def run_subprocess(args, cwd=None, env=None, timeout=300, input=None) -> subprocess.CompletedProcess:
    """``python -m snn_compiler.cli ARGS`` in a new process (text mode)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "snn_compiler.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, input=input)


def run_in_process(args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """``cli.main(ARGS)`` here, in ``cwd``; returns what a subprocess run would (exit status, both outputs).

    A run past ``timeout`` seconds ends this process with every thread's traceback (faulthandler), as
    a hang must not stall the suite: under pytest-xdist that fails the test as a crashed worker.
    """
    from snn_compiler import cli
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_path, old_modules = os.getcwd(), list(sys.path), set(sys.modules)
    faulthandler.dump_traceback_later(timeout, exit=True, file=sys.__stderr__)
    try:
        if cwd is not None:
            os.chdir(cwd)
        # `python -m` puts the working directory first on sys.path: a module planted there is found
        sys.path.insert(0, os.getcwd())
        importlib.invalidate_caches()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as e:  # argparse: --help, --version, a bad option
                code = _exit_status(e.code, err)
            except Exception:  # what `python -m` would print: the traceback, status 1
                traceback.print_exc(file=err)
                code = 1
    finally:
        faulthandler.cancel_dump_traceback_later()
        # ... and what it found there forgotten afterwards, as it would be with its process
        new = set(sys.modules) - old_modules
        planted = {n for n in new if "." not in n and _from_folder(sys.modules[n], os.getcwd())}
        for name in new:
            if name.split(".")[0] in planted:
                del sys.modules[name]
        sys.path[:] = old_path
        os.chdir(old_cwd)
    return subprocess.CompletedProcess(["snnc", *argv], 0 if code is None else int(code), out.getvalue(), err.getvalue())


def _exit_status(code, err) -> int:
    """The status ``sys.exit(code)`` gives a process: None is 0, a message is printed and gives 1."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=err)
    return 1


def _from_folder(module, folder) -> bool:
    """Whether a top-level module was found in ``folder`` itself: folder/NAME.py or folder/NAME/."""
    path = getattr(module, "__file__", None)
    if path is None:
        return False
    if os.path.basename(path) == "__init__.py":
        path = os.path.dirname(path)
    return os.path.realpath(os.path.dirname(path)) == os.path.realpath(folder)
