#!/usr/bin/env bash
# Creates .venv/ (Python 3.11, torch 2.13.0 CPU, snnc editable) and .venv-lava/ (Python 3.10,
# lava-nc 0.10.0, the torch-free core of snnc) from the lock files, hashes checked:
#   requirements/main.lock -> .venv        requirements/lava.lock -> .venv-lava
# then snnc itself, editable and without dependencies. Idempotent: an environment is installed
# again only when its lock changed since (the lock's sha256 is kept in VENV/.snnc-lock) or its
# imports fail; packages the lock does not name are then removed, so the environment is the lock.
#
# SNNC_UNLOCKED=1: instead of .venv, set up .venv-latest with the newest releases pyproject.toml
# allows (pip install --upgrade), to find drift before users do; .venv-lava stays locked.
# The locks are regenerated with `bash scripts/lock.sh` (`--upgrade` for the newest releases).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }

py311="${SNNC_PYTHON:-}"
if [ -z "$py311" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      py311="$(command -v "$c")"; break
    fi
  done
fi
[ -n "$py311" ] || { echo "snnc setup: no Python 3.11 found; set SNNC_PYTHON=/path/to/python3.11" >&2; exit 1; }

lock_hash() { sha256sum "$1" | cut -d' ' -f1; }
# Imports are tried from / : from the checkout, Python would find snn_compiler/ installed or not.
imports_ok() { (cd / && "$root/$1/bin/python" -c "import $2") >/dev/null 2>&1; }

# install_locked VENV PYTHON LOCK IMPORTS: VENV made to match LOCK unless its stamp and IMPORTS say it does.
install_locked() {
  local venv=$1 py=$2 lock=$3 imports=$4 want
  want="$(lock_hash "$lock")"
  if [ "$(cat "$venv/.snnc-lock" 2>/dev/null)" = "$want" ] && imports_ok "$venv" "$imports"; then
    return 0
  fi
  echo "snnc setup: installing $lock into $venv with $py" >&2
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  rm -f "$venv/.snnc-lock"
  "$venv/bin/python" -m pip install -q --require-hashes -r "$lock" 2>&1 | quiet
  # What the lock does not name goes (pip and snnc excepted), so no older install lingers.
  "$venv/bin/python" - "$lock" <<'PY' | xargs -r "$venv/bin/python" -m pip uninstall -q -y
import re, sys
from importlib.metadata import distributions
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pinned = {norm(m) for m in re.findall(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==", open(sys.argv[1]).read(), re.M)}
for d in distributions():
    name = norm(d.metadata["Name"])
    if name not in pinned | {"pip", "setuptools", "snnc"}:
        print(name)
PY
  # snnc itself: editable, unhashed, its dependencies already pinned above (kept when it already
  # points at this checkout: reinstalling it would pull it from under a running test for a moment).
  if ! (cd / && "$root/$venv/bin/python" -c 'import os, sys, snn_compiler as s
sys.exit(os.path.dirname(os.path.realpath(s.__file__)) != os.path.realpath(sys.argv[1]))' "$root/snn_compiler") 2>/dev/null; then
    "$venv/bin/python" -m pip install -q --no-deps -e . 2>&1 | quiet
  fi
  imports_ok "$venv" "$imports" || { echo "snnc setup: $venv was installed but 'import $imports' failed" >&2; return 1; }
  echo "$want" >"$venv/.snnc-lock"
}

if [ "${SNNC_UNLOCKED:-0}" = "1" ]; then
  # torch is named first so pip takes the CPU build of 2.13.0 beside the newest of everything else.
  echo "snnc setup: .venv-latest with the newest releases pyproject.toml allows (not the lock)" >&2
  [ -x .venv-latest/bin/python ] || "$py311" -m venv .venv-latest
  .venv-latest/bin/python -m pip install -q --upgrade --upgrade-strategy eager "torch==2.13.0" -e ".[dev,torch]" 2>&1 | quiet
  .venv-latest/bin/python -m pip freeze --exclude-editable >.venv-latest/freeze.txt
else
  install_locked .venv "$py311" requirements/main.lock \
    'torch, numba, sklearn, matplotlib, pytest, xdist, hypothesis, onnx, nir, h5py, ray, snn_compiler.cli'
fi

# The report's browser test (tests/test_report_browser.py) needs a headless Chromium: Debian's, where
# apt is ours to use (root); SNNC_SKIP_BROWSER=1 skips. Without one that test skips, and fails under CI.
if ! command -v chromium >/dev/null 2>&1 && [ "${SNNC_SKIP_BROWSER:-0}" != "1" ] \
   && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "snnc setup: installing Debian's chromium (the report's browser test; about a minute)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "snnc setup: could not install chromium; tests/test_report_browser.py skips (and fails under CI)" >&2
fi

# Lava part (issue 3): .venv-lava with Python 3.10 (lava-nc 0.10.0 refuses 3.11), lava-nc and the
# torch-free snnc core. SNNC_PYTHON310 picks the interpreter that creates it; SNNC_SKIP_LAVA=1 skips.
# (SNNC_LAVA_PYTHON is the *environment's* interpreter the Lava backend runs, default .venv-lava/bin/python.)
if [ "${SNNC_SKIP_LAVA:-0}" != "1" ]; then
  py310="${SNNC_PYTHON310:-}"
  if [ -z "$py310" ]; then
    for c in "$(pyenv root 2>/dev/null)/versions/3.10.13/bin/python3.10" \
             "$(pyenv root 2>/dev/null)"/versions/3.10.*/bin/python3.10 python3.10; do
      if [ -x "$c" ] || command -v "$c" >/dev/null 2>&1; then
        if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then py310="$c"; break; fi
      fi
    done
  fi
  if [ -z "$py310" ]; then
    echo "snnc setup: no Python 3.10 found, so the Lava backend (lava-nc 0.10.0 needs 3.10) is not set up." >&2
    echo "            Set SNNC_PYTHON310=/path/to/python3.10 and run again; everything else works without it." >&2
  else
    # snnc goes in with --no-deps: torch (a multi-GB CUDA build on 3.10) and numba stay out of this
    # environment. (Without torch, Lava's Conv also takes its exact integer scipy path.)
    install_locked .venv-lava "$py310" requirements/lava.lock 'lava.magma, snn_compiler.backends.lava, yaml, tqdm'
  fi
fi
