"""Issue 19's model zoo: compile time, int8 agreement and Loihi 2 mapping for each of its 14 nets.

    .venv/bin/python benchmarks/zoo.py [--nets alexnet,resnet18,...] [--n-sim 16] [--timesteps 64]
        [--skip-sim] [--skip-map] [--json out.json]

The nets are the tests' torchvision-faithful definitions (tests/test_zoo_models*.py: random weights,
randomised BatchNorm statistics), at 64 px (Inception-v3 at 96 px). For each net, in one process:

- torch: one forward pass over the 32 calibration images (after a 2-image warm-up),
- compile: snnc's compile from torch.export (``from_module`` + ``compile_model``, 8 bits, calibrated on
  those 32 images, no mapping), timed right after torch's forward so both see the same machine load;
  ``ratio`` = compile / (2 x torch + 5 s), the issue's bound (<= 1 meets it),
- agreement: the int8 SNN's class vs the compiled ANN's class at T = 64 on the first ``--n-sim`` calibration
  images (as the tests; at most 32), or with ``--held-out`` on ``--n-sim`` fresh random images,
  and the simulation's speed against T dense forward passes of the torch net over the same images (each
  after a warm-up call)
  (``speed_vs_dense``, issue 23's bar; ``methods``: how many weighted ops ran each exact method),
- mapping: ``partition_graph`` onto Loihi 2 (the profile's cores per chip, as many chips as the lower
  bound needs, with slack), timed; ``cores / lower bound`` is the issue's mapping ratio (<= 1.1 meets it).
  Every map is recounted by the independent checker (``check_core_map``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))   # the nets' definitions live with the tests that check them

import torch  # noqa: E402

from snn_compiler.mapping import check_core_map, load_profile_dict, lower_bound, partition_graph  # noqa: E402
from snn_compiler.passes.compose_pools import without_pools  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402

from test_zoo_models import MobileNetV2, _randomised  # noqa: E402
from test_zoo_models_concat import NETS as CONCAT_NETS, SIZE  # noqa: E402
from test_zoo_models_resnets import CHANNEL_WISE, NETS as RESNET_NETS, compile_and_time  # noqa: E402

# the order
ORDER = ["alexnet", "vgg11_bn", "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2",
         "densenet121", "googlenet", "inception_v3", "squeezenet1_1", "shufflenet_v2_x0_5", "mnasnet0_5",
         "regnet_x_400mf"]
NETS = {"mobilenet_v2": MobileNetV2, **CONCAT_NETS, **RESNET_NETS}
assert sorted(NETS) == sorted(ORDER)


def _map(q, bits, profile="loihi2"):
    """Partition the compiled graph onto Loihi 2 chips; the chips are sized from the lower bound with 50%
    slack (the partitioner refuses a map that does not fit: then a second try with four times as many)."""
    spec = load_profile_dict(profile)
    g = without_pools(q)  # as the partition pass does: no pooling synapse in hardware
    bound = lower_bound(g, spec, bits)
    chips = math.ceil(1.5 * bound / spec["cores_per_chip"]) + 1
    t0 = time.perf_counter()
    try:
        cm = partition_graph(g, dict(spec, chips=chips), bits)
    except ValueError:
        chips *= 4
        cm = partition_graph(g, dict(spec, chips=chips), bits)
    seconds = time.perf_counter() - t0
    checked = check_core_map(g, cm, dict(spec, chips=chips))
    # where the map exceeds the bound: the layers with the most cores over their own bound
    excess = sorted(((len(cm["layers"][n]) - b["cores"], n, len(cm["layers"][n]), b["cores"], b["binding"])
                     for n, b in cm["layer_bounds"].items()), reverse=True)[:3]
    return {"over_bound": [f"{n}: {used} cores / bound {lb} ({binding})" for extra, n, used, lb, binding in excess
                           if extra > 0],
            "cores": len(cm["cores"]), "lower_bound": cm["lower_bound"], "independent_bound": bound,
            "map_ratio": round(len(cm["cores"]) / cm["lower_bound"], 3), "map_s": round(seconds, 2),
            "chips_used": cm["traffic"].get("chips_used"), "checker_ok": bool(checked["ok"])}


def measure(name, n_sim, timesteps, skip_sim=False, skip_map=False, n_calibration=32, bits=8, held_out=False):
    px = SIZE.get(name, 64)
    net = _randomised(NETS[name], 0)
    torch.manual_seed(1)
    x = torch.rand(n_calibration, 3, px, px) * 2 - 1
    q, want, torch_s, compile_s = compile_and_time(net, x, px, channel_wise=name in CHANNEL_WISE)  # as the test
    bound_s = 2 * torch_s + 5
    row = {"net": name, "px": px, "torch_s": round(torch_s, 3), "compile_s": round(compile_s, 2),
           "bound_s": round(bound_s, 2), "time_ratio": round(compile_s / bound_s, 2), "nodes": len(q)}
    ann = run_ann(q, x.numpy())
    row["ann_err"] = float(np.abs(ann - want).max() / np.abs(want).max())   # the tests allow 0.01
    if held_out:  # images the calibration never saw, as many as asked (the first n_sim calibration images else)
        torch.manual_seed(2)
        x = torch.rand(n_sim, 3, px, px) * 2 - 1
        ann = run_ann(q, x.numpy())
    n_sim = min(n_sim, len(x))
    if not skip_sim:
        info = {}
        # a warm-up call first, as torch's forward gets one below: the timed call then excludes numba's
        # first dispatch of each kernel signature (compiling one on a new install: seconds)
        simulate(q, x[:2].numpy(), timesteps=2)
        t0 = time.perf_counter()
        snn = simulate(q, x[:n_sim].numpy(), timesteps=timesteps, info=info)
        row["sim_s"] = round(time.perf_counter() - t0, 2)
        with torch.inference_mode():  # issue 23's bar: T dense forward passes of the same images
            net(x[:n_sim])
            t0 = time.perf_counter()
            for _ in range(timesteps):
                net(x[:n_sim])
            row["dense_s"] = round(time.perf_counter() - t0, 2)
        row["speed_vs_dense"] = round(row["dense_s"] / max(row["sim_s"], 1e-9), 2)
        row["methods"] = {m: sum(1 for c in info.get("methods", {}).values() if m in c)
                          for m in ("int8 product", "depthwise pass", "grouped pass", "float conv", "scatter", "channel scale", "float product")}
        row["agreement"] = float((snn.predictions == ann[:n_sim].argmax(1)).mean())
        row["n_sim"] = n_sim
    if not skip_map:
        try:
            row.update(_map(q, bits))
        except Exception as e:  # a net that does not map is a result, not the end of the table
            row["map_error"] = f"{type(e).__name__}: {e}"[:300]
    return row


def _fmt(row):
    agree = f"{row['agreement']:.0%} of {row['n_sim']}" if "agreement" in row else "-"
    mapping = (f"{row['cores']} / {row['lower_bound']} = {row['map_ratio']:.3f}" if "cores" in row
               else row.get("map_error", "-"))
    return (f"| {row['net']} | {row['px']} | {row['nodes']} | {row['torch_s']:.2f} | {row['compile_s']:.1f} | "
            f"{row['bound_s']:.1f} | {row['time_ratio']:.2f} | {agree} | {mapping} | {row.get('map_s', '-')} |")


HEADER = ("| net | px | nodes | torch fwd (s) | compile (s) | bound 2x+5 (s) | compile / bound | int8 agrees (T=64) "
          "| Loihi 2 cores / lower bound | map (s) |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default=",".join(ORDER), help="comma-separated, from: " + ", ".join(ORDER))
    ap.add_argument("--n-sim", type=int, default=16, help="images simulated per net (default 16)")
    ap.add_argument("--timesteps", type=int, default=64)
    ap.add_argument("--held-out", action="store_true",
                    help="simulate --n-sim fresh random images (seed 2) instead of the first calibration images")
    ap.add_argument("--skip-sim", action="store_true")
    ap.add_argument("--skip-map", action="store_true")
    ap.add_argument("--json", help="write the rows here (rewritten after each net)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.nets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(NETS))
    if unknown:
        ap.error(f"unknown nets {unknown}; known: {', '.join(ORDER)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}", flush=True)
    print(HEADER, flush=True)
    rows = []
    for name in names:
        row = measure(name, args.n_sim, args.timesteps, args.skip_sim, args.skip_map, held_out=args.held_out)
        row["load"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        print(_fmt(row), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
