"""A small MobileNetV2 on the real MNIST: its ANN, its int8 SNN (snnc) and SpikingJelly's SNN against T.

    .venv/bin/python examples/mnist_mobilenet.py                   # the shipped weights: no training
    .venv/bin/python examples/mnist_mobilenet.py --train           # retrain both nets first (minutes)
    .venv/bin/python examples/mnist_mobilenet.py --test-n 10000 --nets relu6 --no-spikingjelly

The network (``MobileNetMNIST``, 22k parameters) is MobileNetV2 cut down to 28x28 grey digits:
a strided 3x3 stem, four inverted-residual blocks (1x1 expansion, 3x3 depthwise conv, 1x1
projection with no activation after it: the "linear bottleneck"), two of them with the residual
add, a 1x1 conv to 128 channels, global average pooling and a Linear read-out. Every activation is
ReLU6, as in MobileNetV2; BatchNorm follows every conv.

Two copies of it are trained, with the same seed and schedule:

- ``relu6``: MobileNetV2 as designed. snnc converts ReLU6 exactly: an IF neuron fires at most once
  per step, so a layer whose scale is at most 6 clips where ReLU6 does (docs/formats.md).
- ``relu``: every ReLU6 replaced by ReLU. SpikingJelly 2.0.0's ann2snn Converter replaces only
  ``nn.ReLU`` modules by IF neurons; it refuses the ReLU6 net outright ("RateCodingRecipe step-mode
  backend does not support module node 'features.0.2' of type ReLU6"), so this copy is what both
  libraries convert side by side.

Steps:
1. Train (``--train``, or when a weights file is missing): Adam with a one-cycle learning rate,
   ``--epochs`` (3) over the first ``--train-n`` (all 60,000) training images, seeded, on
   ``--threads`` threads (1: about 2 minutes a net).
   The state dicts are shipped in benchmarks/weights/ (``mnist_mobilenet_relu6.pt``,
   ``mnist_mobilenet_relu.pt``), so the default run trains nothing.
2. ANN accuracy (torch, float32) on the first ``--test-n`` test images.
3. ``snn_compiler.convert(net, calibration, bits=8)``: the int8 SNN, calibrated on ``--calib-n``
   seeded training images (99.9th percentile of the activations), then its accuracy at each T in
   ``--timesteps`` (constant input current, membrane read-out of the last Linear). Twice: one
   activation scale per layer (snnc's default) and one per channel (``channel_wise=True``). Why
   both: a depthwise conv's channels differ widely in range, so with one scale per layer most of
   them fire at a few % and need hundreds of steps; per channel, each fires at its own rate.
4. SpikingJelly (``--no-spikingjelly`` skips it): ``ann2snn.Converter`` with its
   ``RateCodingRecipe`` in mode ``"99.9%"`` on the same calibration images, likewise twice: one
   threshold per layer (its default; what benchmarks/mnist_vs_spikingjelly.py runs) and one per
   channel (``channel_wise=True``). Each runs T steps on the same test images, the last Linear's
   output summed over the steps (the membrane read-out). Both are float SNNs (float weights and
   membranes).

Data: the MNIST IDX files in ``--data-dir`` (default ../shared/data/mnist), read by
benchmarks/mnist.py. tests/test_example_zoo.py checks the shipped ReLU6 weights on 500 real test
images kept in tests/fixtures/mnist.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import mnist  # noqa: E402  (benchmarks/mnist.py: the IDX reader and the calibration subset)
import mnist_vs_spikingjelly as vs_sj  # noqa: E402  (SpikingJelly's conversion and run, as benchmarked)

from snn_compiler import convert  # noqa: E402

WEIGHTS = {act: REPO / "benchmarks" / "weights" / f"mnist_mobilenet_{act}.pt" for act in ("relu6", "relu")}
ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU}
NORMS = ("layer", "channel")  # one activation scale (threshold) per layer (both defaults), or per channel


# ---- the network --------------------------------------------------------------------------------

def conv_bn_act(cin, cout, kernel, stride=1, groups=1, act=nn.ReLU6):
    """Conv (no bias: BatchNorm's shift is the bias) -> BatchNorm -> activation, MobileNetV2's unit."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), act())


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand (1x1, ``expand`` x channels), filter (3x3 depthwise), project (1x1,
    no activation: the linear bottleneck); the input is added back when the shape allows it."""

    def __init__(self, cin, cout, stride, expand, act=nn.ReLU6):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        layers = [conv_bn_act(cin, hidden, 1, act=act)] if expand != 1 else []
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=act),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetMNIST(nn.Module):
    """28x28 -> 14x14 (stem) -> 7x7 -> 4x4, 22k parameters. ``act``: "relu6" or "relu"."""

    # (expansion, output channels, stride) per block, as MobileNetV2's table but four blocks
    BLOCKS = [(1, 16, 1), (4, 24, 2), (4, 24, 1), (4, 32, 2)]

    def __init__(self, act="relu6"):
        super().__init__()
        act = ACTIVATIONS[act]
        layers, c = [conv_bn_act(1, 16, 3, 2, act=act)], 16
        for expand, cout, stride in self.BLOCKS:
            layers.append(InvertedResidual(c, cout, stride, expand, act))
            c = cout
        layers.append(conv_bn_act(c, 128, 1, act=act))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(128, 10)

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.features(x))))


def load(act, path=None):
    net = MobileNetMNIST(act)
    net.load_state_dict(torch.load(path or WEIGHTS[act], map_location="cpu", weights_only=True))
    return net.eval()


# ---- training -----------------------------------------------------------------------------------

def train(net, x, y, a):
    """Adam, one-cycle learning rate (a short run gets most of its accuracy from the high-rate middle
    and settles at the low-rate end), cross-entropy; the batch order is drawn from ``a.seed``."""
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    steps = a.epochs * ((len(x) + a.batch_size - 1) // a.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(a.seed)
    net.train()
    for epoch in range(a.epochs):
        t0, total, correct = time.perf_counter(), 0.0, 0
        for idx in torch.randperm(len(x), generator=gen).split(a.batch_size):
            out = net(x[idx])
            loss = nn.functional.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == y[idx]).sum())
        print(f"  epoch {epoch + 1}/{a.epochs}: loss {total / len(x):.4f}, train accuracy "
              f"{100 * correct / len(x):.2f}%, {time.perf_counter() - t0:.1f} s", flush=True)
    return net.eval()


# ---- evaluation ---------------------------------------------------------------------------------

def snnc_accuracies(net, calib, x, y, timesteps, batch_size, channel_wise, v_init=None):
    """The int8 SNN's accuracy (%) and seconds of simulation at each T (one run per T)."""
    t0 = time.perf_counter()
    options = {"v_init": v_init} if v_init else {}  # None: snnc's default (half a threshold)
    snn = convert(net, calib, bits=8, channel_wise=channel_wise, progress=False, **options)
    compile_s = time.perf_counter() - t0
    acc, seconds = {}, {}
    for t in timesteps:
        t0 = time.perf_counter()
        acc[t] = 100.0 * snn.accuracy(x, y, timesteps=t, batch_size=batch_size)
        seconds[t] = time.perf_counter() - t0
    return snn, compile_s, acc, seconds


def spikingjelly_convert(net, calib, channel_wise, batch=500):
    """SpikingJelly's ann2snn Converter, RateCodingRecipe at the 99.9th percentile (as snnc), on the same
    calibration images in batches of ``batch`` (its percentile is per batch, momentum-averaged).
    ``channel_wise``: one threshold per channel instead of one per layer (the recipe's option; not what
    benchmarks/mnist_vs_spikingjelly.py runs, but it is what makes this net convert at small T)."""
    import copy

    from loguru import logger
    from spikingjelly.activation_based import ann2snn

    logger.remove()  # SpikingJelly logs every conversion at INFO level
    loader = [torch.from_numpy(calib[i:i + batch]) for i in range(0, len(calib), batch)]
    recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode="99.9%", channel_wise=channel_wise)
    return ann2snn.Converter(recipe=recipe).convert(copy.deepcopy(net).eval())


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (default ../shared/data/mnist)")
    p.add_argument("--train", action="store_true", help="retrain both nets and overwrite --weights-dir's files")
    p.add_argument("--weights-dir", default=str(WEIGHTS["relu6"].parent),
                   help="where the state dicts are read (and written by --train)")
    p.add_argument("--nets", default="relu6,relu", help="which copies to run: relu6, relu or both (default)")
    p.add_argument("--train-n", type=int, default=60000, help="training images (the first N)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--batch-size", type=int, default=64, help="training batch")
    p.add_argument("--test-n", type=int, default=2000, help="test images (the first N; default 2000)")
    p.add_argument("--calib-n", type=int, default=2000, help="seeded calibration images from the training set")
    p.add_argument("--timesteps", default="16,32,64", help="comma-separated T (default 16,32,64)")
    p.add_argument("--v-init", default=None, choices=("half", "zero"),
                   help="snnc's initial membrane, in thresholds (default snnc's: half)")
    p.add_argument("--sim-batch", type=int, default=500, help="simulation batch, both libraries")
    p.add_argument("--no-spikingjelly", action="store_true", help="skip SpikingJelly")
    p.add_argument("--threads", type=int, default=1, help="torch, BLAS and numba threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    a.timesteps = sorted({int(t) for t in a.timesteps.split(",")})
    a.nets = [n for n in a.nets.split(",") if n]
    if any(n not in ACTIVATIONS for n in a.nets):
        p.error(f"--nets takes {', '.join(ACTIVATIONS)}, not {a.nets}")
    return a


def main(argv=None):
    a = parse(argv)
    vs_sj.set_threads(a.threads)
    if not a.no_spikingjelly:
        try:
            import spikingjelly  # noqa: F401
        except ImportError:
            print("SpikingJelly is not installed (`bash benchmarks/setup_peers.sh` installs it): skipped")
            a.no_spikingjelly = True
    x_train, y_train = mnist.load_mnist("train", a.data_dir)
    x_test, y_test = mnist.load_mnist("test", a.data_dir)
    x_test, y_test = x_test[:a.test_n], y_test[:a.test_n]
    calib = mnist.calibration_subset(x_train, a.calib_n, a.seed)
    print(f"MNIST: {len(x_test)} test images, calibration {len(calib)} training images (seed {a.seed}), "
          f"{a.threads} thread(s)")

    results = {}
    for act in a.nets:
        path = Path(a.weights_dir) / WEIGHTS[act].name
        if a.train or not path.exists():
            torch.manual_seed(a.seed)  # the same initial weights for both copies
            net = MobileNetMNIST(act)
            n = min(a.train_n, len(x_train))
            print(f"training the {act} net ({sum(p.numel() for p in net.parameters())} parameters) on {n} "
                  f"images, {a.epochs} epoch(s)", flush=True)
            t0 = time.perf_counter()
            train(net, torch.from_numpy(x_train[:n]), torch.from_numpy(y_train[:n]), a)
            print(f"  training time: {time.perf_counter() - t0:.1f} s")
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), path)
            print(f"  saved {path}")
        net = load(act, path)
        r = results[act] = {"ann": mnist.ann_accuracy(net, x_test, y_test)}
        print(f"{act} net: ANN {r['ann']:.2f}%", flush=True)

        for norm in NORMS:
            _, compile_s, r[f"snnc {norm}"], seconds = snnc_accuracies(
                net, calib, x_test, y_test, a.timesteps, a.sim_batch, channel_wise=norm == "channel", v_init=a.v_init)
            print(f"  snnc {norm}-wise: compiled to int8 in {compile_s:.1f} s; " + ", ".join(
                f"T={t} {r[f'snnc {norm}'][t]:.2f}% ({seconds[t]:.1f} s)" for t in a.timesteps), flush=True)

        if not a.no_spikingjelly:
            for norm in NORMS:
                try:
                    t0 = time.perf_counter()
                    sj = spikingjelly_convert(net, calib, channel_wise=norm == "channel")
                    convert_s = time.perf_counter() - t0
                except ValueError as e:  # what SpikingJelly refuses, said as it says it
                    r["sj_refused"] = str(e).splitlines()[0]
                    print(f"  SpikingJelly refuses the {act} net: {r['sj_refused']}")
                    break
                r[f"sj {norm}"], seconds = vs_sj.spikingjelly_run(sj, x_test, y_test, a.timesteps, a.sim_batch)
                print(f"  SpikingJelly {norm}-wise: converted in {convert_s:.1f} s; " + ", ".join(
                    f"T={t} {r[f'sj {norm}'][t]:.2f}% ({seconds[t]:.1f} s)" for t in a.timesteps), flush=True)

    print_table(results, a.timesteps, len(x_test))
    return results


def print_table(results, timesteps, n):
    """Accuracy (%) against T, one row per net and converter; a converter that refused the net says why."""
    names = {"snnc layer": "snnc int8 layer-wise", "snnc channel": "snnc int8 channel-wise",
             "sj layer": "SpikingJelly layer-wise", "sj channel": "SpikingJelly channel-wise"}
    print(f"\naccuracy on the first {n} MNIST test images (%)")
    print(f"{'net':<6} {'converter':<26} {'ANN':>6} " + " ".join(f"{f'T={t}':>6}" for t in timesteps))
    for act, r in results.items():
        for key, name in names.items():
            if key in r:
                print(f"{act:<6} {name:<26} {r['ann']:>6.2f} " + " ".join(f"{r[key][t]:>6.2f}" for t in timesteps))
            elif key == "sj layer" and "sj_refused" in r:  # one refusal, before either mode ran
                print(f"{act:<6} {'SpikingJelly':<26} {r['ann']:>6.2f} refused: {r['sj_refused']}")


if __name__ == "__main__":
    main()
