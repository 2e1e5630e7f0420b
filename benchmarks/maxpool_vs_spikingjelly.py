"""Max pooling on real MNIST: a VGG-style max-pool CNN converted by snnc and by SpikingJelly, side by side.

The network (VGG-style: two 3x3 convs per stage, BatchNorm, ReLU, 2x2 max pooling):

    Conv(1->16)-BN-ReLU, Conv(16->16)-BN-ReLU, MaxPool(2)       28x28 -> 14x14
    Conv(16->32)-BN-ReLU, Conv(32->32)-BN-ReLU, MaxPool(2)      14x14 -> 7x7
    Flatten, Linear(1568 -> 128)-ReLU, Linear(128 -> 10)

trained briefly on MNIST (1 epoch by default, Adam + one-cycle LR, batch 128, seed 0; the state
dict is cached in benchmarks/out/ and reused unless --retrain), then

- snnc: ``compile_model(from_module(model), CompileConfig(bits=8, norm=...))``; each max pool is
  lowered into IF layers computing ``max(a, b) = relu(a - b) + b`` (passes/lower_maxpool.py), and
  the bit-exact integer SNN runs at every T;
- SpikingJelly 2.0.0: ``ann2snn.Converter(recipe=ann2snn.RateCodingRecipe(dataloader, mode))``,
  which keeps ``nn.MaxPool2d`` and applies it to the IF neurons' spikes at every step (a spike
  leaves the pool when any neuron of the window spiked). ``--sj-pre-spike`` adds its other
  option, ``channel_wise=True, pre_spike_maxpool=True`` (the pool moved before the IF neuron: it
  takes the max of the input currents at every step).

Both calibrate on the same training images, take the test image as a constant analog input
every step and predict from the cumulative output of the last Linear. Helpers (MNIST loading,
SpikingJelly conversion and runs, snnc runs, the table) are those of mnist_vs_spikingjelly.py.

    .venv/bin/python benchmarks/maxpool_vs_spikingjelly.py       # first 4,000 test images, T = 16, 32, 64: ~7 min
    .venv/bin/python benchmarks/maxpool_vs_spikingjelly.py --n-test 10000 --sj-pre-spike    # ~25-40 min

Install SpikingJelly first with ``bash benchmarks/setup_peers.sh``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist  # noqa: E402  (benchmarks/mnist.py)
import mnist_vs_spikingjelly as base  # noqa: E402  (the MNIST benchmark's helpers)

OUT_DIR = Path(__file__).resolve().parent / "out"
DEFAULT_WEIGHTS = OUT_DIR / "mnist_vgg_maxpool.pt"


def make_vgg():
    import torch.nn as nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, 16), *block(16, 16), nn.MaxPool2d(2),
        *block(16, 32), *block(32, 32), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def train_vgg(x, y, epochs, batch_size=128, lr=3e-3, seed=0):
    import torch

    torch.manual_seed(seed)
    model = make_vgg()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(xt) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        loss, sec = mnist.train_epoch(model, xt, yt, opt, sched, gen, batch_size)
        print(f"  epoch {epoch + 1}/{epochs}: loss {loss:.4f}, {sec:.0f} s", flush=True)
    return model.eval()


def load_or_train(a, x_train, y_train):
    import torch

    path = Path(a.weights)
    if path.exists() and not a.retrain:
        model = make_vgg()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        print(f"weights: {path} (pass --retrain to train again)")
        return model.eval(), None
    t0 = time.perf_counter()
    print(f"training the VGG-style max-pool CNN ({a.epochs} epoch(s), {a.threads} threads)", flush=True)
    model = train_vgg(x_train, y_train, a.epochs, seed=a.seed)
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    print(f"trained in {seconds:.0f} s -> {path}")
    return model, seconds


def spikingjelly_convert_pre_spike(model, x_cal, mode, calib_batch):
    """SpikingJelly's channel-wise recipe with the max pool moved before the spiking neuron."""
    import copy

    import torch
    from spikingjelly.activation_based import ann2snn

    loader = [torch.from_numpy(x_cal[i:i + calib_batch]) for i in range(0, len(x_cal), calib_batch)]
    recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode=mode, channel_wise=True, pre_spike_maxpool=True)
    return ann2snn.Converter(recipe=recipe).convert(copy.deepcopy(model).eval())


def lowering_cost(model, q):
    """Neurons and depth the max pools add: the compiled graph against the ANN's ReLU layers."""
    from snn_compiler.frontend import from_module
    from snn_compiler.ir import op_of, topo_order
    from snn_compiler.ir import ops as O
    from snn_compiler.ir.layers import layer_depths, neuron_layers

    ann = from_module(model.eval(), (1, 28, 28))
    relus = [n for n in ann if isinstance(op_of(ann, n), O.Neuron)]
    layers = neuron_layers(q, topo_order(q))
    pool_layers = [n for n in layers if n not in relus]
    size = lambda n: int(np.prod(q.nodes[n]["shape"]))
    return {
        "ann_layers": len(relus), "snn_layers": len(layers), "pool_layers": pool_layers,
        "ann_neurons": sum(size(n) for n in relus), "pool_neurons": sum(size(n) for n in pool_layers),
        "depth": int(layer_depths(q)[next(n for n in layers if O.is_readout(op_of(q, n)))]),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help=f"folder of the MNIST IDX files (default {mnist.DEFAULT_DATA_DIR})")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="state dict cache (default benchmarks/out/)")
    p.add_argument("--retrain", action="store_true", help="train again even if --weights exists")
    p.add_argument("--epochs", type=int, default=1, help="training epochs (default 1)")
    p.add_argument("--timesteps", default="16,32,64", help="comma-separated T (default 16,32,64)")
    p.add_argument("--n-test", type=int, default=4000, help="first N test images (default 4000; 10000: all)")
    p.add_argument("--calib-n", type=int, default=2000, help="calibration images from the training set (default 2000)")
    p.add_argument("--calib-batch", type=int, default=500, help="SpikingJelly calibration batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration subset and the training")
    p.add_argument("--batch-size", type=int, default=256, help="simulation batch, both libraries (default 256)")
    p.add_argument("--threads", type=int, default=2, help="torch and BLAS threads, both libraries (default 2)")
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--norm", default="percentile:99.9", help="snnc --norm (default percentile:99.9)")
    p.add_argument("--sj-modes", default="99.9%", help="SpikingJelly modes, comma-separated (e.g. '99.9%%,max')")
    p.add_argument("--sj-pre-spike", action="store_true",
                   help="also SpikingJelly's channel-wise recipe with pre_spike_maxpool=True (per mode)")
    p.add_argument("--no-spikingjelly", action="store_true")
    p.add_argument("--json", default=str(OUT_DIR / "maxpool_vs_spikingjelly.json"), help="results JSON ('' for none)")
    a = p.parse_args(argv)
    a.timesteps = sorted({int(t) for t in a.timesteps.split(",")})

    t_start = time.perf_counter()
    base.set_threads(a.threads)
    x_train, y_train = mnist.load_mnist("train", a.data_dir)
    x_test, y_test = mnist.load_mnist("test", a.data_dir)
    x_test, y_test = x_test[:a.n_test], y_test[:a.n_test]
    x_cal = mnist.calibration_subset(x_train, a.calib_n, a.seed)
    model, train_s = load_or_train(a, x_train, y_train)
    del x_train, y_train

    res = {"n_test": len(x_test), "timesteps": a.timesteps, "args": dict(vars(a)), "train_s": train_s}
    res["ann"] = mnist.ann_accuracy(model, x_test, y_test)
    print(f"ANN: {res['ann']:.2f}% on {len(x_test)} test images", flush=True)

    t0 = time.perf_counter()
    q = base.snnc_compile(model, x_cal, a.bits, a.norm)
    print(f"snnc compile ({a.norm}, {a.bits} bits): {time.perf_counter() - t0:.1f} s", flush=True)
    from snn_compiler.sim.emulator import run_ann

    res["snnc_ann_ir"] = 100.0 * float((run_ann(q, x_test, batch_size=a.batch_size).argmax(1) == y_test).mean())
    res["cost"] = cost = lowering_cost(model, q)
    res["snnc_int"], res["snnc_int_s"], res["snnc_int_rates"] = base.snnc_run(
        q, x_test, y_test, a.timesteps, a.batch_size, "int")

    if not a.no_spikingjelly:
        res["sj"] = {}
        variants = [(m, m, base.spikingjelly_convert) for m in a.sj_modes.split(",")]
        if a.sj_pre_spike:
            variants += [(f"{m} pre", m, spikingjelly_convert_pre_spike) for m in a.sj_modes.split(",")]
        for label, mode, convert in variants:
            t0 = time.perf_counter()
            snn = convert(model, x_cal, mode, a.calib_batch)
            print(f"SpikingJelly convert ({label}): {time.perf_counter() - t0:.1f} s", flush=True)
            acc, sec = base.spikingjelly_run(snn, x_test, y_test, a.timesteps, a.batch_size)
            res["sj"][label] = {"acc": acc, "seconds": sec}
            for t in a.timesteps:
                print(f"  SpikingJelly {label} T={t:3d}: {acc[t]:6.2f}%  "
                      f"{len(x_test) * t / sec[t] / 1e3:7.1f}k sample*steps/s", flush=True)

    base.print_table(a, res)
    print(f"snnc's IR read as an ANN: {res['snnc_ann_ir']:.2f}% (the lowering is exact in the ANN)")
    print(f"max pooling in snnc: {len(cost['pool_layers'])} extra IF layers "
          f"({', '.join(cost['pool_layers'])}), {cost['pool_neurons']:,} extra neurons "
          f"(+{100 * cost['pool_neurons'] / cost['ann_neurons']:.0f}% over the ANN's {cost['ann_neurons']:,} "
          f"ReLU/output neurons); pipeline depth {cost['depth']} layers (the ANN has {cost['ann_layers']})")
    rates = res["snnc_int_rates"].get(a.timesteps[-1]) or {}
    if rates:
        shape = lambda n: int(np.prod(q.nodes[n]["shape"]))
        spikes = {n: r * shape(n) for n, r in rates.items()}
        pool_spikes = sum(v for n, v in spikes.items() if n in cost["pool_layers"])
        print(f"spikes per step in the max-pool layers at T={a.timesteps[-1]}: {pool_spikes:.0f} of "
              f"{sum(spikes.values()):.0f} ({100 * pool_spikes / max(sum(spikes.values()), 1e-9):.0f}%)")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    if a.json:
        base.save_results(a.json, res)


if __name__ == "__main__":
    sys.exit(main())
