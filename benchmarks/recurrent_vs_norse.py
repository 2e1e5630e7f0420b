"""A recurrent CUBA network, snnc's integer engines against Norse on the same NIR graph (issue 18).

    .venv/bin/python benchmarks/recurrent_vs_norse.py [--sizes shd,braille] [--batch 256] [--threads 1,2]
        [--rounds 2] [--json out.json]

Norse 1.1 (``bash benchmarks/setup_peers.sh --all``) imports the same NIR graph (``from_nir``) and
steps it ``y, state = net(x_t, state)``, as its users run recurrent NIR graphs; snnc compiles the
graph to int8 and simulates the sequence (N, T, inputs) with each engine. The network: input ->
Linear -> CubaLIF with a recurrent Linear -> Linear -> CubaLIF read-out (tests/recurrent_nets.py's
net, written to NIR as Norse writes it), random weights scaled to a hidden rate of about 10%,
Bernoulli events at ``--rate`` per input per step. Sizes: ``shd`` 700-256-20 at T = 100 (the
Spiking Heidelberg Digits' shape), ``braille`` 12-40-7 at T = 256 (the NIR paper's Braille task's).

Every figure is sample*steps/s of one whole batch, from its own process (one at a time, the same
thread count for torch, numpy's BLAS and numba), after a warm-up run (JIT excluded), the best of
``--repeat`` runs, and of ``--rounds`` such processes per job, the jobs interleaved (so a slow minute
of the machine does not fall on one library alone). The spike counts of snnc's float SNN and Norse are compared too (they are the
same equations: equal but for float32 rounding).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

SIZES = {"shd": (700, 256, 20, 100), "braille": (12, 40, 7, 256)}
JOBS = ("numba", "torch", "numpy", "norse")
DT = 1e-3


def network(size):
    """(NIR graph, events) for ``size``: the hidden layer's weights scaled until it fires ~10%."""
    from recurrent_nets import recurrent_cuba, to_nir
    n_in, n_hid, n_out, _ = SIZES[size]
    g = recurrent_cuba(n_in, n_hid, n_out, reset="zero", seed=0, rec_gain=0.4)
    scale = {"shd": 0.01, "braille": 0.06}[size]  # measured: hidden rates of about 10-15%
    for n in ("fc_in", "rec"):
        g.nodes[n]["op"].weight = g.nodes[n]["op"].weight * scale
    return to_nir(g, DT)


def events(size, batch, rate, seed=0):
    n_in, _, _, steps = SIZES[size]
    return (np.random.default_rng(seed).random((batch, steps, n_in)) < rate).astype(np.float32)


def set_threads(n):
    import torch
    torch.set_num_threads(n)
    try:
        import numba
        numba.set_num_threads(n)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        pass


def run_job(job, size, batch, rate, threads, repeat):
    set_threads(threads)
    ng, x = network(size), events(size, batch, rate)
    if job == "norse":
        import torch
        from norse.torch.utils.import_nir import from_nir
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = from_nir(ng, dt=DT)
        xt = torch.from_numpy(x)

        def once():
            state, total = None, 0
            with torch.no_grad():
                for t in range(xt.shape[1]):
                    y, state = net(xt[:, t], state)
                    total = total + y
            return total.numpy()
    else:
        from snn_compiler.compile import compile_model
        from snn_compiler.config import CompileConfig
        from snn_compiler.frontend.nir import from_nir
        from snn_compiler.sim.emulator import simulate
        q = compile_model(from_nir(ng, dt=DT), CompileConfig(bits=8, calibration=x[:, 0], timesteps=x.shape[1]))

        def once():
            r = simulate(q, x, readout="count", engine=job, record=True)
            once.rates = r.rates
            return r.scores
    counts = once()  # warm-up: JIT, caches
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t)
    out = {"job": job, "size": size, "threads": threads, "batch": batch, "steps": int(x.shape[1]),
           "sample_steps_per_s": batch * x.shape[1] / best, "seconds": best, "output_spikes": float(counts.sum())}
    if hasattr(once, "rates"):
        out["rates"] = {k: round(v, 4) for k, v in once.rates.items()}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="shd,braille")
    ap.add_argument("--jobs", default=",".join(JOBS))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="every job this many times, interleaved (the machine's "
                    "speed drifts by tens of percent over minutes here: each job's best over the rounds)")
    ap.add_argument("--json")
    ap.add_argument("--job", help=argparse.SUPPRESS)  # a child process: one figure
    a = ap.parse_args()
    if a.job:
        size, threads = a.sizes, int(a.threads)
        print(json.dumps(run_job(a.job, size, a.batch, a.rate, threads, a.repeat)))
        return
    rows = []
    for size in a.sizes.split(","):
        for threads in (int(t) for t in a.threads.split(",")):
            best = {}
            for _ in range(a.rounds):
                for job in a.jobs.split(","):
                    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                               NUMBA_NUM_THREADS=str(threads))
                    r = subprocess.run([sys.executable, __file__, "--job", job, "--sizes", size, "--threads",
                                        str(threads), "--batch", str(a.batch), "--rate", str(a.rate), "--repeat",
                                        str(a.repeat)], capture_output=True, text=True, env=env)
                    if r.returncode:
                        print(f"{size} {job} x{threads}: failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                        continue
                    row = json.loads(r.stdout.strip().splitlines()[-1])
                    if job not in best or row["sample_steps_per_s"] > best[job]["sample_steps_per_s"]:
                        best[job] = row
            for job, row in best.items():
                rows.append(row)
                print(f"{size:8s} threads {threads}  {job:6s} {row['sample_steps_per_s']:10.0f} sample*steps/s"
                      f"  output spikes {row['output_spikes']:.0f}  {row.get('rates', '')}", flush=True)
    for size in a.sizes.split(","):
        for threads in (int(t) for t in a.threads.split(",")):
            got = {r["job"]: r["sample_steps_per_s"] for r in rows if r["size"] == size and r["threads"] == threads}
            if "norse" in got:
                print(f"{size} x{threads}: " + ", ".join(f"{j} {v / got['norse']:.2f}x Norse" for j, v in got.items()
                                                          if j != "norse"))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
