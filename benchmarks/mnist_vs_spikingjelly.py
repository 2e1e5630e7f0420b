"""snnc vs SpikingJelly on real MNIST: ANN, int8 SNN and float SNN accuracy against T, and throughput.

The same trained CNN (benchmarks/weights/mnist_cnn.pt, the CNN of ../shared/notes/peers.md), the
same calibration images (a seeded subset of the training set), the same test images and the same
T for both. Both SNNs take the test image as a constant analog input current every step and
predict from the cumulative output of the last Linear layer (membrane read-out).

- snnc: ``compile_model(from_module(model), CompileConfig(bits=8, norm=...))``, then
  ``simulate(mode="int")`` (the bit-exact integer SNN; float SNN with ``mode="float"``).
- SpikingJelly 2.0.0: ``ann2snn.Converter(recipe=ann2snn.RateCodingRecipe(dataloader, mode))``;
  the converted net is stepped T times in its default single-step mode, as in SpikingJelly's
  ann2snn tutorial, and the output of the last Linear is summed over the steps.

Throughput is samples x timesteps / seconds of simulation (encoding, state reset and read-out
included; compile and conversion excluded), both libraries on the same number of CPU threads
(torch and numpy's BLAS). SpikingJelly is run once for max(T) steps and its accuracy and elapsed
time are read at every T on the way, which is exactly what a run of T steps would give and cost.

    .venv/bin/python benchmarks/mnist_vs_spikingjelly.py            # full test set, T = 4..128
    .venv/bin/python benchmarks/mnist_vs_spikingjelly.py --n-test 2000 --timesteps 32,64

Install SpikingJelly first with ``bash benchmarks/setup_peers.sh``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist  # noqa: E402  (benchmarks/mnist.py)

OUT_DIR = Path(__file__).resolve().parent / "out"


def set_threads(n):
    import torch

    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)  # numpy's BLAS: the same core budget as torch
    except ImportError:
        pass
    try:
        import numba  # snnc's event-driven engine, when installed

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass


# ---- SpikingJelly --------------------------------------------------------------------------------

def spikingjelly_convert(model, x_cal, mode, calib_batch):
    import copy

    import torch

    try:
        from loguru import logger

        logger.remove()  # SpikingJelly logs every conversion at INFO level
    except ImportError:
        pass
    try:
        from spikingjelly.activation_based import ann2snn
    except ImportError as e:
        raise SystemExit(f"SpikingJelly is not importable ({e}); run `bash benchmarks/setup_peers.sh`, "
                         "or pass --no-spikingjelly") from None
    # SpikingJelly's percentile is torch.quantile per batch (<= ~16M values), averaged over
    # batches with momentum 0.1; its "max" likewise is a running average of batch maxima.
    loader = [torch.from_numpy(x_cal[i:i + calib_batch]) for i in range(0, len(x_cal), calib_batch)]
    recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode=mode)
    return ann2snn.Converter(recipe=recipe).convert(copy.deepcopy(model).eval())


def spikingjelly_run(snn, x, y, timesteps, batch_size):
    """Accuracy (%) and seconds at every T in ``timesteps``, from one run of max(T) steps per batch:
    the time to checkpoint T is what a run of T steps costs (the argmax at earlier checkpoints,
    on (batch, 10) values, is negligible)."""
    import torch
    from spikingjelly.activation_based import functional

    ts = sorted(set(timesteps))
    correct = {t: 0 for t in ts}
    seconds = {t: 0.0 for t in ts}
    with torch.no_grad():
        functional.reset_net(snn)  # warm-up (allocator, kernels), not timed
        for _ in range(2):
            snn(torch.from_numpy(x[:batch_size]))
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[i:i + batch_size])
            yb = y[i:i + batch_size]
            t0 = time.perf_counter()
            functional.reset_net(snn)
            total = None
            for t in range(1, ts[-1] + 1):
                out = snn(xb)
                total = out.clone() if total is None else total.add_(out)
                if t in correct:
                    pred = total.argmax(1).numpy()
                    seconds[t] += time.perf_counter() - t0
                    correct[t] += int((pred == yb).sum())
    return {t: 100.0 * correct[t] / len(x) for t in ts}, seconds


# ---- snnc -----------------------------------------------------------------------------------------

def snnc_compile(model, x_cal, bits, norm, v_init=None, pool=None):
    try:
        from snn_compiler.compile import compile_model
        from snn_compiler.config import CompileConfig
        from snn_compiler.frontend import from_module
    except ImportError as e:
        raise SystemExit(f"snnc is not importable ({e}); install the project (`pip install -e .`) "
                         "or pass --no-snnc") from None
    kwargs = {k: v for k, v in (("v_init", v_init), ("pool", pool)) if v is not None}
    graph = from_module(model.eval(), (1, 28, 28))
    return compile_model(graph, CompileConfig(bits=bits, norm=norm, calibration=x_cal, **kwargs))


def snnc_run(q, x, y, timesteps, batch_size, mode):
    """Accuracy (%), seconds of simulate() and per-layer rates at each T (one simulate per T)."""
    from snn_compiler.sim.emulator import simulate

    acc, seconds, rates = {}, {}, {}
    simulate(q, x[:batch_size], mode=mode, timesteps=2, batch_size=batch_size)  # warm-up, not timed
    for t in timesteps:
        t0 = time.perf_counter()
        r = simulate(q, x, mode=mode, timesteps=t, encoding="constant", readout="membrane",
                     batch_size=batch_size)
        seconds[t] = time.perf_counter() - t0
        acc[t] = 100.0 * float((np.asarray(r.predictions) == y).mean())
        rates[t] = dict(getattr(r, "rates", None) or {})
        print(f"  snnc {mode:5s} T={t:3d}: {acc[t]:6.2f}%  {len(x) * t / seconds[t] / 1e3:7.1f}k sample*steps/s",
              flush=True)
    return acc, seconds, rates


# ---- report ---------------------------------------------------------------------------------------

def fmt_acc(d, t):
    return f"{d[t]:6.2f}" if d and t in d else "     -"


def fmt_tp(n, t, seconds):
    return f"{n * t / seconds[t] / 1e3:7.1f}k" if seconds and t in seconds else "       -"


def print_table(a, res):
    ts = a.timesteps
    n_acc, n_tp = res["n_test"], res["n_test"]
    print()
    print(f"MNIST test images: {n_acc} ({'full test set' if n_acc == 10000 else 'first %d' % n_acc}); "
          f"calibration: {a.calib_n} training images (seed {a.seed}); threads: {a.threads}; "
          f"batch {a.batch_size}")
    print(f"ANN (torch, float32): {res['ann']:.2f}%")
    if res.get("snnc_float") and res["n_float"] < n_acc:
        print(f"* snnc float SNN on the first {res['n_float']} test images only "
              f"(ANN on those: {res['ann_float_subset']:.2f}%)")
    if "snnc_ann_ir" in res:
        print(f"snnc IR run as ANN:   {res['snnc_ann_ir']:.2f}%")
    cols = []
    if res.get("snnc_int"):
        cols.append((f"snnc int{a.bits}", res["snnc_int"]))
    if res.get("snnc_float"):
        cols.append(("snnc float" + ("*" if res["n_float"] < n_acc else ""), res["snnc_float"]))
    for mode, d in res.get("sj", {}).items():
        cols.append((f"SJ {mode}", d["acc"]))
    head = "   T | " + " | ".join(f"{c:>12s}" for c, _ in cols)
    tp_cols = []
    if res.get("snnc_int_s"):
        tp_cols.append("snnc int")
    for mode in res.get("sj", {}):
        tp_cols.append(f"SJ {mode}")
    head += " || " + " | ".join(f"{c:>10s}" for c in tp_cols) + (" | speedup" if len(tp_cols) > 1 else "")
    print("accuracy (%)" + " " * (len(head.split("||")[0]) - 12) + "|| throughput (sample*steps/s)")
    print(head)
    print("-" * len(head))
    for t in ts:
        row = f"{t:4d} | " + " | ".join(f"{fmt_acc(d, t):>12s}" for _, d in cols)
        tps = []
        if res.get("snnc_int_s"):
            tps.append(n_tp * t / res["snnc_int_s"][t])
        for mode, d in res.get("sj", {}).items():
            tps.append(n_tp * t / d["seconds"][t])
        row += " || " + " | ".join(f"{v / 1e3:9.1f}k" for v in tps)
        if len(tps) > 1:
            row += f" | {tps[0] / tps[1]:6.1f}x"
        print(row)
    if res.get("snnc_int_s") and res.get("sj"):
        tot_snnc = sum(n_tp * t for t in ts) / sum(res["snnc_int_s"][t] for t in ts)
        mode, d = next(iter(res["sj"].items()))
        tot_sj = n_tp * ts[-1] / d["seconds"][ts[-1]]  # one run of max(T) steps per batch
        print(f"overall: snnc int {tot_snnc / 1e3:.1f}k, SpikingJelly {mode} {tot_sj / 1e3:.1f}k "
              f"sample*steps/s ({tot_snnc / tot_sj:.1f}x)")


def plot(a, res, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ts = a.timesteps
    if res.get("snnc_int"):
        ax.plot(ts, [res["snnc_int"][t] for t in ts], "o-", label=f"snnc int{a.bits}")
    if res.get("snnc_float"):
        sub = f" (first {res['n_float']})" if res.get("n_float", res["n_test"]) < res["n_test"] else ""
        ax.plot(ts, [res["snnc_float"][t] for t in ts], "s--", label="snnc float SNN" + sub)
    for mode, d in res.get("sj", {}).items():
        ax.plot(ts, [d["acc"][t] for t in ts], "^:", label=f"SpikingJelly {mode}")
    ax.axhline(res["ann"], color="k", lw=0.8, label=f"ANN {res['ann']:.2f}%")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts, [str(t) for t in ts])
    lows = [d[t] for d in [res.get("snnc_int"), res.get("snnc_float")] + [v["acc"] for v in res.get("sj", {}).values()]
            if d for t in ts]
    ax.set_ylim(max(0.0, min(lows + [res["ann"]]) - 2), 100)
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("MNIST test accuracy (%)")
    ax.set_title(f"MNIST CNN, {res['n_test']} test images")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def save_results(path, res):
    """Write a benchmark's results as JSON (values it cannot encode as strings) and say where."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=1, default=str)
    print(f"results: {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help=f"folder of the MNIST IDX files (default {mnist.DEFAULT_DATA_DIR})")
    p.add_argument("--weights", default=str(mnist.DEFAULT_WEIGHTS))
    p.add_argument("--timesteps", default="4,8,16,32,64,128", help="comma-separated T (default 4,8,16,32,64,128)")
    p.add_argument("--n-test", type=int, default=10000, help="first N test images (default all 10,000)")
    p.add_argument("--calib-n", type=int, default=2000, help="calibration images from the training set (default 2000)")
    p.add_argument("--calib-batch", type=int, default=500,
                   help="SpikingJelly calibration batch (its percentile is per batch, momentum-averaged)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration subset")
    p.add_argument("--batch-size", type=int, default=256, help="simulation batch, both libraries (default 256)")
    p.add_argument("--threads", type=int, default=2, help="torch and BLAS threads, both libraries (default 2)")
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--norm", default="percentile:99.9", help="snnc --norm (default percentile:99.9)")
    p.add_argument("--v-init", default=None, choices=("half", "zero"), help="snnc --v-init (default: snnc's)")
    p.add_argument("--pool", default=None, choices=("sum", "spike"), help="snnc --pool (default: snnc's)")
    p.add_argument("--sj-modes", default="99.9%", help="SpikingJelly modes, comma-separated (e.g. '99.9%%,max')")
    p.add_argument("--float-n", type=int, default=2000,
                   help="snnc's float SNN (a diagnostic, slower) on the first N test images only (default 2000; 0: skip)")
    p.add_argument("--no-snnc", action="store_true")
    p.add_argument("--no-spikingjelly", action="store_true")
    p.add_argument("--plot", default=str(OUT_DIR / "mnist_accuracy_vs_T.png"), help="PNG path ('' for none)")
    p.add_argument("--json", default=str(OUT_DIR / "mnist_vs_spikingjelly.json"), help="results JSON ('' for none)")
    a = p.parse_args(argv)
    a.timesteps = sorted({int(t) for t in a.timesteps.split(",")})

    set_threads(a.threads)
    x_train, _ = mnist.load_mnist("train", a.data_dir)
    x_test, y_test = mnist.load_mnist("test", a.data_dir)
    x_test, y_test = x_test[:a.n_test], y_test[:a.n_test]
    x_cal = mnist.calibration_subset(x_train, a.calib_n, a.seed)
    del x_train
    model = mnist.load_cnn(a.weights)

    res = {"n_test": len(x_test), "timesteps": a.timesteps, "args": {k: v for k, v in vars(a).items()}}
    res["ann"] = mnist.ann_accuracy(model, x_test, y_test)
    print(f"ANN: {res['ann']:.2f}% on {len(x_test)} test images", flush=True)
    if a.float_n and a.float_n < len(x_test):
        res["ann_float_subset"] = mnist.ann_accuracy(model, x_test[:a.float_n], y_test[:a.float_n])

    if not a.no_snnc:
        t0 = time.perf_counter()
        q = snnc_compile(model, x_cal, a.bits, a.norm, a.v_init, a.pool)
        facts = q.graph.get("snnc", {})
        print(f"snnc compile ({a.norm}, {a.bits} bits, v_init {facts.get('v_init')}, pool {a.pool or 'default'}): "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        try:
            from snn_compiler.sim.emulator import run_ann

            scores = run_ann(q, x_test, batch_size=a.batch_size)
            res["snnc_ann_ir"] = 100.0 * float((scores.argmax(1) == y_test).mean())
        except Exception as e:  # diagnostic only
            print(f"  (run_ann failed: {e})")
        res["snnc_int"], res["snnc_int_s"], res["snnc_int_rates"] = snnc_run(
            q, x_test, y_test, a.timesteps, a.batch_size, "int")
        if a.float_n:
            nf = min(a.float_n, len(x_test))
            res["n_float"] = nf
            res["snnc_float"], res["snnc_float_s"], _ = snnc_run(
                q, x_test[:nf], y_test[:nf], a.timesteps, a.batch_size, "float")

    if not a.no_spikingjelly:
        res["sj"] = {}
        for mode in a.sj_modes.split(","):
            t0 = time.perf_counter()
            snn = spikingjelly_convert(model, x_cal, mode, a.calib_batch)
            print(f"SpikingJelly convert ({mode}): {time.perf_counter() - t0:.1f} s", flush=True)
            acc, sec = spikingjelly_run(snn, x_test, y_test, a.timesteps, a.batch_size)
            res["sj"][mode] = {"acc": acc, "seconds": sec}
            for t in a.timesteps:
                print(f"  SpikingJelly {mode} T={t:3d}: {acc[t]:6.2f}%  "
                      f"{len(x_test) * t / sec[t] / 1e3:7.1f}k sample*steps/s", flush=True)

    print_table(a, res)
    if res.get("snnc_int_rates") and a.timesteps[-1] in res["snnc_int_rates"]:
        rates = res["snnc_int_rates"][a.timesteps[-1]]
        if rates:
            print(f"snnc int mean spike rate per layer at T={a.timesteps[-1]}: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    if a.plot:
        path = plot(a, res, Path(a.plot))
        if path:
            print(f"plot: {path}")
    if a.json:
        save_results(a.json, res)


if __name__ == "__main__":
    sys.exit(main())
