"""Train a LIF CNN directly on MNIST with surrogate gradients, compile it to int8, run it bit-exactly.

    .venv/bin/python examples/train_lif_mnist.py                 # minutes on 2 cores (see README.md)
    .venv/bin/python examples/train_lif_mnist.py --quick         # a smoke run on a small subset
    .venv/bin/python examples/train_lif_mnist.py --train-n 60000 --epochs 3 --test-n 10000

Steps:
1. ``models.cnn((1, 28, 28), [8, 16], 10, hidden=[64], neuron="lif", num_timesteps=T, beta=0.9,
   threshold=0.3, surrogate=fast_sigmoid(slope 5))``: conv-LIF-avgpool twice, a LIF hidden layer and a
   LIF read-out; ``net(x)`` is the output spike counts over T steps with the image as a constant
   input current (what the compiled SNN's "constant" encoding feeds). Why threshold 0.3: with
   torch's default initialisation and threshold 1 the spikes die out by the third layer (rates
   0.07, 0.004, 0, 0 at initialisation), so the read-out never fires and the loss stays at log 10;
   0.3 gives rates ~0.2-0.4 in every layer. Why slope 5: the surrogate's width should match the
   threshold's scale; slope 25 (the default, tuned for threshold 1) learned about half as fast here.
2. Training: Adam on ``nn.rate_loss(net(x), y, T)`` (cross-entropy on the rates).
3. ``snn_compiler.convert(net, calibration, bits=8)``: the same object, exported as one step, becomes
   an integer SNN (T and the count read-out come from the model).
4. Checks: the numba engine's spike counts equal the numpy engine's in every layer on a slice
   (the integer SNN is one definition, run two ways); the float SNN reproduces torch's run; the
   int8 SNN's predictions agree with the float SNN's.
5. Accuracy against T (``--eval-timesteps``) for torch, the float SNN and the int8 SNN.

Data: the MNIST IDX files in ``--data-dir`` (default ../shared/data/mnist), read by
benchmarks/mnist.py. Outputs (``--out``, default examples/out/lif_mnist): ``.pt`` the state dict
(``models.cnn`` with the arguments printed rebuilds it), ``.snnc`` the int8 SNN (``snnc simulate``
reads it).
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))
import mnist  # noqa: E402  (benchmarks/mnist.py: the IDX reader)

from snn_compiler import convert, models  # noqa: E402
from snn_compiler import nn as snn  # noqa: E402
from snn_compiler.sim.emulator import simulate  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (default ../shared/data/mnist)")
    p.add_argument("--quick", action="store_true", help="a small subset and one T: a smoke run")
    p.add_argument("--train-n", type=int, default=8000, help="training images (the first N)")
    p.add_argument("--test-n", type=int, default=2000, help="test images (the first N)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--timesteps", type=int, default=4, help="T of training (and the SNN's default)")
    p.add_argument("--eval-timesteps", default="4,8,16,32", help="comma-separated T to evaluate at")
    p.add_argument("--beta", type=float, default=0.9)
    p.add_argument("--threshold", type=float, default=0.3)
    p.add_argument("--slope", type=float, default=5.0, help="the fast-sigmoid surrogate's slope")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--exact-n", type=int, default=200, help="images of the numba == numpy check")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "out" / "lif_mnist"), help="path prefix of the .pt and .snnc files")
    a = p.parse_args(argv)
    if a.quick:
        a.train_n, a.test_n, a.epochs, a.eval_timesteps, a.exact_n = 200, 100, 1, "4", 20
    a.eval_timesteps = [int(t) for t in a.eval_timesteps.split(",")]
    for name in ("train_n", "test_n", "epochs", "timesteps", "batch_size", "exact_n", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return a


def train(net, x, y, a):
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    gen = torch.Generator().manual_seed(a.seed)
    for epoch in range(a.epochs):
        t0, total, correct = time.perf_counter(), 0.0, 0
        for idx in torch.randperm(len(x), generator=gen).split(a.batch_size):
            counts = net(x[idx])
            loss = snn.rate_loss(counts, y[idx], net.num_timesteps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((counts.argmax(1) == y[idx]).sum())
        print(f"epoch {epoch + 1}/{a.epochs}: loss {total / len(x):.4f}, train accuracy "
              f"{100 * correct / len(x):.2f}%, {time.perf_counter() - t0:.1f} s", flush=True)


def torch_counts(net, x, timesteps, batch_size=500):
    with torch.no_grad():
        return np.concatenate([snn.run(net.layers, x[i:i + batch_size], timesteps).numpy()
                               for i in range(0, len(x), batch_size)])


def main(argv=None):
    a = parse(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x_train, y_train = mnist.load_mnist("train", a.data_dir)
    x_test, y_test = mnist.load_mnist("test", a.data_dir)
    x_train, y_train = torch.from_numpy(x_train[:a.train_n]), torch.from_numpy(y_train[:a.train_n])
    x_test, y_test = x_test[:a.test_n], y_test[:a.test_n]
    spec = dict(input_shape=(1, 28, 28), channels=[8, 16], output_size=10, hidden=[64], neuron="lif",
                num_timesteps=a.timesteps, beta=a.beta, threshold=a.threshold)
    net = models.cnn(**spec, surrogate=partial(snn.fast_sigmoid, slope=a.slope))
    print(f"models.cnn({', '.join(f'{k}={v!r}' for k, v in spec.items())}, "
          f"surrogate=partial(nn.fast_sigmoid, slope={a.slope:g}))")
    print(f"training on {len(x_train)} images, {a.epochs} epoch(s), T={a.timesteps}, {a.threads} thread(s)")
    t0 = time.perf_counter()
    train(net, x_train, y_train, a)
    train_s = time.perf_counter() - t0
    print(f"training time: {train_s:.1f} s")

    calib = mnist.calibration_subset(x_train.numpy(), min(1000, len(x_train)), a.seed)
    t0 = time.perf_counter()
    q = convert(net, calib, bits=8)
    print(f"compiled to int8 in {time.perf_counter() - t0:.1f} s: T={q.timesteps}, read-out {q.readout}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out.with_suffix(".pt"))
    q.save(out.with_suffix(".snnc"))
    print(f"saved the model to {out.with_suffix('.pt')} (state dict) and {out.with_suffix('.snnc')} (int8 SNN)")

    # bit-exact: the event-driven numba engine against the step-by-step numpy engine, every layer
    xs = x_test[:a.exact_n]
    runs = [simulate(q.graph, xs, timesteps=a.timesteps, readout="count", record=True, engine=e)
            for e in ("numpy", "numba")]
    same = np.array_equal(runs[0].scores, runs[1].scores) and all(
        np.array_equal(runs[0].counts[k], runs[1].counts[k]) for k in runs[0].counts)
    print(f"bit-exact: numba engine == numpy engine on {len(xs)} images, spike counts of all "
          f"{len(runs[0].counts)} layers: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit("the integer engines disagree: this is a bug in snnc, please report it")

    print(f"\naccuracy on {len(x_test)} MNIST test images (%), int8 weights, constant input encoding")
    print(f"{'T':>4}  {'torch':>7}  {'float SNN':>9}  {'int8 SNN':>8}  {'int8 == float':>13}  "
          f"{'float == torch counts':>21}")
    for T in a.eval_timesteps:
        ref = torch_counts(net, torch.from_numpy(x_test), T)
        fl = simulate(q.graph, x_test, mode="float", timesteps=T, readout="count")
        it = simulate(q.graph, x_test, timesteps=T, readout="count")
        acc = [100 * np.mean(p == y_test) for p in (ref.argmax(1), fl.predictions, it.predictions)]
        agree = 100 * np.mean(it.predictions == fl.predictions)
        exact = 100 * np.mean(fl.scores == ref)
        print(f"{T:>4}  {acc[0]:>7.2f}  {acc[1]:>9.2f}  {acc[2]:>8.2f}  {agree:>12.2f}%  {exact:>20.2f}%", flush=True)


if __name__ == "__main__":
    main()
