#!/usr/bin/env bash
# Install the peer libraries the benchmarks compare against into the repo's .venv, without
# letting pip replace the CPU torch (recipe of ../shared/notes/peers.md: --no-deps for every peer,
# their pure-Python dependencies named explicitly). Peers are benchmark-only, never snnc deps.
#
#   bash benchmarks/setup_peers.sh          # SpikingJelly 2.0.0 (what mnist_vs_spikingjelly.py needs)
#   bash benchmarks/setup_peers.sh --all    # also snnTorch, sinabs, norse, NIR
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  echo "setup_peers.sh: no .venv at $(pwd)/.venv; create it first (see README.md)" >&2
  exit 1
fi
TORCH=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none)
case "$TORCH" in
  2.13.0*) ;;
  *) echo "setup_peers.sh: .venv has torch $TORCH, expected 2.13.0 (install the project first)" >&2; exit 1 ;;
esac
PIP=("$PY" -m pip install --disable-pip-version-check)
"${PIP[@]}" --no-deps spikingjelly==2.0.0
"${PIP[@]}" h5py "loguru>=0.7,<1" packaging requests scipy tqdm threadpoolctl
if [ "${1:-}" = "--all" ]; then
  "${PIP[@]}" --no-deps snntorch==1.0.0
  "${PIP[@]}" --no-deps sinabs==3.1.3   # never install samna (it pip-installs at import)
  "${PIP[@]}" pbr
  "${PIP[@]}" --no-deps norse==1.1.0
  "${PIP[@]}" --no-deps nir==1.0.8 nirtorch==2.6
fi
AFTER=$("$PY" -c 'import torch; print(torch.__version__)')
[ "$AFTER" = "$TORCH" ] || { echo "setup_peers.sh: torch changed from $TORCH to $AFTER" >&2; exit 1; }
"$PY" -c 'from spikingjelly.activation_based import ann2snn; import spikingjelly; print("SpikingJelly ready:", ann2snn.Converter.__name__)'
