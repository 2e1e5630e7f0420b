#!/usr/bin/env bash
# Every test: unit, end-to-end, conformance (torch ANN vs float SNN vs integer SNN vs Lava).
#   bash scripts/test.sh                      # the whole suite, in the locked .venv
#   bash scripts/test.sh tests/test_cli.py -x # pytest's arguments pass through (to both phases)
#   SNNC_UNLOCKED=1 bash scripts/test.sh      # in .venv-latest: the newest releases pyproject allows
# Two phases: every test but the Lava ones in parallel (pytest-xdist, one worker per core, whole files
# per worker so module fixtures are built once), and the `lava` tests one at a time (each starts Lava
# processes sharing memory with the backend's worker) in a pytest of their own that runs beside the
# first phase (its output follows the first's); SNNC_LAVA_AFTER=1 runs it after the first instead.
# Exit status: 0 when both passed, else the failing phase's pytest status; 5 (no test ran) only when
# neither phase ran any test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
py=.venv/bin/python
[ "${SNNC_UNLOCKED:-0}" = "1" ] && py=.venv-latest/bin/python
workers="${SNNC_TEST_WORKERS:-$(nproc)}"
# One thread per test process (unless set): with a worker per core, torch's OpenMP, numba's and
# BLAS's own threads only oversubscribe the cores and spin (three engine test files on -n 2: 30 to
# 106 s with them, 16 s without).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" NUMBA_NUM_THREADS="${NUMBA_NUM_THREADS:-1}" \
       OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
report="$(mktemp -d "${TMPDIR:-/tmp}/snnc-test.XXXXXX")"
lava_pid=
# A background job ignores Ctrl-C: it is ended here, by its pid, when this script ends early.
trap '[ -n "$lava_pid" ] && kill "$lava_pid" 2>/dev/null; rm -rf "$report"' EXIT

# The caller's arguments first: the phase's own -n and -m come last, so they hold.
main_phase=("$py" -m pytest -q --durations=15 --junitxml="$report/main.xml" "$@" -n "$workers" --dist loadfile -m "not lava")
lava_phase=("$py" -m pytest -q --durations=15 --junitxml="$report/lava.xml" "$@" -n 0 -m lava)
set +e
if [ "${SNNC_LAVA_AFTER:-0}" = "1" ]; then
  "${main_phase[@]}"; main_rc=$?
  "${lava_phase[@]}"; lava_rc=$?
else
  "${lava_phase[@]}" >"$report/lava.log" 2>&1 &   # a simple command: $! is pytest's own pid
  lava_pid=$!
  "${main_phase[@]}"; main_rc=$?
  wait "$lava_pid"; lava_rc=$?
  lava_pid=
  echo "---------- the Lava tests (one at a time, beside the others) ----------"
  cat "$report/lava.log"
fi
set -e

# One closing line over both phases: "tests: N passed, N failed, N skipped".
"$py" - "$report" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
n = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for f in glob.glob(sys.argv[1] + "/*.xml"):
    for suite in ET.parse(f).getroot().iter("testsuite"):
        for k in n:
            n[k] += int(suite.get(k, 0))
failed = n["failures"] + n["errors"]
print(f"tests: {n['tests'] - failed - n['skipped']} passed, {failed} failed, {n['skipped']} skipped")
PY
ok() { [ "$1" = 0 ] || [ "$1" = 5 ]; }   # 5: this phase selected no test (e.g. only Lava files given)
if ! ok "$main_rc"; then echo "snnc tests: the non-Lava phase failed (pytest exit $main_rc)" >&2; exit "$main_rc"; fi
if ! ok "$lava_rc"; then echo "snnc tests: the Lava phase failed (pytest exit $lava_rc)" >&2; exit "$lava_rc"; fi
if [ "$main_rc" = 5 ] && [ "$lava_rc" = 5 ]; then echo "snnc tests: no test ran" >&2; exit 5; fi
exit 0
