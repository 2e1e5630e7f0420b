#!/usr/bin/env bash
# Creates .venv/ (Python 3.11, torch 2.13.0 CPU, snnc editable) and .venv-lava/ (Python 3.10,
# lava-nc 0.10.0, the torch-free core of snnc) when they are missing. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

py311="${SNNC_PYTHON:-}"
if [ -z "$py311" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      py311="$(command -v "$c")"; break
    fi
  done
fi
[ -n "$py311" ] || { echo "snnc setup: no Python 3.11 found; set SNNC_PYTHON=/path/to/python3.11" >&2; exit 1; }

main_ok() { .venv/bin/python -c 'import torch, numba, sklearn, matplotlib, pytest, hypothesis, onnx, nir, h5py, snn_compiler.cli' >/dev/null 2>&1; }
if ! main_ok; then
  echo "snnc setup: setting up .venv with $py311" >&2
  [ -x .venv/bin/python ] || "$py311" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  # torch is pinned first and alone so pip never resolves a newer CUDA build.
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e ".[dev]"
fi

# Lava part (issue 3): .venv-lava with Python 3.10 (lava-nc 0.10.0 refuses 3.11), lava-nc and the
# torch-free snnc core. SNNC_PYTHON310 picks the interpreter that creates it; SNNC_SKIP_LAVA=1 skips.
# (SNNC_LAVA_PYTHON is the *environment's* interpreter the Lava backend runs, default .venv-lava/bin/python.)
lava_ok() { .venv-lava/bin/python -c 'import lava.magma, snn_compiler.backends.lava, yaml, tqdm' >/dev/null 2>&1; }
if [ "${SNNC_SKIP_LAVA:-0}" != "1" ] && ! lava_ok; then
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
    echo "snnc setup: creating .venv-lava with $py310" >&2
    [ -x .venv-lava/bin/python ] || "$py310" -m venv .venv-lava
    .venv-lava/bin/pip install -q --upgrade pip
    .venv-lava/bin/pip install -q lava-nc==0.10.0 "networkx<=2.8.7" pyyaml tqdm
    # The core only: --no-deps keeps torch (a multi-GB CUDA build on 3.10) out of this environment.
    # (Without torch, Lava's Conv also takes its exact integer scipy path instead of float32 torch.)
    .venv-lava/bin/pip install -q --no-deps -e .
    if lava_ok; then echo "snnc setup: .venv-lava ready (Lava backend)" >&2
    else echo "snnc setup: .venv-lava was created but 'import lava' failed; see the pip output above" >&2; fi
  fi
fi
