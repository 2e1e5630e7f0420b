#!/usr/bin/env bash
# Every test: unit, end-to-end, conformance (torch ANN vs float SNN vs integer SNN vs Lava).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
exec .venv/bin/python -m pytest -q tests "$@"
