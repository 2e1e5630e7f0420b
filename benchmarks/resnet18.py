"""Real-size networks through the CLI: a CIFAR-style ResNet-18 and a VGG-11-style net (issue 12).

    .venv/bin/python benchmarks/resnet18.py [--net resnet18|vgg11 ...] [--root DIR ...] [--timeout S]
        [--map-timeout S] [--skip-map] [--artifact A.snnc] [--keep DIR] [--json out.json]

Builds a CIFAR ResNet-18 with torch.nn (BasicBlocks, BatchNorm in eval mode with random running
statistics, 1x1 downsample shortcuts, AdaptiveAvgPool2d(1), input 3x32x32; random weights; no
torchvision) and/or a VGG-11-style net (VGG-11's eight 3x3 convs 64-128-256-256-512-512-512-512 with
BatchNorm and ReLU, 2x2 average pools where VGG max-pools, compiled with ``--pool spike``, Linear
512-10; input 3x32x32), saves each
as TorchScript plus 64 random calibration images, and times with each source tree given by
``--root`` (default: this checkout; e.g. also a ``git worktree add /tmp/head HEAD`` checkout for a
before/after table):

- ``compile --target lava`` (a refusal is expected, and should come in seconds),
- ``compile --profile loihi2 --chips 32`` (default target; calibration and mapping),
- ``compile --profile loihi2`` without ``--chips`` (one chip: refused by the core bound),
- ``map only``: the partition pass alone (``partition_graph``, loihi2 x 32 chips) on an artifact
  compiled without a profile (the mapping time without calibration),
- ``inspect`` (and ``inspect --json``) on the mapped artifact, when one was written; the mapped
  artifact's cores, lower bound and inter-chip links are read back from ``inspect --json``.

Each command runs in its own process, capped by ``--timeout`` (``--map-timeout`` for the mapping
compile); a capped run is reported as ``>S``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

# Runs the CLI of the source tree ``root`` (its backends/ folder as snn_compiler.backends, as setup.py maps it).
RUNNER = r"""
import importlib.util, sys
root = sys.argv[1]
sys.path.insert(0, root)
import snn_compiler
assert snn_compiler.__file__.startswith(root), snn_compiler.__file__
spec = importlib.util.spec_from_file_location("snn_compiler.backends", root + "/backends/__init__.py",
                                              submodule_search_locations=[root + "/backends"])
mod = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = mod
snn_compiler.backends = mod
spec.loader.exec_module(mod)
from snn_compiler.cli import main
sys.exit(main(sys.argv[2:]))
"""


# Times the partition pass alone on an unmapped artifact with the tree ``root`` (the map-only figure).
MAP_ONLY = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from snn_compiler import artifact
from snn_compiler.mapping import load_profile_dict, partition_graph
from snn_compiler.passes.compose_pools import without_pools
g = without_pools(artifact.load(sys.argv[2]))
t0 = time.perf_counter()
cm = partition_graph(g, dict(load_profile_dict("loihi2"), chips=32), int(g.graph["snnc"]["bits"]))
dt = time.perf_counter() - t0
t = cm["traffic"]
print(json.dumps({"map_seconds": round(dt, 2), "cores": len(cm["cores"]), "lower_bound": cm["lower_bound"],
                  "links": t["links"], "inter_chip_links": t["inter_chip_links"], "chips_used": t.get("chips_used"),
                  "placement": t["placement"]}))
"""


def resnet18(num_classes=10):
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            self.relu2 = nn.ReLU()

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
            return self.relu2(y + self.shortcut(x))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU()
            blocks, cin = [], 64
            for cout, stride in [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]:
                blocks.append(BasicBlock(cin, cout, stride))
                cin = cout
            self.layers = nn.Sequential(*blocks)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            x = self.layers(self.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(self.pool(x), 1))

    torch.manual_seed(0)
    return random_batchnorm(ResNet18())


def random_batchnorm(model):
    """``model`` in eval mode with random BatchNorm statistics (as if trained), so folding them matters."""
    import torch
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


def vgg11(num_classes=10, pool="avg"):
    """VGG-11's eight 3x3 convs (64-128-256-256-512-512-512-512) with BatchNorm and ReLU, a 2x2
    pool (``avg`` or ``max``) after convs 1, 2, 4, 6 and 8, then Linear 512-10; input 3x32x32."""
    import torch
    from torch import nn
    layers, cin = [], 3
    for v in [64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"]:
        if v == "P":
            layers.append(nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
            cin = v
    torch.manual_seed(0)
    return random_batchnorm(nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, num_classes)))


NETS = {"resnet18": resnet18, "vgg11": vgg11}
# VGG's pools as spiking pool layers: summed into the next conv (the default), a 512-channel conv
# after a pool reads 512 x 18 = 9216 sources per neuron, over Loihi 2's 8192 input axons per core
NET_ARGS = {"vgg11": ["--pool", "spike"]}


def make_files(d: Path, net="resnet18"):
    import numpy as np
    import torch
    model = NETS[net]()
    x = torch.rand(1, 3, 32, 32)
    torch.jit.save(torch.jit.trace(model, x), str(d / f"{net}.pt"))
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", x=rng.random((64, 3, 32, 32)).astype(np.float32))


def run(root, args, timeout, keep_stdout=False, code=RUNNER):
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-c", code, str(root)] + args, capture_output=True, text=True,
                           timeout=timeout, env=dict(os.environ, PYTHONHASHSEED="0"))
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return {"seconds": None, "timeout": timeout, "rc": None, "lines": len(out.splitlines()), "last": "timed out"}
    dt = time.perf_counter() - t0
    text = (p.stdout + p.stderr).strip().splitlines()
    out = {"seconds": round(dt, 2), "rc": p.returncode, "lines": len(p.stdout.splitlines()),
           "last": (text[-1] if text else "")[:300]}
    if keep_stdout:
        out["stdout"] = p.stdout
    return out


def map_figures(stdout):
    """Cores, lower bound, chips and inter-chip links of a mapped artifact, from ``inspect --json``."""
    try:
        info = json.loads(stdout)
    except ValueError:
        return {}
    t = info.get("traffic", {})
    return {"cores": info["cores_used"], "lower_bound": info["lower_bound"],
            "ratio": round(info["cores_used"] / info["lower_bound"], 3), "links": t.get("links"),
            "inter_chip_links": t.get("inter_chip_links"), "chips_used": t.get("chips_used"),
            "placement": t.get("placement")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", action="append", help="source tree(s) to time (default: this checkout)")
    ap.add_argument("--net", action="append", choices=sorted(NETS), help="network(s) (default: resnet18)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per command (default 120)")
    ap.add_argument("--map-timeout", type=float, default=300, help="seconds for the mapping compile (default 300)")
    ap.add_argument("--skip-map", action="store_true", help="skip the --chips 32 mapping compile")
    ap.add_argument("--map-only", action="store_true", help="also time the partition pass alone")
    ap.add_argument("--artifact", help="time inspect on this mapped artifact (instead of the one the mapping compile writes)")
    ap.add_argument("--keep", help="folder for the model, data and artifacts (default: a temporary one)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    roots = [Path(r).resolve() for r in (a.root or [HERE])]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(a.keep or tmp)
        d.mkdir(parents=True, exist_ok=True)
        for net in a.net or ["resnet18"]:
            make_files(d, net)
            common = [str(d / f"{net}.pt"), "--input-shape", "3,32,32", "--calibration", str(d / "calib.npz"),
                      *NET_ARGS.get(net, [])]
            for root in roots:
                art = d / f"{root.name}-{net}-mapped.snnc"
                cases = [("compile --target lava", common + ["-o", str(d / "lava.snnc"), "--target", "lava"], a.timeout),
                         ("compile --profile loihi2 (1 chip)", common + ["-o", str(d / "one.snnc"), "--profile", "loihi2"],
                          a.timeout)]
                if not a.skip_map:
                    cases.append(("compile --profile loihi2 --chips 32",
                                  common + ["-o", str(art), "--profile", "loihi2", "--chips", "32"], a.map_timeout))
                for name, args, limit in cases:
                    r = run(root, ["compile"] + args, limit)
                    results.append(dict(r, root=str(root), net=net, case=name))
                    print(json.dumps(results[-1]), flush=True)
                if a.map_only:
                    plain = d / f"{net}-plain.snnc"
                    if not plain.exists():
                        run(root, ["compile"] + common + ["-o", str(plain)], a.timeout)
                    r = run(root, [str(plain)], a.map_timeout, keep_stdout=True, code=MAP_ONLY)
                    try:
                        figures = json.loads(r.pop("stdout", "").strip().splitlines()[-1])
                        figures["ratio"] = round(figures["cores"] / figures["lower_bound"], 3)
                    except (ValueError, IndexError):
                        figures = {}
                    results.append(dict(r, root=str(root), net=net, case="map only (partition pass)", **figures))
                    print(json.dumps(results[-1]), flush=True)
                if a.artifact:
                    art = Path(a.artifact)
                if art.exists():
                    for name, extra in (("inspect", []), ("inspect --json", ["--json"])):
                        r = run(root, ["inspect", str(art)] + extra, a.timeout, keep_stdout=bool(extra))
                        figures = map_figures(r.pop("stdout", ""))
                        results.append(dict(r, root=str(root), net=net, case=name, **figures))
                        print(json.dumps(results[-1]), flush=True)
    print()
    print(f"{'net':<9} {'tree':<12} {'case':<38} {'seconds':>9} {'rc':>4} {'lines':>6}  result")
    for r in results:
        s = f">{r['timeout']:.0f}" if r["seconds"] is None else f"{r['seconds']:.2f}"
        print(f"{r['net']:<9} {Path(r['root']).name:<12} {r['case']:<38} {s:>9} {str(r['rc']):>4} {r['lines']:>6}  "
              f"{r['last'][:150]}")
    for r in results:
        if r.get("cores"):
            print(f"{r['net']} ({Path(r['root']).name}, {r['case']}): {r['cores']} cores, lower bound {r['lower_bound']} "
                  f"({r['ratio']:.2f}x); {r['inter_chip_links']} of {r['links']} spike links between chips on "
                  f"{r['chips_used'] or '?'} chips ({r['placement']})")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
