"""The main job on the shipped default: a small CNN on scikit-learn's digits, end to end.

Trains the CNN (seeded, a few seconds on a CPU; or reuses the trained file in --out), saves it
as TorchScript, then drives the real CLI: ``snnc compile`` at 8 bits and ``snnc simulate`` at
T = 8, 16, 32, 64 with the integer reference simulator, next to the ANN and the float SNN.
Writes accuracy-vs-T and firing-rate plots and the conversion report (``snnc report``). Needs torch and scikit-learn.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

TIMESTEPS = (8, 16, 32, 64)


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    return train_test_split(x, d.target.astype(np.int64), test_size=0.3, random_state=1, stratify=d.target)


def digits_cnn():
    import torch.nn as nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))


def train(x, y, epochs=60, seed=0):
    import torch
    torch.manual_seed(seed)
    model = digits_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=g).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        sched.step()
    return model.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out", help="folder for the model, data, artifact and plots (default out/)")
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--retrain", action="store_true", help="train again even if out/digits_cnn.pt exists")
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from . import artifact
    from .targets import get_backend
    from .cli import main as snnc
    from .plots import plot_accuracy, plot_rates

    os.makedirs(args.out, exist_ok=True)
    path = lambda name: os.path.join(args.out, name)
    x_tr, x_te, y_tr, y_te = digits_split()
    np.savez(path("calibration.npz"), x=x_tr[:500])
    np.savez(path("test.npz"), x=x_te, y=y_te)
    if args.retrain or not os.path.exists(path("digits_cnn.pt")):
        t0 = time.perf_counter()
        model = train(x_tr, y_tr)
        torch.jit.save(torch.jit.script(model), path("digits_cnn.pt"))
        print(f"trained the digits CNN in {time.perf_counter() - t0:.1f} s -> {path('digits_cnn.pt')}")
    model = torch.jit.load(path("digits_cnn.pt"))
    with torch.no_grad():
        ann_acc = 100 * float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())

    rc = snnc(["compile", path("digits_cnn.pt"), "--input-shape", "1,8,8", "--calibration", path("calibration.npz"),
               "--bits", str(args.bits), "-o", path("digits_cnn.snnc")])
    if rc:
        return rc
    snnc(["inspect", path("digits_cnn.snnc")])
    q = artifact.load(path("digits_cnn.snnc"))
    curves = {f"int{args.bits} SNN (reference)": [], "float SNN": []}
    rates = {}
    get_backend("reference")(q, x_te[:2], timesteps=2)  # compiles the numba kernels, so timings below are runs only
    print(f"\n{'T':>4}  {'ANN':>7}  {'int' + str(args.bits) + ' SNN':>9}  {'float SNN':>9}  sample*timesteps/s (int)")
    for T in TIMESTEPS:
        t0 = time.perf_counter()
        r = get_backend("reference")(q, x_te, timesteps=T)
        dt = time.perf_counter() - t0
        f = get_backend("float")(q, x_te, timesteps=T)
        curves[f"int{args.bits} SNN (reference)"].append(100 * float((r.predictions == y_te).mean()))
        curves["float SNN"].append(100 * float((f.predictions == y_te).mean()))
        rates = r.rates
        print(f"{T:>4}  {ann_acc:>6.2f}%  {curves[f'int{args.bits} SNN (reference)'][-1]:>8.2f}%  "
              f"{curves['float SNN'][-1]:>8.2f}%  {len(x_te) * T / dt:,.0f}")
    plot_accuracy(path("accuracy_vs_timesteps.png"), list(TIMESTEPS), curves, ann=ann_acc,
                  title=f"snnc on scikit-learn digits ({len(x_te)} test images)")
    plot_rates(path("firing_rates.png"), rates, title=f"Mean firing rate per layer (T={TIMESTEPS[-1]})")
    print(f"\nwrote {path('accuracy_vs_timesteps.png')} and {path('firing_rates.png')}")
    print("\nwhere the accuracy and energy go (snnc report):")
    return snnc(["report", path("digits_cnn.snnc"), "--data", path("test.npz"), "-o", path("report.html")])


if __name__ == "__main__":
    raise SystemExit(main())
