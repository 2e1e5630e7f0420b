"""MNIST for the benchmarks: IDX reader, the peers' CNN, and its training.

The CNN is the one of ../shared/notes/peers.md (the network the peer figures were measured on):
Conv(1->16, 3x3, pad 1)-BN-ReLU-AvgPool(2), Conv(16->32, 3x3, pad 1)-BN-ReLU-AvgPool(2),
Flatten, Linear(32*7*7 -> 128)-ReLU-Linear(128 -> 10). Inputs are x/255 in [0, 1] (no mean/std
normalisation), shape (N, 1, 28, 28) float32.

    python benchmarks/mnist.py train [--data-dir DIR] [--epochs 3] [--out benchmarks/weights/mnist_cnn.pt]
    python benchmarks/mnist.py eval  [--data-dir DIR] [--weights benchmarks/weights/mnist_cnn.pt]

The shipped state dict (benchmarks/weights/mnist_cnn.pt) was made by the ``train`` command above
with its defaults (seed 0); loading it needs no pickle (``torch.load(..., weights_only=True)``).
"""
from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data" / "mnist"
DEFAULT_WEIGHTS = HERE / "weights" / "mnist_cnn.pt"
FILES = {
    "train": ("train-images.idx3-ubyte", "train-labels.idx1-ubyte"),
    "test": ("t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte"),
}
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataMissing(SystemExit):
    pass


def read_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x0000TTDD big-endian (TT = type, DD = number of
    dims), then DD big-endian int32 sizes, then the data, row-major."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4].hex()})")
    dtype, ndim = raw[2], raw[3]
    if dtype not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{dtype:02x}")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, IDX_DTYPES[dtype], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} values for dims {dims}")
    return data.reshape(dims)


def _find(data_dir: Path, name: str) -> Path:
    for candidate in (data_dir / (name + ".gz"), data_dir / name):
        if candidate.exists():
            return candidate
    raise DataMissing(
        f"MNIST file {name}(.gz) not found in {data_dir}.\n"
        f"Point --data-dir at a folder holding the four MNIST IDX files "
        f"({', '.join(f + '.gz' for pair in FILES.values() for f in pair)}), gzipped or not; "
        f"the default is ../shared/data/mnist next to the repository.")


def load_mnist(split: str, data_dir=None):
    """(x float32 (N, 1, 28, 28) in [0, 1], y int64 (N,)) of split 'train' or 'test'."""
    data_dir = Path(data_dir) if data_dir else DEFAULT_DATA_DIR
    images, labels = (read_idx(_find(data_dir, name)) for name in FILES[split])
    if images.shape[1:] != (28, 28) or images.shape[0] != labels.shape[0]:
        raise ValueError(f"unexpected MNIST shapes {images.shape}, {labels.shape} in {data_dir}")
    x = (images.astype(np.float32) / 255.0)[:, None]
    return x, labels.astype(np.int64)


def calibration_subset(x_train: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """The n training images both snnc and the peers calibrate on (fixed, seeded choice)."""
    idx = np.random.default_rng(seed).permutation(len(x_train))[:n]
    return x_train[np.sort(idx)]


def make_cnn():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def load_cnn(weights=DEFAULT_WEIGHTS):
    import torch

    weights = Path(weights)
    if not weights.exists():
        raise SystemExit(f"no trained weights at {weights}: run `python benchmarks/mnist.py train` first")
    model = make_cnn()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def ann_accuracy(model, x, y, batch_size=1000):
    import torch

    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = model(torch.from_numpy(x[i:i + batch_size]))
            correct += int((out.argmax(1).numpy() == y[i:i + batch_size]).sum())
    return 100.0 * correct / len(x)


def train_epoch(model, xt, yt, opt, sched, gen, batch_size, before_batch=None):
    """One epoch of cross-entropy training in a random order drawn from ``gen``; ``before_batch()``
    runs before each batch (e.g. to draw a QCFS level). Returns (mean loss, seconds); the model is
    left in eval mode."""
    import torch
    import torch.nn.functional as F

    model.train()
    t0, total = time.perf_counter(), 0.0
    perm = torch.randperm(len(xt), generator=gen)
    for i in range(0, len(xt), batch_size):
        idx = perm[i:i + batch_size]
        if before_batch is not None:
            before_batch()
        loss = F.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(idx)
    model.eval()
    return total / len(xt), time.perf_counter() - t0


def train(data_dir=None, epochs=3, batch_size=128, lr=2e-3, seed=0, threads=2, out=DEFAULT_WEIGHTS):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    x_train, y_train = load_mnist("train", data_dir)
    x_test, y_test = load_mnist("test", data_dir)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    model = make_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(xt) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        loss, sec = train_epoch(model, xt, yt, opt, sched, gen, batch_size)
        acc = ann_accuracy(model, x_test, y_test)
        print(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f}, test {acc:.2f}%, {sec:.0f} s", flush=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, out)
    print(f"wrote {out} (ANN test accuracy {acc:.2f}%)")
    return model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the CNN and write its state dict")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    e = sub.add_parser("eval", help="ANN test accuracy of a state dict")
    e.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    for s in (t, e):
        s.add_argument("--data-dir", default=None, help=f"folder of the MNIST IDX files (default {DEFAULT_DATA_DIR})")
        s.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    a = p.parse_args(argv)
    if a.cmd == "train":
        train(a.data_dir, a.epochs, a.batch_size, a.lr, a.seed, a.threads, a.out)
    else:
        import torch

        torch.set_num_threads(a.threads)
        x, y = load_mnist("test", a.data_dir)
        print(f"ANN test accuracy: {ann_accuracy(load_cnn(a.weights), x, y):.2f}%")


if __name__ == "__main__":
    sys.exit(main())
