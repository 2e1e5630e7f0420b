"""Artifact size against the float model (issue 12): a CIFAR ResNet-18 and a VGG-11-style CIFAR net.

    .venv/bin/python benchmarks/artifact_size.py [--bits 8,4] [--before REV] [--keep DIR] [--json out.json]

Builds each network with random weights (the ResNet-18 of ``resnet18.py``; VGG-11: eight 3x3
Conv-BN-ReLU layers 64-128-256-256-512-512-512-512 with 2x2 max pools, then Linear(512, 10)),
saves it as TorchScript, compiles it once per bit width in this process with ``--target
reference`` semantics (calibration on 64 random images, no mapping) and writes the compiled graph
twice: with the artifact writer of ``--before`` (a git revision; default 1967e4b, the last
version-2 writer) and with this checkout's. Prints, per network and bit width: the float32
parameter bytes, the TorchScript file, each artifact and its ratio to the TorchScript file, and
the time to write and to load each artifact (best of ``--repeat``); then how far the float
weights of the new artifact are from the compiled ones (in integer steps) and what that does to
the ANN reading on 16 images.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "benchmarks"))

BEFORE = "1967e4b"   # the commit before artifact version 3 (int32 weights, float64 copies, all deflated)


def writer_at(rev):
    """The artifact module of git revision ``rev``, run against this checkout's package."""
    src = subprocess.run(["git", "-C", str(HERE), "show", f"{rev}:snn_compiler/artifact.py"], capture_output=True,
                         text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("snn_compiler._artifact_before", loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "snn_compiler"
    exec(compile(src, f"{rev}:snn_compiler/artifact.py", "exec"), mod.__dict__)
    return mod


def best_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(name, model, bits_list, writers, d, repeat):
    import numpy as np
    import torch
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from snn_compiler.frontend import load_file

    ts = d / f"{name}.pt"
    torch.jit.save(torch.jit.trace(model, torch.rand(1, 3, 32, 32)), str(ts))
    params = sum(p.numel() for p in model.parameters())
    calib = np.random.default_rng(0).random((64, 3, 32, 32)).astype(np.float32)
    graph = load_file(str(ts), input_shape=(3, 32, 32))
    rows = []
    for bits in bits_list:
        t = time.perf_counter()
        q = compile_model(graph, CompileConfig(bits=bits, calibration=calib, target="reference"))
        compiled_s = time.perf_counter() - t
        row = {"net": name, "bits": bits, "params": params, "float32_bytes": 4 * params,
               "torchscript_bytes": ts.stat().st_size, "compile_s": round(compiled_s, 2)}
        for label, mod in writers.items():
            path = d / f"{name}-{bits}bit-{label}.snnc"
            row[f"{label}_write_s"] = round(best_time(lambda: mod.save(q, path), repeat), 3)
            row[f"{label}_bytes"] = path.stat().st_size
            row[f"{label}_load_s"] = round(best_time(lambda: mod.load(path), repeat), 3)
        row.update(float_copy(q, writers["after"].load(d / f"{name}-{bits}bit-after.snnc"), calib[:16]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def float_copy(q, r, x):
    """How far the loaded float weights and the ANN reading are from the compiled graph's."""
    import numpy as np
    from snn_compiler.ir import ops as O
    from snn_compiler.sim.emulator import run_ann
    worst = 0.0
    for n in q.nodes:
        a, b = q.nodes[n]["op"], r.nodes[n]["op"]
        if isinstance(a, O.WEIGHTED) and np.abs(a.weight_int).max() > 0:
            step = np.abs(a.weight).max() / np.abs(a.weight_int).max()
            worst = max(worst, float(np.abs(a.weight - b.weight).max() / step))
    before, after = run_ann(q, x), run_ann(r, x)
    return {"weight_error_steps": worst,
            "ann_score_error": float(np.abs(before - after).max() / np.abs(before).max()),
            "ann_same_predictions": bool(np.array_equal(before.argmax(1), after.argmax(1)))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", default="8,4", help="weight bit widths (default 8,4)")
    ap.add_argument("--before", default=BEFORE, help=f"git revision of the 'before' writer (default {BEFORE})")
    ap.add_argument("--repeat", type=int, default=3, help="best of N writes and loads (default 3)")
    ap.add_argument("--keep", help="folder for the models and artifacts (default: a temporary one)")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    from functools import partial
    from resnet18 import resnet18, vgg11
    vgg11 = partial(vgg11, pool="max")  # the README's figures were measured with VGG's max pools
    from snn_compiler import artifact
    writers = {"before": writer_at(a.before), "after": artifact}
    bits = [int(b) for b in a.bits.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(a.keep or tmp)
        d.mkdir(parents=True, exist_ok=True)
        for name, build in (("resnet18", resnet18), ("vgg11", vgg11)):
            rows += measure(name, build(), bits, writers, d, a.repeat)
    mb = 1e6
    print()
    print(f"{'net':<9} {'bits':>4} {'float32':>8} {'TorchScript':>11} {'before':>8} {'after':>8} {'after/TS':>8}"
          f" {'write before/after':>19} {'load before/after':>18}")
    for r in rows:
        print(f"{r['net']:<9} {r['bits']:>4} {r['float32_bytes'] / mb:>6.1f}MB {r['torchscript_bytes'] / mb:>9.1f}MB"
              f" {r['before_bytes'] / mb:>6.1f}MB {r['after_bytes'] / mb:>6.1f}MB"
              f" {r['after_bytes'] / r['torchscript_bytes']:>8.2f}"
              f" {r['before_write_s']:>8.2f}s/{r['after_write_s']:.2f}s {r['before_load_s']:>8.2f}s/{r['after_load_s']:.2f}s")
    print()
    print("float weights as stored (after): worst error in integer steps, ANN reading on 16 images (max score "
          "difference / max score, same predictions)")
    for r in rows:
        print(f"{r['net']:<9} {r['bits']:>4}  {r['weight_error_steps']:.2e} steps  {r['ann_score_error']:.1e}  "
              f"{r['ann_same_predictions']}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
