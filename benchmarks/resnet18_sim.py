"""ResNet-18 and VGG-11 (CIFAR-style, 3x32x32): calibration and simulation side by side (issue 12).

    .venv/bin/python benchmarks/resnet18_sim.py [--nets resnet18,vgg11] [--calib 200] [--batch 8]
        [--timesteps 32] [--threads 2] [--device cpu] [--skip numpy-calib,spikingjelly,...] [--json out.json]

Random weights (the ResNet-18 of benchmarks/resnet18.py; a VGG-11 with BatchNorm and 2x2 average
pools), random images in [0, 1). Every figure comes from its own process (one at a time, the same
``--threads`` for torch, numpy's BLAS and numba), so imports and JIT caches do not mix and peak
memory is per run:

- calibration: ``compile_model`` without mapping (default target, 8 bits, percentile 99.9) with
  the ANN read through torch (``SNNC_CALIBRATION_ENGINE=torch``) and through numpy, against
  torch's own forward pass of the original model over the same images (batches of 64, as
  normalize's);
- simulation at T steps of a batch (sample*timesteps/s, constant input, membrane read-out): the
  numba engine, the torch engine (``--device``), T forward passes of the ANN in torch (the bar the
  issue sets), SpikingJelly's converted net (``ann2snn``, 99.9% recipe) stepped T times, and the
  numpy engine (``--with-numpy``; slow). JIT / first-call warm-up runs are excluded; each simulation
  figure is the best of ``--repeat`` timed runs (the same for every job).

Memory: a thread samples the process's resident set every 5 ms during a call of its own, not a timed
one (its thread slowed the timed calls on two busy cores): the first full simulation, or the second
compile (the first, cold, is the timed one); "peak +MB"
is its maximum above the resident set just before (the setup's own memory excluded), next to the
batch's ANN activations (every node of the snnc graph, float32) for scale.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

JOBS = ("torch-calib", "numpy-calib", "numba", "torch", "ann", "spikingjelly", "numpy")


def build(net):
    from resnet18 import NETS   # the same networks as the mapping benchmark (VGG with average pools)
    return NETS[net]()


def images(n, seed):
    return np.random.default_rng(seed).random((n, 3, 32, 32)).astype(np.float32)


def set_threads(n):
    import torch
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(n)
    except ImportError:
        pass
    try:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


class PeakRSS:
    """Peak resident set (MB) above its value at entry, sampled every 5 ms by a thread."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self.stop = False
        self.t = threading.Thread(target=self._watch, daemon=True)
        self.t.start()
        return self

    def _watch(self):
        while not self.stop:
            self.peak = max(self.peak, _rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.stop = True
        self.t.join()
        self.peak = max(self.peak, _rss())
        self.mb = (self.peak - self.base) / 2**20


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed_and_peak(run, repeat, memory_first=True):
    """(best seconds of ``repeat`` calls of ``run``, the PeakRSS of one call of its own): the sampler's
    thread never runs in a timed call, since waking every 5 ms on two busy cores it slowed a cold VGG-11
    compile from 0.46 to 0.67 s. The memory call comes first (the first full call, which allocates
    afresh), or after the timed ones where the first call must be the timed one (a cold compile)."""
    def timed():
        sec = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            run()
            sec = min(sec, time.perf_counter() - t0)
        return sec
    if not memory_first:
        sec = timed()
    with PeakRSS() as m:
        run()
    return (timed() if memory_first else sec), m


# ---- one measurement (in its own process) -------------------------------------------------------

def child(job, a, d: Path) -> dict:
    import torch
    set_threads(a.threads)
    model = build(a.net)
    if job.endswith("calib"):
        from snn_compiler.compile import compile_model
        from snn_compiler.config import CompileConfig
        from snn_compiler.frontend import from_module
        x = images(a.calib, 0)
        with torch.inference_mode():  # warm-up, then torch's forward pass over the calibration images
            model(torch.from_numpy(x[:2]))
            t0 = time.perf_counter()
            for i in range(0, len(x), 64):
                model(torch.from_numpy(x[i:i + 64]))
            fwd = time.perf_counter() - t0
        g = from_module(model, (3, 32, 32))
        sec, m = timed_and_peak(lambda: compile_model(g, CompileConfig(bits=8, calibration=x)), 1, memory_first=False)
        return dict(seconds=sec, torch_forward=fwd, peak_mb=m.mb)
    xb = images(a.batch, 1)
    T, B = a.timesteps, a.batch
    if job == "ann":
        xt = torch.from_numpy(xb)
        with torch.inference_mode():
            model(xt)
            sec, m = timed_and_peak(lambda: [model(xt) for _ in range(T)], a.repeat)
    elif job == "spikingjelly":
        sec, m = _spikingjelly(model, xb, T, a)
    else:
        from snn_compiler import artifact
        from snn_compiler.sim.emulator import simulate
        q = artifact.load(d / f"{a.net}.snnc")
        kw = dict(engine=job, batch_size=B, timesteps=T, readout="membrane")
        if job == "torch":
            kw["device"] = a.device
        simulate(q, xb[:1], **dict(kw, timesteps=1))  # JIT / allocator warm-up
        info, runs = {}, []
        sec, m = timed_and_peak(lambda: runs.append(simulate(q, xb, info=info, **kw)), a.repeat)
        r = runs[-1]
        np.save(d / f"{a.net}-{job}-scores.npy", r.scores)
        if "methods" in info:  # the exact method each weighted op ran (kernel calls)
            return dict(seconds=sec, sample_steps_per_s=B * T / sec, peak_mb=m.mb, methods=info["methods"])
    return dict(seconds=sec, sample_steps_per_s=B * T / sec, peak_mb=m.mb)


def _spikingjelly(model, xb, T, a):
    import copy

    import torch
    try:
        from loguru import logger
        logger.remove()
    except ImportError:
        pass
    from spikingjelly.activation_based import ann2snn, functional
    cal = images(a.calib, 0)
    loader = [torch.from_numpy(cal[i:i + 64]) for i in range(0, len(cal), 64)]
    snn = ann2snn.Converter(recipe=ann2snn.RateCodingRecipe(dataloader=loader, mode="99.9%")).convert(
        copy.deepcopy(model).eval())
    xt = torch.from_numpy(xb)
    def run():
        functional.reset_net(snn)
        total = None
        for _ in range(T):
            out = snn(xt)
            total = out.clone() if total is None else total.add_(out)
        return total

    with torch.no_grad():
        functional.reset_net(snn)
        snn(xt)
        return timed_and_peak(run, a.repeat)


# ---- the driver ----------------------------------------------------------------------------------

def ann_activation_mb(net, batch, d):
    from snn_compiler import artifact
    q = artifact.load(d / f"{net}.snnc")
    return sum(int(np.prod(q.nodes[n]["shape"])) for n in q) * batch * 4 / 2**20


def prepare(net, a, d):
    """Compile once (torch calibration) and save the artifact the simulation jobs load."""
    import torch  # noqa: F401
    from snn_compiler import artifact
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from snn_compiler.frontend import from_module
    q = compile_model(from_module(build(net), (3, 32, 32)), CompileConfig(bits=8, calibration=images(a.calib, 0)))
    artifact.save(q, d / f"{net}.snnc")


def run_job(job, net, a, d):
    args = [sys.executable, __file__, "--child", job, "--net", net, "--dir", str(d), "--calib", str(a.calib),
            "--batch", str(a.batch), "--timesteps", str(a.timesteps), "--threads", str(a.threads),
            "--device", a.device, "--repeat", str(a.repeat)]
    env = dict(os.environ, SNNC_CALIBRATION_ENGINE=job.split("-")[0] if job.endswith("calib") else "auto",
               OMP_NUM_THREADS=str(a.threads), NUMBA_NUM_THREADS=str(a.threads))
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=a.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {a.timeout:.0f} s"}
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode or not line:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(line[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="resnet18,vgg11")
    ap.add_argument("--calib", type=int, default=200, help="calibration images (default 200)")
    ap.add_argument("--batch", type=int, default=8, help="simulated samples (one batch; default 8)")
    ap.add_argument("--timesteps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each simulation; the best counts (default 3)")
    ap.add_argument("--device", default="cpu", help="the torch engine's device (cpu, cuda)")
    ap.add_argument("--skip", default="", help=f"comma list of jobs to skip: {', '.join(JOBS)}")
    ap.add_argument("--with-numpy", action="store_true", help="also time the numpy engine (slow)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per job")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--net", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a, Path(a.dir))), flush=True)
        return 0
    skip = set(filter(None, a.skip.split(",")))
    jobs = [j for j in JOBS if j not in skip and (j != "numpy" or a.with_numpy)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for net in a.nets.split(","):
            prepare(net, a, d)
            res = results[net] = {"ann_activations_mb": ann_activation_mb(net, a.batch, d)}
            for job in jobs:
                res[job] = run_job(job, net, a, d)
                print(net, job, json.dumps(res[job]), flush=True)
            engines = [j for j in ("numba", "torch", "numpy") if "error" not in res.get(j, {"error": 1})]
            ref = d / f"{net}-{engines[0]}-scores.npy" if engines else None
            res["engines_identical"] = all(np.array_equal(np.load(ref), np.load(d / f"{net}-{e}-scores.npy"))
                                           for e in engines) if ref else None
    print_table(results, a)
    if a.json:
        Path(a.json).write_text(json.dumps(dict(args=vars(a), results=results), indent=1))
    return 0


def print_table(results, a):
    print(f"\n{a.threads} threads; calibration on {a.calib} images; simulation of {a.batch} samples at T={a.timesteps} "
          f"(torch engine on {a.device})")
    print(f"{'net':<9} {'what':<44} {'seconds':>9} {'sample*T/s':>11} {'peak +MB':>9}")
    names = {"torch-calib": "compile, calibration through torch", "numpy-calib": "compile, calibration through numpy",
             "numba": "numba engine (event-driven)", "torch": "torch engine (bit-exact integer SNN)",
             "ann": f"ANN in torch, T={a.timesteps} forward passes", "spikingjelly": "SpikingJelly ann2snn, T steps",
             "numpy": "numpy engine (reference definition)"}
    for net, res in results.items():
        fwd = next((r["torch_forward"] for k, r in res.items() if k.endswith("calib") and "torch_forward" in r), None)
        if fwd is not None:
            print(f"{net:<9} {'torch forward over the calibration images':<44} {fwd:>9.2f}")
        for job in JOBS:
            r = res.get(job)
            if r is None:
                continue
            if "error" in r:
                print(f"{net:<9} {names[job]:<44} {'-':>9}  {r['error']}")
                continue
            tp = f"{r['sample_steps_per_s']:>11.1f}" if "sample_steps_per_s" in r else f"{'':>11}"
            extra = f"  ({r['seconds'] / fwd:.2f}x torch forward)" if job.endswith("calib") and fwd else ""
            print(f"{net:<9} {names[job]:<44} {r['seconds']:>9.2f} {tp} {r['peak_mb']:>9.0f}{extra}")
        print(f"{net:<9} {'ANN activations of the batch (float32)':<44} {'':>9} {'':>11} {res['ann_activations_mb']:>9.0f}"
              f"   engines bit-identical: {res['engines_identical']}")
        methods = res.get("numba", {}).get("methods")
        if methods:  # each weighted op: the exact method(s) the numba engine chose, by kernel calls
            tally = {}
            for calls in methods.values():
                key = " + ".join(sorted(calls))
                tally[key] = tally.get(key, 0) + 1
            print(f"{net:<9} numba methods per weighted op: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.items())))


if __name__ == "__main__":
    sys.exit(main())
