"""An snnTorch-trained LIF MLP, exported to NIR by snnTorch and imported into snnc.

Trains a small snnTorch network (Linear-Leaky-Linear-Leaky, reset to zero, per-neuron beta and
threshold tensors: scalar ones make nir 1.0.8's infer_types fail) on scikit-learn's digits
(inputs /16, a constant current every step, T steps, rate-coded cross-entropy loss), measures
snnTorch's own test accuracy (output spike counts; ties broken by the final membrane after reset,
then the higher index, as snnc's ``count`` read-out does), exports it with
``snntorch.export_nir.export_to_nir`` and ``nir.write``, loads the file with
``snn_compiler.frontend.nir.load_nir(path, dt=1e-4)`` (snnTorch's hard-coded dt), compiles it to an
8-bit integer SNN and simulates it with snnc (float and int), on the same test images and the same
T. Prints a small table. Training stops after --epochs or --max-train-s, whichever comes first, so
on a busy machine the default run trains fewer epochs.

    bash benchmarks/setup_peers.sh --all          # snnTorch 1.0.0, nir 1.0.8 (torch stays CPU)
    .venv/bin/python benchmarks/nir_snntorch.py   # about 1-1.5 minutes (60 s of it training)
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timesteps", type=int, default=16, help="T, for training and all simulations (16)")
    p.add_argument("--hidden", type=int, default=64, help="hidden LIF neurons (64)")
    p.add_argument("--beta", type=float, default=0.9, help="membrane decay of both LIF layers (0.9)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (20; training also stops at --max-train-s)")
    p.add_argument("--max-train-s", type=float, default=60.0, help="stop training after this many seconds (60)")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (5e-3)")
    p.add_argument("--batch", type=int, default=64, help="training batch (64)")
    p.add_argument("--bits", type=int, default=8, help="snnc weight bits (8)")
    p.add_argument("--dt", type=float, default=1e-4, help="dt given to load_nir (snnTorch's: 1e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument("--keep", metavar="PATH", help="also keep the exported NIR file at PATH")
    return p.parse_args(argv)


def data(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    return train_test_split(x, d.target.astype(np.int64), test_size=0.2, random_state=seed, stratify=d.target)


def build(torch, snn, hidden, beta):
    def lif(n, output=False):
        return snn.Leaky(beta=torch.full((n,), beta), threshold=torch.ones(n), reset_mechanism="zero",
                         init_hidden=True, output=output)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), lif(hidden), torch.nn.Linear(hidden, 10), lif(10, True))


def run_snntorch(torch, net, x, T):
    """Output spike counts and final membranes after reset, (N, 10) each: constant current x every
    step. (snnTorch's ``mem`` of a neuron that spiked on the last step is its value before the
    reset, which snnTorch applies at the start of the next step.)"""
    from snntorch import utils
    utils.reset(net)
    counts = 0
    for _ in range(T):
        spk, mem = net(x)
        counts = counts + spk
    return counts, mem * (1 - spk)


def predict(counts, mem):
    """Most spikes; ties by the higher final membrane, then the higher index (snnc's ``count``
    read-out: ``np.lexsort((v, counts))[:, -1]``)."""
    return np.lexsort((np.asarray(mem, np.float64), np.asarray(counts, np.float64)))[:, -1]


def main(argv=None):
    a = parse_args(argv)
    import torch
    import snntorch as snn
    import snntorch.functional as SF
    from snntorch import utils as sutils
    import nir
    from snntorch.export_nir import export_to_nir
    from snn_compiler.frontend.nir import load_nir
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from snn_compiler.sim.emulator import simulate

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, xte, ytr, yte = data(a.seed)
    T = a.timesteps

    net = build(torch, snn, a.hidden, a.beta)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    loss_fn = SF.ce_rate_loss()
    Xtr, Ytr = torch.from_numpy(xtr), torch.from_numpy(ytr)
    t0, epochs = time.time(), 0
    for ep in range(a.epochs):
        perm = torch.randperm(len(Xtr))
        for i in range(0, len(Xtr), a.batch):
            idx = perm[i:i + a.batch]
            sutils.reset(net)
            spk_rec = torch.stack([net(Xtr[idx])[0] for _ in range(T)])  # (T, B, 10)
            loss = loss_fn(spk_rec, Ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs = ep + 1
        if time.time() - t0 > a.max_train_s:
            break
    train_s = time.time() - t0

    with torch.no_grad():
        counts, mem = run_snntorch(torch, net, torch.from_numpy(xte), T)
    p_torch = predict(counts.numpy(), mem.numpy())
    acc_torch = 100.0 * np.mean(p_torch == yte)

    fd, path = tempfile.mkstemp(suffix=".nir")
    os.close(fd)
    try:
        with torch.no_grad():
            ng = export_to_nir(net, torch.from_numpy(xte[0]))  # unbatched: nir types the Input as (64,)
        nir.write(path, ng)
        if a.keep:
            nir.write(a.keep, ng)
        g = load_nir(path, dt=a.dt)
    finally:
        os.unlink(path)
    q = compile_model(g, CompileConfig(bits=a.bits, calibration=xtr, timesteps=T))
    res = {m: simulate(q, xte, timesteps=T, readout="count", mode=m) for m in ("float", "int")}
    acc = {m: 100.0 * np.mean(r.predictions == yte) for m, r in res.items()}
    agree = {m: 100.0 * np.mean(r.predictions == p_torch) for m, r in res.items()}
    same_counts = 100.0 * np.mean(np.all(res["float"].scores == counts.numpy(), axis=1))

    print(f"digits: {len(xtr)} train / {len(xte)} test, T={T}, {a.hidden} hidden LIF (beta {a.beta}, reset zero), "
          f"{epochs} epochs in {train_s:.0f} s; NIR via snntorch.export_nir, load_nir(dt={a.dt:g}), {a.bits}-bit")
    rows = [("snnTorch (own simulation)", acc_torch, None),
            ("snnc float SNN (from NIR)", acc["float"], agree["float"]),
            (f"snnc int{a.bits} SNN (from NIR)", acc["int"], agree["int"])]
    print("| model | test acc % | same prediction as snnTorch % |")
    print("|---|---:|---:|")
    for name, ac, ag in rows:
        print(f"| {name} | {ac:.2f} | {'-' if ag is None else f'{ag:.2f}'} |")
    print(f"snnc float output spike counts identical to snnTorch's on {same_counts:.2f}% of test images")
    d = acc["int"] - acc_torch
    print(f"int{a.bits} - snnTorch: {d:+.2f} pt ({'within' if abs(d) <= 2 else 'NOT within'} 2 pt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
