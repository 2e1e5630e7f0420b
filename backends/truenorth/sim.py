"""A small simulator of the corelet semantics (see :mod:`.corelet`), for tests and inspection.

Independent of the reference emulator: it reads only the corelet JSON.
"""
from __future__ import annotations

import numpy as np


class _Core:
    def __init__(self, c, batch, v_max):
        n, a = len(c["neurons"]), c["axons"]
        self.xbar = np.zeros((a, n), np.int64)
        for axon, row in enumerate(c["crossbar"]):
            self.xbar[axon, row] = 1
        self.types = np.asarray(c["axon_types"], np.int64).reshape(a)
        self.w = np.array([nr["weights"] for nr in c["neurons"]], np.int64).reshape(n, 4)
        self.th = np.array([nr["threshold"] for nr in c["neurons"]], np.int64)
        self.leak = np.array([nr["leak"] for nr in c["neurons"]], np.int64)
        self.zero = np.array([nr["reset"] == "zero" for nr in c["neurons"]], bool)
        self.v = np.tile(np.array([nr["v_init"] for nr in c["neurons"]], np.int64), (batch, 1))
        self.buf = np.zeros((batch, a), np.int64)
        self.count = np.zeros((batch, n), np.int64)
        self.v_max = v_max
        self.targets = [nr["target"] for nr in c["neurons"]]

    def tick(self):
        cur = np.zeros_like(self.v)
        for t in range(4):
            sel = self.types == t
            if sel.any():
                cur += (self.buf[:, sel] @ self.xbar[sel]) * self.w[:, t]
        v = np.clip(self.v + cur + self.leak, -self.v_max, self.v_max)
        s = v >= self.th
        v = np.where(s & self.zero, 0, np.where(s, v - self.th, v))
        self.v = v
        self.count += s
        self.buf[:] = 0
        return s


def run_corelet(corelet: dict, pin_spikes) -> dict:
    """Run ``pin_spikes`` (T, B, pins) or (T, B, *input shape) booleans through the corelet.

    Returns ``{"output": (B, outputs) spike counts, "layers": {layer: (B, neurons) counts indexed by
    the layer's flat neuron index}, "cores": [per-core (B, neurons) counts]}``."""
    pin_spikes = np.asarray(pin_spikes, bool)
    pin_spikes = pin_spikes.reshape(pin_spikes.shape[:2] + (-1,))   # (T, B, *input shape) -> (T, B, pins)
    steps, batch, _ = pin_spikes.shape
    cores = [_Core(c, batch, corelet["v_max"]) for c in corelet["cores"]]
    out = np.zeros((batch, corelet["output"]["pins"]), np.int64)
    pins = corelet["input"]["pins"]
    for t in range(steps):
        for p, tgt in enumerate(pins):
            if tgt is not None:
                cores[tgt["core"]].buf[:, tgt["axon"]] += pin_spikes[t, :, p]
        for core in cores:
            s = core.tick()
            for k, tgt in enumerate(core.targets):
                if tgt is None:
                    continue
                if "output" in tgt:
                    out[:, tgt["output"]] += s[:, k]
                else:
                    cores[tgt["core"]].buf[:, tgt["axon"]] += s[:, k]
    layers = {}
    for c, core in zip(corelet["cores"], cores):
        if c["role"] != "layer":
            continue
        acc = layers.setdefault(c["layer"], {})
        for k, nr in enumerate(c["neurons"]):
            acc[nr["source"]] = core.count[:, k]
    layer_counts = {name: np.stack([acc[i] for i in sorted(acc)], axis=1) for name, acc in layers.items()}
    return {"output": out, "layers": layer_counts, "cores": [c.count for c in cores]}


def check_corelet(corelet: dict) -> list:
    """Structural rules of the core model; returns the list of violations (empty when it holds)."""
    lim = corelet["limits"]
    bad = []
    driven = {}
    for p, t in enumerate(corelet["input"]["pins"]):
        if t is not None:
            driven.setdefault((t["core"], t["axon"]), []).append(f"pin {p}")
    for c in corelet["cores"]:
        i = c["id"]
        if c["axons"] > lim["axons"] or len(c["neurons"]) > lim["neurons"]:
            bad.append(f"core {i}: {c['axons']} axons x {len(c['neurons'])} neurons exceeds {lim['axons']}x{lim['neurons']}")
        if len(c["axon_types"]) != c["axons"] or any(not 0 <= t < lim["axon_types"] for t in c["axon_types"]):
            bad.append(f"core {i}: axon_types must give one type in 0..{lim['axon_types'] - 1} per axon")
        if len(c["crossbar"]) != c["axons"] or any(not 0 <= n < len(c["neurons"]) for row in c["crossbar"] for n in row):
            bad.append(f"core {i}: crossbar rows do not match its axons/neurons")
        for k, nr in enumerate(c["neurons"]):
            if len(nr["weights"]) != lim["axon_types"] or any(not isinstance(w, int) for w in nr["weights"]):
                bad.append(f"core {i} neuron {k}: needs {lim['axon_types']} integer weights")
            t = nr["target"]
            if t is not None and "output" not in t:
                if not 0 <= t["core"] < len(corelet["cores"]) or t["core"] <= i:
                    bad.append(f"core {i} neuron {k}: target core {t['core']} is not a later core")
                driven.setdefault((t["core"], t["axon"]), []).append(f"core {i} neuron {k}")
    for (c, a), who in driven.items():
        if len(who) > 1:
            bad.append(f"core {c} axon {a} is driven by {len(who)} sources ({', '.join(who[:3])})")
    outs = sorted(nr["target"]["output"] for c in corelet["cores"] for nr in c["neurons"]
                  if nr["target"] is not None and "output" in nr["target"])
    if outs != list(range(corelet["output"]["pins"])):
        bad.append("output pins are not driven exactly once each")
    return bad
