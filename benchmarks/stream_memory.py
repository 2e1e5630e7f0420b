"""Peak memory of ``snnc simulate`` on a streamed data set against the number of samples.

A small MLP (256 -> 64 -> 10, compiled 8-bit by the real pipeline, no torch) runs on random data of
10,000 and 100,000 samples (float32 x, 256 values a sample) stored three ways: one DATA.npz (read
whole), a directory of .npz shards (10,000 samples each) and an x.npy / y.npy pair (read a slice at
a time). Each run is its own process; its peak resident memory is GNU time's ``%M`` (/usr/bin/time).
Streamed runs should keep the same peak at 10x the samples; the DATA.npz run grows with the data.

    .venv/bin/python benchmarks/stream_memory.py              # 10,000 and 100,000 samples, T = 4
    .venv/bin/python benchmarks/stream_memory.py --sizes 1000,10000 --timesteps 2   # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

FEATURES, HIDDEN, OUTPUTS, SHARD = 256, 64, 10, 10_000


def build(path):
    from snn_compiler import artifact
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from snn_compiler.ir import add_op, new_graph, verify
    from snn_compiler.ir import ops as O
    rng = np.random.default_rng(0)
    g = new_graph()
    prev = add_op(g, "input", O.Input((FEATURES,)))
    for i, (n_in, n_out) in enumerate([(FEATURES, HIDDEN), (HIDDEN, OUTPUTS)]):
        d = add_op(g, f"fc{i}", O.Dense(rng.normal(0, 1.5 / np.sqrt(n_in), (n_out, n_in))), [prev])
        prev = add_op(g, "output" if i else "relu0", O.Output() if i else O.IF(), [d])
    verify(g)
    q = compile_model(g, CompileConfig(bits=8, timesteps=4, calibration=rng.uniform(0, 1, (256, FEATURES))))
    artifact.save(q, path)


def write_data(d, n):
    """The same n samples as DATA.npz, as shards and as an .npy pair; returns the three paths."""
    rng = np.random.default_rng(n)
    x = rng.uniform(0, 1, (n, FEATURES)).astype(np.float32)
    y = rng.integers(0, OUTPUTS, n)
    whole, shards, pair = (os.path.join(d, f"{kind}-{n}") for kind in ("whole", "shards", "pair"))
    np.savez(whole + ".npz", x=x, y=y)
    os.makedirs(shards)
    for lo in range(0, n, SHARD):
        np.savez(os.path.join(shards, f"part-{lo // SHARD:05d}.npz"), x=x[lo:lo + SHARD], y=y[lo:lo + SHARD])
    os.makedirs(pair)
    np.save(os.path.join(pair, "x.npy"), x)
    np.save(os.path.join(pair, "y.npy"), y)
    return {"DATA.npz (in memory)": whole + ".npz", ".npz shards": shards, "x.npy, y.npy": pair}


def peak_rss(argv):
    """(peak resident MiB, seconds, stdout) of one command, run by GNU time (``%M``): a process forked
    from this one would report this one's resident memory at the fork as its own peak (Linux keeps
    the high-water mark across exec), and this one holds the generated data."""
    with tempfile.TemporaryDirectory() as d:
        report = os.path.join(d, "time")
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report] + argv, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {p.stderr.strip()}")
        with open(report) as f:
            kib = int(f.read().split()[-1])
    return kib / 1024, seconds, p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--timesteps", type=int, default=4)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        net = os.path.join(d, "net.snnc")
        build(net)
        for n in sizes:
            for kind, path in write_data(d, n).items():
                argv = [sys.executable, "-m", "snn_compiler.cli", "simulate", net, "--data", path, "--timesteps",
                        str(args.timesteps), "--no-progress", "--json"]
                mib, seconds, out = peak_rss(argv)
                acc = json.loads(out)["results"][0]["accuracy"]
                rows.append(dict(data=kind, samples=n, peak_rss_mib=round(mib, 1), seconds=round(seconds, 1),
                                 accuracy=acc))
                print(f"{kind:22s} {n:>8,} samples: peak RSS {mib:7.1f} MiB, {seconds:6.1f} s, accuracy {acc:.4f}",
                      flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
