"""Where the Lava backend finds its environment, and ``snnc setup-lava``, which makes one.

lava-nc 0.10.0 imports only on Python 3.10 and must not share an environment with torch, so the
backend runs a worker in an environment of its own: Python 3.10 with lava-nc and the packages the
torch-free snnc core imports, installed from ``snn_compiler/data/lava.lock`` (pinned, with hashes:
what the tests ran), plus a copy of this snnc's own package. The backend looks, in order, at:

1. ``$SNNC_LAVA_PYTHON`` (an interpreter you point it at);
2. ``.venv-lava/bin/python`` of a checkout (what ``scripts/bootstrap.sh`` makes);
3. the interpreter ``snnc setup-lava`` recorded in ``$XDG_CONFIG_HOME/snnc/lava-python``
   (default ``~/.config/snnc/lava-python``), for a pip install.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOW = ("run `snnc setup-lava` (a pip install; it needs a Python 3.10) or scripts/bootstrap.sh (a checkout), or "
       "point SNNC_LAVA_PYTHON at a Python 3.10 with lava-nc 0.10.0 and snnc")


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var, "")
    return Path(value) if value else Path.home() / default   # the XDG spec: empty means unset


def record_file() -> Path:
    """Where ``snnc setup-lava`` records the interpreter it made."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "snnc" / "lava-python"


def default_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "snnc" / "lava-venv"


def candidates() -> list:
    """(where it came from, interpreter path) in the order the backend tries them."""
    env = os.environ.get("SNNC_LAVA_PYTHON")
    if env is not None:
        return [(f"SNNC_LAVA_PYTHON={env}", Path(env))]
    out = [(str(REPO / ".venv-lava"), REPO / ".venv-lava" / "bin" / "python")]
    rec = record_file()
    if rec.is_file():
        out.append((f"recorded in {rec}", Path(rec.read_text().strip())))
    return out


def find_python():
    """The Lava environment's interpreter, or None (with the places looked at) when there is none."""
    looked = []
    for where, path in candidates():
        if path.is_file() and os.access(path, os.X_OK):
            return str(path), looked
        looked.append(where)
    return None, looked


def _run(cmd, what):
    # from a neutral folder: python -c puts the working directory first on sys.path, and a checkout's
    # snn_compiler/ there would shadow the copy being checked
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if r.returncode != 0:
        tail = " ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"{what} failed (exit {r.returncode}): {tail}")
    return r.stdout


def setup(python310: str, env_dir: Path, progress=print) -> Path:
    """Make the Lava environment in ``env_dir`` with ``python310`` and record it; returns its
    interpreter. Refuses (RuntimeError, one line) an interpreter that is not Python 3.10 and a
    ``env_dir`` that exists and is not such an environment."""
    version = _run([python310, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], f"running {python310}")
    if version.strip() != "3.10":
        raise RuntimeError(f"lava-nc 0.10.0 needs Python 3.10; {python310} is Python {version.strip()} "
                           "(give --python /path/to/python3.10)")
    env_dir = Path(env_dir).resolve()
    py = env_dir / "bin" / "python"
    if env_dir.exists() and not py.exists():
        raise RuntimeError(f"{env_dir} exists and is not a virtual environment; give another --dir")
    import snn_compiler
    lock = Path(snn_compiler.__file__).resolve().parent / "data" / "lava.lock"
    if not py.exists():
        progress(f"setup-lava: creating {env_dir} with {python310}")
        _run([python310, "-m", "venv", env_dir], "creating the virtual environment")
    progress(f"setup-lava: installing lava-nc 0.10.0 and the snnc core's packages from {lock.name} (hashes checked)")
    _run([py, "-m", "pip", "install", "-q", "--require-hashes", "-r", lock], "pip install of the lock")
    core = env_dir / "snnc-core"
    _copy_package(core)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "locating site-packages").strip())
    (site / "snnc-core.pth").write_text(str(core) + "\n")
    _run([py, "-c", "import lava.magma, snn_compiler.backends.lava.worker"], "importing lava and snnc there")
    rec = record_file()
    rec.parent.mkdir(parents=True, exist_ok=True)
    tmp = rec.with_name(rec.name + ".tmp")
    tmp.write_text(str(py) + "\n")
    os.replace(tmp, rec)
    progress(f"setup-lava: ready; the Lava backend uses {py} (recorded in {rec})")
    return py


def _copy_package(core: Path) -> None:
    """This snnc's package (backends included, as installed) into ``core``, replacing an older copy:
    the worker then runs exactly the code of the snnc that made it."""
    import snn_compiler
    import snn_compiler.backends
    src = Path(snn_compiler.__file__).resolve().parent
    backends = Path(snn_compiler.backends.__file__).resolve().parent
    new = core.with_name(core.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv*")
    shutil.copytree(src, new / "snn_compiler", ignore=skip, symlinks=False)
    if not (new / "snn_compiler" / "backends").exists():   # an editable install maps backends/ from elsewhere
        shutil.copytree(backends, new / "snn_compiler" / "backends", ignore=skip)
    shutil.rmtree(core, ignore_errors=True)
    os.replace(new, core)


def default_python310() -> str:
    """A Python 3.10 that runs on this machine: python3.10 on PATH, else pyenv's 3.10 versions (a
    pyenv shim on PATH may exist and still not run 3.10, so each is tried)."""
    root = Path(os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv")))
    found = [shutil.which("python3.10")] + [str(p) for p in sorted(root.glob("versions/3.10.*/bin/python3.10"), reverse=True)]
    for py in filter(None, found):
        r = subprocess.run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip() == "3.10":
            return py
    raise RuntimeError("no Python 3.10 found (lava-nc 0.10.0 needs it); give --python /path/to/python3.10")


def main_setup(python=None, directory=None) -> dict:
    """``snnc setup-lava``: the environment made, as a dict for --json."""
    py = setup(python if python is not None else default_python310(),
               Path(directory) if directory is not None else default_dir(), progress=lambda m: print(m, file=sys.stderr))
    return {"python": str(py), "recorded_in": str(record_file())}
