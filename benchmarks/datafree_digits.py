"""Data-free compiles against the ANN on scikit-learn's digits: CNN and MLP, with and without BatchNorm.

Trains four small nets on the digits training split (seeded; a few seconds each on a CPU), then
compiles each without data twice, ``--norm bound`` (Diehl et al. 2015's weight bound, the data-free
default before) and ``--norm model`` (the distribution estimate of snn_compiler/passes/datafree.py,
the default now), plus once with 500 calibration images (``percentile:99.9``) for reference, and
reports the 8-bit integer SNN's accuracy (reference simulator, membrane read-out) on the 540 test
images at each T next to the ANN's.

    .venv/bin/python benchmarks/datafree_digits.py                 # T = 8,16,32,64, about a minute
    .venv/bin/python benchmarks/datafree_digits.py --timesteps 64 --nets cnn_bn
    .venv/bin/python benchmarks/datafree_digits.py --mnist 1000   # also the shipped MNIST CNN (weights/mnist_cnn.pt)
                                                                  # on the first 1,000 test images (../shared/data/mnist)

Results: the table on stdout and out/datafree_digits.json (out/ is git-ignored).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

NETS = ("cnn_bn", "cnn", "mlp_bn", "mlp")
NORMS = ("bound", "model", "calibrated")


def build(name):
    """The demo's digits CNN (snn_compiler/demo.py) or a 64-128-64-10 MLP; ``_bn``: a BatchNorm after
    every hidden weighted layer."""
    import torch.nn as nn
    bn = name.endswith("_bn")
    if name.startswith("cnn"):
        norm = (lambda c: [nn.BatchNorm2d(c)]) if bn else (lambda c: [])
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), *norm(16), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), *norm(32), nn.ReLU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))
    norm = (lambda c: [nn.BatchNorm1d(c)]) if bn else (lambda c: [])
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), *norm(128), nn.ReLU(),
                         nn.Linear(128, 64), *norm(64), nn.ReLU(), nn.Linear(64, 10))


def train(name, x, y, epochs=40, seed=0):
    import torch
    from mnist import train_epoch
    torch.manual_seed(seed)
    model = build(name)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = -(-len(x) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * batches)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        train_epoch(model, xt, yt, opt, sched, gen, 64)
    return model.eval()


def compile_net(model, norm, x_calib, timesteps):
    import snn_compiler
    with warnings.catch_warnings(record=True) as caught:  # the data-free warnings are the point: kept
        warnings.simplefilter("always")
        if norm == "calibrated":
            snn = snn_compiler.convert(model, x_calib, bits=8, timesteps=timesteps)
        else:
            snn = snn_compiler.convert(model, norm=norm, bits=8, input_shape=(1, 8, 8), timesteps=timesteps)
    return snn, [str(w.message) for w in caught if "is silent" in str(w.message) or "saturated" in str(w.message)]


def run_mnist(n, ts) -> dict:
    """The same comparison for benchmarks/weights/mnist_cnn.pt (Conv-BN-ReLU-AvgPool x2, Linear x2)."""
    import torch
    import mnist
    model = mnist.load_cnn()
    x, y = mnist.load_mnist("test")
    x, y = x[:n], y[:n]
    x_calib = mnist.calibration_subset(mnist.load_mnist("train")[0], 500)
    with torch.no_grad():
        ann = 100.0 * float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    row = {"ann": ann, "test_samples": n}
    print(f"{'mnist':8s} {'ANN':11s} " + " ".join(f"{ann:6.1f}" for _ in ts) + f"   (first {n} MNIST test images)")
    for norm in NORMS:
        import snn_compiler
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snn = (snn_compiler.convert(model, x_calib, bits=8, timesteps=max(ts)) if norm == "calibrated" else
                   snn_compiler.convert(model, norm=norm, bits=8, input_shape=(1, 28, 28), timesteps=max(ts)))
        accs = [100.0 * snn.accuracy(x, y, timesteps=t) for t in ts]
        row[norm] = {"int8": accs}
        print(f"{'':8s} {norm:11s} " + " ".join(f"{a:6.1f}" for a in accs))
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", default="8,16,32,64", help="comma-separated T (default 8,16,32,64)")
    p.add_argument("--nets", default=",".join(NETS), help=f"comma-separated, of {', '.join(NETS)}")
    p.add_argument("--mnist", type=int, default=0, metavar="N",
                   help="also compile the shipped MNIST CNN and test it on the first N MNIST test images")
    p.add_argument("--out", default=str(HERE.parent / "out" / "datafree_digits.json"))
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from snn_compiler.demo import digits_split
    from mnist_vs_spikingjelly import save_results

    ts = [int(t) for t in args.timesteps.split(",")]
    x_tr, x_te, y_tr, y_te = digits_split()
    results = {"timesteps": ts, "test_samples": len(x_te), "nets": {}}
    print(f"{'net':8s} {'norm':11s} " + " ".join(f"{'T=' + str(t):>6s}" for t in ts) + "   (int8 SNN accuracy %, "
          f"{len(x_te)} test digits)")
    for name in args.nets.split(","):
        if name not in NETS:
            raise SystemExit(f"--nets: unknown net {name!r} (choose from {', '.join(NETS)})")
        model = train(name, x_tr, y_tr)
        with torch.no_grad():
            ann = 100.0 * float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
        row = {"ann": ann}
        print(f"{name:8s} {'ANN':11s} " + " ".join(f"{ann:6.1f}" for _ in ts))
        for norm in NORMS:
            snn, notes = compile_net(model, norm, x_tr[:500], max(ts))
            accs = [100.0 * snn.accuracy(x_te, y_te, timesteps=t) for t in ts]
            row[norm] = {"int8": accs, "warnings": notes}
            print(f"{'':8s} {norm:11s} " + " ".join(f"{a:6.1f}" for a in accs)
                  + (f"   {len(notes)} silent/saturated warning(s)" if notes else ""))
        results["nets"][name] = row
    if args.mnist:
        results["nets"]["mnist_cnn"] = run_mnist(args.mnist, ts)
    save_results(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
