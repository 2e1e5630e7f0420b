"""IF vs LIF in snnc's integer simulator: does a leaky layer cost more than an IF layer?

The MNIST CNN of benchmarks/mnist.py (Conv16-BN-ReLU-AvgPool2, Conv32-BN-ReLU-AvgPool2,
Linear(1568, 128)-ReLU-Linear(128, 10), trained weights benchmarks/weights/mnist_cnn.pt) is
compiled twice with the same weights:

- IF:  the ReLU net converted as usual, ``compile_model(from_module(net), CompileConfig(bits=8,
  calibration=...))`` (every ReLU an IF layer, the last Linear feeding the read-out);
- LIF: every ReLU replaced by ``snn_compiler.nn.LIF(beta)`` and one more LIF after the last
  Linear (a spiking net's last LIF is its read-out). Not trained: this is a speed benchmark.
  By default each LIF's threshold is the lambda (``Neuron.scale``) the IF compile calibrated
  for the same layer, so both nets see comparable currents and fire at comparable rates
  (``--lif-threshold 1.0`` gives plain ``LIF(beta)``; the event-driven convolutions' cost
  follows the spike rates, which are printed).

Both are simulated with ``simulate(q, x, timesteps=T, readout="count", engine="numba")`` after
a warm-up call (JIT excluded), IF and LIF alternating at each T, best of ``--repeat`` runs.
Throughput is samples x timesteps / second of simulate() (encoding and read-out included). The
neuron kernel of the numba engine (``numba_kernels.neuron_layer``, which compiles the one step
``ir.neuron.int_update`` for IF and LIF alike) is timed in place during those runs, so "ns per
neuron-step" compares the two update rules on the real currents. The numpy engine runs both nets at one T on fewer samples, and its spike counts are
checked equal to the numba engine's.

    .venv/bin/python benchmarks/lif_vs_if.py                       # defaults: ~1.5 min on 2 idle cores
    .venv/bin/python benchmarks/lif_vs_if.py --n 2048 --repeat 3 --timesteps 8,16,32,64,128
    .venv/bin/python benchmarks/lif_vs_if.py --synthetic           # no MNIST files needed

Data: MNIST from ../shared/data/mnist (``--data-dir``), or ``--synthetic`` uniform [0, 1] images
(the throughput then reflects those images' spike rates, not MNIST's).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist  # noqa: E402  (benchmarks/mnist.py)
from mnist_vs_spikingjelly import set_threads  # noqa: E402  (one thread budget for torch, BLAS, numba)


def load_data(a):
    if a.synthetic:
        rng = np.random.default_rng(a.seed)
        x = rng.random((a.n + a.calib_n, 1, 28, 28), dtype=np.float32)
        return x[:a.calib_n], x[a.calib_n:], None
    x_train, _ = mnist.load_mnist("train", a.data_dir)
    x_test, y_test = mnist.load_mnist("test", a.data_dir)
    x_cal = mnist.calibration_subset(x_train, a.calib_n, a.seed)
    return x_cal, x_test[:a.n], y_test[:a.n]


def neuron_layers(q):
    from snn_compiler.ir import ops as O
    from snn_compiler.ir import topo_order

    return [n for n in topo_order(q) if isinstance(q.nodes[n]["op"], O.NEURONS)]


def lif_net(model, beta, thresholds):
    """``model`` with every ReLU replaced by LIF(beta, threshold) and a LIF appended (the read-out)."""
    from torch import nn

    from snn_compiler import nn as snn

    layers = list(copy.deepcopy(model))
    relus = [i for i, m in enumerate(layers) if isinstance(m, nn.ReLU)]
    if len(thresholds) != len(relus) + 1:
        raise SystemExit(f"{len(thresholds)} thresholds for {len(relus)} ReLUs and one read-out")
    for i, th in zip(relus, thresholds):
        layers[i] = snn.LIF(beta, threshold=th)
    return nn.Sequential(*layers, snn.LIF(beta, threshold=thresholds[-1])).eval()


class KernelClock:
    """Wraps the numba engine's neuron kernels to accumulate their seconds and neuron-steps."""

    NAMES = ("neuron_layer",)

    def __init__(self):
        from snn_compiler.sim import fast

        self.fast, self.orig = fast.K, {k: getattr(fast.K, k) for k in self.NAMES}
        self.reset()

    def reset(self):
        self.sec = {k: 0.0 for k in self.orig}
        self.steps = {k: 0 for k in self.orig}

    def __enter__(self):
        for k, f in self.orig.items():
            def timed(*args, _f=f, _k=k):
                t0 = time.perf_counter()
                r = _f(*args)
                self.sec[_k] += time.perf_counter() - t0
                self.steps[_k] += args[12].size  # spikes (T', F, N): neuron-steps of the call
                return r
            setattr(self.fast, k, timed)
        return self

    def __exit__(self, *exc):
        for k, f in self.orig.items():
            setattr(self.fast, k, f)


def run(q, x, t, engine, batch_size, clock=None):
    from snn_compiler.sim.emulator import simulate

    if clock is not None:
        clock.reset()
    t0 = time.perf_counter()
    r = simulate(q, x, timesteps=t, readout="count", engine=engine, batch_size=batch_size)
    sec = time.perf_counter() - t0
    kern = dict(clock.sec) if clock is not None else {}
    steps = dict(clock.steps) if clock is not None else {}
    return r, sec, kern, steps


def accuracy(r, y):
    return None if y is None else 100.0 * float((np.asarray(r.predictions) == y).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data-dir", default=None, help=f"MNIST IDX files (default {mnist.DEFAULT_DATA_DIR})")
    p.add_argument("--synthetic", action="store_true", help="uniform random images instead of MNIST")
    p.add_argument("--weights", default=str(mnist.DEFAULT_WEIGHTS))
    p.add_argument("--timesteps", default="8,16,32,64", help="comma-separated T for the numba engine (default 8,16,32,64)")
    p.add_argument("--n", type=int, default=1024, help="test images simulated per run (default 1024)")
    p.add_argument("--repeat", type=int, default=2, help="runs per (net, T); the fastest is reported (default 2)")
    p.add_argument("--calib-n", type=int, default=1000, help="calibration images for the IF compile (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2, help="numba/torch/BLAS threads (default 2)")
    p.add_argument("--beta", type=float, default=0.9, help="LIF membrane retention (default 0.9)")
    p.add_argument("--lif-threshold", default="matched",
                   help="'matched' (each LIF's threshold = the IF layer's calibrated lambda; default) or a number")
    p.add_argument("--numpy-t", type=int, default=16, help="T of the numpy-engine run (default 16; 0: skip)")
    p.add_argument("--numpy-n", type=int, default=256, help="images in the numpy-engine run (default 256)")
    a = p.parse_args(argv)
    ts = sorted({int(t) for t in a.timesteps.split(",")})

    set_threads(a.threads)
    try:
        from snn_compiler.compile import compile_model
        from snn_compiler.config import CompileConfig
        from snn_compiler.frontend import from_module
    except ImportError as e:
        raise SystemExit(f"snnc is not importable ({e}); install the project (`pip install -e .`)") from None

    x_cal, x, y = load_data(a)
    model = mnist.load_cnn(a.weights)
    t0 = time.perf_counter()
    q_if = compile_model(from_module(model, (1, 28, 28)), CompileConfig(bits=8, calibration=x_cal))
    t_if = time.perf_counter() - t0
    lam = [float(q_if.nodes[n]["op"].scale) for n in neuron_layers(q_if)]
    ths = lam if a.lif_threshold == "matched" else [float(a.lif_threshold)] * len(lam)
    t0 = time.perf_counter()
    q_lif = compile_model(from_module(lif_net(model, a.beta, ths), (1, 28, 28)), CompileConfig(bits=8, calibration=x_cal))
    t_lif = time.perf_counter() - t0
    nets = {"IF": q_if, "LIF": q_lif}
    from snn_compiler.ir import ops as O
    print(f"compile: IF {t_if:.1f} s, LIF {t_lif:.1f} s; data: {'synthetic' if a.synthetic else 'MNIST'} "
          f"({len(x)} images); beta {a.beta}; LIF thresholds "
          + ("matched to the IF lambdas " if a.lif_threshold == "matched" else "")
          + "[" + ", ".join(f"{t:.3g}" for t in ths) + "]", flush=True)
    for name, q in nets.items():
        print(f"  {name:3s} layers: " + ", ".join(f"{n} {O.kind(q.nodes[n]['op'])}" for n in neuron_layers(q)))

    clock = KernelClock()
    for q in nets.values():  # warm-up: JIT (or numba's cache) and first-touch allocations, not timed
        run(q, x[:a.batch_size], 2, "numba", a.batch_size)

    best = {}  # (net, T) -> (sec, result, kernel sec, kernel steps)
    with clock:
        for t in ts:
            for _ in range(a.repeat):
                for name, q in nets.items():  # IF and LIF alternate: the same background load
                    r, sec, kern, steps = run(q, x, t, "numba", a.batch_size, clock)
                    if (name, t) not in best or sec < best[name, t][0]:
                        best[name, t] = (sec, r, kern, steps)
            print(f"  T={t:3d}: IF {len(x) * t / best['IF', t][0] / 1e3:6.1f}k, "
                  f"LIF {len(x) * t / best['LIF', t][0] / 1e3:6.1f}k sample*steps/s", flush=True)

    print()
    print(f"numba engine, {len(x)} images, batch {a.batch_size}, {a.threads} threads, readout count, "
          f"best of {a.repeat}; throughput in sample*steps/s; kernel: the neuron-update kernels' share "
          "of the time and their ns per neuron-step")
    head = (f"{'T':>4} | {'IF':>8} | {'LIF':>8} | {'LIF/IF':>6} | {'IF kern':>7} | {'LIF kern':>8} | "
            f"{'IF ns/n-step':>12} | {'LIF ns/n-step':>13} | {'IF acc':>6} | {'LIF acc':>7}")
    print(head)
    print("-" * len(head))
    for t in ts:
        row = [f"{t:4d}"]
        tp = {k: len(x) * t / best[k, t][0] for k in nets}
        row += [f"{tp['IF'] / 1e3:7.1f}k", f"{tp['LIF'] / 1e3:7.1f}k", f"{tp['LIF'] / tp['IF']:5.2f}x"]
        ns, share = {}, {}
        for k in nets:
            sec, _, kern, steps = best[k, t]
            ks, kn = sum(kern.values()), sum(steps.values())
            share[k] = f"{100 * ks / sec:6.0f}%" if kern else "      -"
            ns[k] = f"{1e9 * ks / kn:.2f}" if kn else "-"
        row += [f"{share['IF']:>7}", f"{share['LIF']:>8}", f"{ns['IF']:>12}", f"{ns['LIF']:>13}"]
        acc = {k: accuracy(best[k, t][1], y) for k in nets}
        row += [f"{acc[k]:{w}.2f}" if acc[k] is not None else " " * (w - 1) + "-" for k, w in (("IF", 6), ("LIF", 7))]
        print(" | ".join(row))
    tot = {k: sum(len(x) * t for t in ts) / sum(best[k, t][0] for t in ts) for k in nets}
    print(f"overall: IF {tot['IF'] / 1e3:.1f}k, LIF {tot['LIF'] / 1e3:.1f}k sample*steps/s "
          f"(LIF/IF {tot['LIF'] / tot['IF']:.2f}x)")
    print(f"mean spikes per neuron per step at T={ts[-1]} (the event-driven layers' work follows these):")
    for k in nets:
        rates = best[k, ts[-1]][1].rates or {}
        print(f"  {k:3s}: " + ", ".join(f"{n} {v:.3f}" for n, v in rates.items()))
    print("  (the LIF net is untrained: its accuracy says nothing, only its speed does)")

    if a.numpy_t:
        nx = x[:a.numpy_n]
        print(f"\nnumpy engine vs numba engine at T={a.numpy_t}, {len(nx)} images (same spike counts required):")
        print(f"{'net':>4} | {'numpy':>8} | {'numba':>8} | {'numba/numpy':>11} | same output")
        for name, q in nets.items():
            rn, sn, _, _ = run(q, nx, a.numpy_t, "numpy", a.batch_size)
            rb, sb, _, _ = run(q, nx, a.numpy_t, "numba", a.batch_size)
            same = np.array_equal(rn.scores, rb.scores)
            print(f"{name:>4} | {len(nx) * a.numpy_t / sn / 1e3:7.1f}k | {len(nx) * a.numpy_t / sb / 1e3:7.1f}k | "
                  f"{sn / sb:10.1f}x | {'yes' if same else 'NO'}")
            if not same:
                print(f"  numpy and numba engines disagree on the {name} net", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
