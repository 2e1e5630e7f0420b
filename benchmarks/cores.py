"""Cores used by snnc's partitioner vs nengo-loihi's equal-chunk rule vs the lower bound.

    .venv/bin/python benchmarks/cores.py [--json out.json] [--bits 8]

Networks are hand-built with random integer weights (mapping reads only their structure), so no
torch is needed: the MNIST CNN (Conv16-AvgPool-Conv32-AvgPool-Linear128-Linear10 on 1x28x28,
3x3 convs with padding 1, pools as depthwise convs feeding IF layers as lower_avgpool makes
them), a wide MLP (784-3000-10) and a residual net (see snn_compiler.mapping.synthetic.resnet).
Every snnc map is recounted by the independent checker. Equal-chunk: nengo-loihi's
``ceil(max(demand / limit))`` equal contiguous chunks per layer; "valid" says whether those chunks
fit, "fitted" is the fewest equal chunks per layer that do.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snn_compiler.mapping import check_core_map, equal_chunk, partition_graph  # noqa: E402
from snn_compiler.mapping import synthetic as S  # noqa: E402

NETWORKS = {"mnist_cnn": S.mnist_cnn, "wide_mlp": S.wide_mlp, "resnet": S.resnet}
PROFILES = ("loihi1", "loihi2")


def measure(name, profile, bits):
    g = NETWORKS[name](bits=bits)
    t0 = time.perf_counter()
    cm = partition_graph(g, profile, bits)
    seconds = time.perf_counter() - t0
    chk = check_core_map(g, cm, profile)
    ec = equal_chunk(g, profile, bits)
    used = len(cm["cores"])
    return {"network": name, "profile": profile, "snnc": used, "lower_bound": cm["lower_bound"],
            "ratio": round(used / cm["lower_bound"], 3), "equal_chunk": ec["cores"], "equal_chunk_valid": ec["valid"],
            "equal_chunk_fitted": ec["fitted_cores"], "checker_ok": chk["ok"], "seconds": round(seconds, 2),
            "per_layer": {k: {"snnc": len(v), "lower_bound": cm["layer_bounds"][k]["cores"],
                              "binding": cm["layer_bounds"][k]["binding"], "equal_chunk": ec["layers"][k]}
                          for k, v in cm["layers"].items()},
            "traffic": cm["traffic"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--networks", nargs="*", default=list(NETWORKS))
    args = ap.parse_args(argv)
    rows = [measure(n, p, args.bits) for n in args.networks for p in PROFILES]
    head = f"{'network':10} {'profile':7} {'snnc':>5} {'lower':>6} {'ratio':>6} {'equal-chunk':>12} {'fitted':>7} {'checker':>8} {'time':>6}"
    print(head)
    print("-" * len(head))
    for r in rows:
        ec = f"{r['equal_chunk']}{'' if r['equal_chunk_valid'] else ' (bad)'}"
        print(f"{r['network']:10} {r['profile']:7} {r['snnc']:5d} {r['lower_bound']:6d} {r['ratio']:6.2f} {ec:>12} "
              f"{r['equal_chunk_fitted']!s:>7} {'ok' if r['checker_ok'] else 'FAIL':>8} {r['seconds']:5.1f}s")
    print("\n(bad): nengo-loihi's chunks overflow a core limit; fitted: fewest equal chunks per layer that fit")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["checker_ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
