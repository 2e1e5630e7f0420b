#!/usr/bin/env bash
# The main job on the shipped default: digits CNN -> int8 SNN -> accuracy at T = 8..64 + plots in out/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
exec .venv/bin/python -m snn_compiler.demo "$@"
