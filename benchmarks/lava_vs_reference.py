"""Reference simulator vs Lava on the same compiled network: sample*timesteps/s, outputs checked equal.

    .venv/bin/python benchmarks/lava_vs_reference.py                      # the MNIST CNN (needs torch + data)
    .venv/bin/python benchmarks/lava_vs_reference.py --net mlp            # 784-256-128-10, random weights/data
    .venv/bin/python benchmarks/lava_vs_reference.py --n 50 --timesteps 32 --reset zero --encoding poisson

Both backends run the one compiled graph (``--target lava``, 8-bit) on the same samples. The
reference is timed over ``--repeat`` runs (best); Lava once, end to end (worker start-up, process
graph build, Lava compile, run, read-out) and its run loop alone. Outputs must be equal: scores
(membrane or spike counts), predictions, and every layer's total spike count; the script exits 1
otherwise.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from snn_compiler.sim.encode import ENCODINGS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def mnist_cnn(n, data_dir, bits, reset, timesteps):
    import mnist  # benchmarks/mnist.py (torch, MNIST files)
    from snn_compiler.frontend import from_module

    x_train, _ = mnist.load_mnist("train", data_dir)
    x_test, y_test = mnist.load_mnist("test", data_dir)
    graph = from_module(mnist.load_cnn(), (1, 28, 28))
    return graph, mnist.calibration_subset(x_train, 500), x_test[:n], y_test[:n]


def mlp(n, data_dir, bits, reset, timesteps, sizes=(784, 256, 128, 10)):
    from snn_compiler.ir import add_op, new_graph, verify
    from snn_compiler.ir import ops as O

    rng = np.random.default_rng(0)
    g = new_graph()
    prev = add_op(g, "input", O.Input((sizes[0],)))
    for i in range(1, len(sizes)):
        w = rng.normal(0, 2.0 / np.sqrt(sizes[i - 1]), (sizes[i], sizes[i - 1]))
        d = add_op(g, f"fc{i}", O.Dense(w, bias=rng.normal(0.02, 0.05, sizes[i])), [prev])
        last = i == len(sizes) - 1
        prev = add_op(g, "output" if last else f"relu{i}", O.Output() if last else O.IF(), [d])
    verify(g)
    return g, rng.uniform(0, 1, (256, sizes[0])), rng.uniform(0, 1, (n, sizes[0])), None


NETS = {"mnist-cnn": mnist_cnn, "mlp": mlp}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", choices=sorted(NETS), default="mnist-cnn")
    ap.add_argument("--n", type=int, default=20, help="samples (default 20)")
    ap.add_argument("--timesteps", type=int, default=32)
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--reset", choices=["subtract", "zero"], default="subtract")
    ap.add_argument("--encoding", choices=list(ENCODINGS), default="constant")
    ap.add_argument("--readout", choices=["membrane", "count"], default="membrane")
    ap.add_argument("--repeat", type=int, default=3, help="reference runs (the best is reported)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)

    from snn_compiler.backends import lava
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from snn_compiler.sim.emulator import simulate

    graph, calib, x, y = NETS[args.net](args.n, args.data_dir, args.bits, args.reset, args.timesteps)
    config = CompileConfig(bits=args.bits, reset=args.reset, timesteps=args.timesteps, calibration=calib,
                           target="lava")
    q = compile_model(graph, config, target=lava.TARGET)
    kw = dict(timesteps=args.timesteps, encoding=args.encoding, readout=args.readout, seed=0)
    work = len(x) * args.timesteps

    simulate(q, x[:2], **kw)  # warm-up (numba compile, if that engine is in use)
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ref = simulate(q, x, **kw)
        best = min(best, time.perf_counter() - t0)
    info = {}
    t0 = time.perf_counter()
    got = lava.run(q, x, info=info, **kw)
    lava_s = time.perf_counter() - t0

    equal = (np.array_equal(ref.scores, got.scores) and np.array_equal(ref.predictions, got.predictions)
             and ref.rates == got.rates)
    kinds = sorted(set(info.get("kinds", {}).values()))
    per_layer = ", ".join(f"{n}={k}" for n, k in info.get("kinds", {}).items())
    print(f"network: {args.net}, {args.bits}-bit, reset {args.reset}, {args.encoding} input, {args.readout} read-out, "
          f"{len(x)} samples x T={args.timesteps} ({int(info.get('hardware_steps', 0))} Lava steps, "
          f"neurons: {', '.join(kinds)})")
    print(f"neuron processes: {per_layer}")
    print(f"{'backend':<28}{'seconds':>10}{'sample*steps/s':>18}")
    print(f"{'reference':<28}{best:>10.3f}{work / best:>18.0f}")
    print(f"{'lava (end to end)':<28}{lava_s:>10.3f}{work / lava_s:>18.1f}")
    print(f"{'lava (run loop only)':<28}{info['run_s']:>10.3f}{work / info['run_s']:>18.1f}")
    print(f"reference / lava: {lava_s / best:.0f}x end to end, {info['run_s'] / best:.0f}x run loop")
    if y is not None:
        print(f"accuracy on these {len(x)} samples: {np.mean(ref.predictions == y):.3f} (both backends)")
    print("outputs equal (scores, predictions, per-layer spike totals):", "yes" if equal else "NO")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
