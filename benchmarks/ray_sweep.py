"""Throughput of ``snnc sweep`` against the number of Ray workers on this machine.

The MLP of stream_memory.py (256 -> 64 -> 10, 8-bit) swept over T = 8, 16, 32 x constant and
Poisson input (6 rows) on 4,000 random samples: locally (one process) and with
``--ray local --workers W`` for each W. Each sweep is a fresh command into a fresh directory;
reported: the command's wall time (cluster start included), and the sample*timesteps per second
of its rows (the sum of the rows' sample*steps over the sum of their timed seconds: what the
workers deliver once started). The rows of every sweep are checked equal to the local one's.
A local sweep is also run with OMP_NUM_THREADS=1 and NUMBA_NUM_THREADS=1, the threads Ray gives a
worker of one CPU: on a busy 2-core machine BLAS threads contending for the cores cost more than
they bring, so that is the fair single-process baseline.

    .venv/bin/python benchmarks/ray_sweep.py                 # workers 1, 2
    .venv/bin/python benchmarks/ray_sweep.py --workers 1,2,4 --samples 20000
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stream_memory import FEATURES, OUTPUTS, build  # noqa: E402

GRID = ["--grid", "timesteps=8,16,32", "--grid", "encoding=constant,poisson"]
TIMING = ("seconds", "sample_timesteps_per_s")


ONE_THREAD = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}   # what Ray gives a worker of 1 CPU


def sweep(net, data, out, extra, env=None):
    os.makedirs(out)
    argv = [sys.executable, "-m", "snn_compiler.cli", "sweep", net, "--data", data, *GRID, "--no-plot", "-o", out,
            "--json", *extra]
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"{' '.join(argv)} failed: {p.stderr.strip()}")
    with open(os.path.join(out, "sweep.csv")) as f:
        rows = list(csv.DictReader(f))
    work = sum(int(r["samples"]) * int(r["timesteps"]) for r in rows)
    busy = sum(float(r["seconds"]) for r in rows)
    return wall, work / busy, sorted(tuple((k, v) for k, v in r.items() if k not in TIMING) for r in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--samples", type=int, default=4000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        net, data = os.path.join(d, "net.snnc"), os.path.join(d, "data.npz")
        build(net)
        rng = np.random.default_rng(0)
        np.savez(data, x=rng.uniform(0, 1, (args.samples, FEATURES)).astype(np.float32),
                 y=rng.integers(0, OUTPUTS, args.samples))
        runs = [("local (no Ray)", [], None), ("local, 1 thread", [], ONE_THREAD)] + [
            (f"Ray, {w} worker{'s' * (w > 1)}", ["--ray", "local", "--workers", str(w)], None)
            for w in (int(v) for v in args.workers.split(","))]
        ref = None
        print(f"{len(GRID) // 2}-key grid, 6 rows, {args.samples:,} samples a row, {os.cpu_count()} CPUs")
        for i, (name, extra, env) in enumerate(runs):
            wall, rate, rows = sweep(net, data, os.path.join(d, f"out{i}"), extra, env)
            ref = rows if ref is None else ref
            same = "rows identical" if rows == ref else "ROWS DIFFER"
            print(f"{name:16s}: sweep {wall:6.1f} s wall, rows at {rate:10,.0f} sample*timesteps/s ({same})", flush=True)


if __name__ == "__main__":
    main()
