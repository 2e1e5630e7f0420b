"""Where a converted network loses accuracy, per cause and per layer.

Every neuron layer's rate approximates its ANN activation in threshold units, clipped to one
spike per step: ``rate ~ min(a, 1)``. Three causes separate the ANN from the integer SNN, each
measured as an accuracy difference on the same samples (percentage points):

- clipping:     ANN  -  ANN with every hidden activation clipped at 1 (the threshold)
- timesteps:    clipped ANN  -  float SNN at T (rate coding with T steps; the float SNN is the
                clipped ANN in the limit of many steps)
- quantization: float SNN at T  -  integer SNN at T (weights, thresholds and input in integers)

Per layer: the correlation of integer-SNN rates with ANN activations, the fraction of
activations above the threshold, the rate error of the float SNN against ``min(a, 1)`` (too few
timesteps), the integer SNN against the float SNN (quantization), and the accuracy lost by
clipping that layer alone. The layer that *introduces* most error is the first silent or
saturated layer (:mod:`snn_compiler.activity`; its rate error in threshold units can look small:
a silent layer's scale is too large, so its target ``min(a, 1)`` is tiny too), else the one whose
rate error grows most over the worst of its sources.
"""
from __future__ import annotations

import numpy as np

from ..activity import inactive_layers
from ..ir import op_of, output_node, topo_order
from ..ir import ops as O
from ..ir.layers import incoming, neuron_layers, source_and_area
from ..sim.emulator import iter_ann, simulate


def ann_outputs(graph, x, clip=(), keep=(), batch_size=256):
    """(output scores, {layer in keep: activations}) of the ANN reading, with the IF layers in
    ``clip`` clipped at 1 (their threshold, in the normalised graph's units)."""
    out = output_node(graph)
    scores, acts = [], {k: [] for k in keep}
    for vals in iter_ann(graph, x, keep=keep, batch_size=batch_size, clip=clip):
        scores.append(vals[out])
        for k in keep:
            acts[k].append(vals[k])
    return np.concatenate(scores), {k: np.concatenate(v) for k, v in acts.items()}


Z95 = 1.959963984540054   # the normal quantile of a two-sided 95% interval


def _acc(scores, y):
    return float(100.0 * (np.argmax(scores, axis=1) == y).mean())


def wilson(acc_percent: float, n: int):
    """The 95% Wilson score interval (low, high), in %, of an accuracy measured on ``n`` samples:
    the sampling uncertainty of every accuracy the report shows (n = 500 at 98%: about ±1.3 pt)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p, z2 = acc_percent / 100.0, Z95 * Z95
    mid = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo, hi = 100.0 * (mid - half), 100.0 * (mid + half)
    return (float(min(lo, acc_percent)), float(max(hi, acc_percent)))  # rounding must not leave p outside


def accuracy_sweep(graph, x, y, timesteps, encoding="constant", seed=0, tick=lambda: None) -> dict:
    """Accuracy (%) of the ANN and of the float and integer SNN at each T, and the integer SNN's
    events per inference at each T (what its synaptic operations and energy follow)."""
    ann, _ = ann_outputs(graph, x)
    out = {"timesteps": list(timesteps), "ann": _acc(ann, y), "float": [], "int": [], "events": [], "n": len(x)}
    for T in timesteps:
        for mode in ("float", "int"):
            r = simulate(graph, x, mode=mode, timesteps=T, encoding=encoding, seed=seed, record=mode == "int")
            out[mode].append(float(100.0 * (r.predictions == y).mean()))
            if mode == "int":
                out["events"].append(events_per_inference(graph, x, r.counts, T, encoding, seed))
            tick()
    return out


def neuron_activity(counts, T) -> dict:
    """Per layer: how many neurons never spiked on any sample (dead) and how many fired on at
    least 95% of the steps on average (saturated), and the histogram of per-neuron rates."""
    out = {}
    for n, c in counts.items():
        per_neuron = c.reshape(len(c), -1).mean(axis=0) / T
        hist, _ = np.histogram(per_neuron, bins=20, range=(0.0, 1.0))
        out[n] = {"dead": int((per_neuron == 0).sum()), "saturated": int((per_neuron >= 0.95).sum()),
                  "neurons": int(per_neuron.size), "rate_histogram": hist.tolist()}
    return out


def _corr(a, b) -> float:
    a, b = a.ravel(), b.ravel()
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def layer_stats(graph, x, y, T, encoding="constant", seed=0, tick=lambda: None) -> dict:
    """Per-layer figures and the loss attribution at ``T`` (see the module docstring)."""
    order = topo_order(graph)
    hidden = [n for n in neuron_layers(graph, order) if not O.is_readout(op_of(graph, n))]
    ann, acts = ann_outputs(graph, x, keep=hidden)
    clipped, _ = ann_outputs(graph, x, clip=hidden)
    runs = {}
    for mode in ("float", "int"):
        runs[mode] = simulate(graph, x, mode=mode, timesteps=T, encoding=encoding, seed=seed, record=True)
        tick()
    expected = graph.graph.get("snnc", {}).get("expected_rates", {})
    layers = {}
    for n in hidden:
        a = acts[n]
        r_int = runs["int"].counts[n] / T
        r_float = runs["float"].counts[n] / T
        target = np.minimum(a, 1.0)
        only, _ = ann_outputs(graph, x, clip=[n])
        layers[n] = {
            "neurons": int(np.prod(graph.nodes[n]["shape"])),
            "correlation": _corr(r_int, a),
            "clipped": float((a > 1.0).mean()),
            "timestep_error": float(np.abs(r_float - target).mean()),
            "quantization_error": float(np.abs(r_int - r_float).mean()),
            "rate_error": float(np.abs(r_int - target).mean()),
            "rate": float(r_int.mean()),
            "expected_rate": expected.get(n),
            "clip_loss": _acc(ann, y) - _acc(only, y),
        }
    for n in hidden:
        srcs = [source_and_area(graph, k)[0] for k in incoming(graph, n)]
        before = max((layers[s]["rate_error"] for s in srcs if s in layers), default=0.0)
        layers[n]["introduced_error"] = layers[n]["rate_error"] - before
    acc = {"ann": _acc(ann, y), "clipped_ann": _acc(clipped, y),
           "float": float(100.0 * (runs["float"].predictions == y).mean()),
           "int": float(100.0 * (runs["int"].predictions == y).mean())}
    causes = {"clipping": acc["ann"] - acc["clipped_ann"], "timesteps": acc["clipped_ann"] - acc["float"],
              "quantization": acc["float"] - acc["int"]}
    inactive = inactive_layers({n: layers[n]["rate"] for n in hidden}, T)
    for n in hidden:
        layers[n]["activity"] = inactive.get(n)
    worst = next(iter(inactive), None)  # the first in topological order: where the signal dies or clips
    if worst is None and layers:
        worst = max(layers, key=lambda n: layers[n]["introduced_error"])
    return {"T": T, "accuracy": acc, "causes": causes, "layers": layers, "worst_layer": worst,
            "int_counts": runs["int"].counts}


def events_per_inference(graph, x, counts, T, encoding="constant", seed=0) -> dict:
    """{source: mean events per inference}: spikes of each neuron layer; nonzero input values
    per step for the input (graded values with the constant encoding, spikes with Poisson)."""
    from ..sim.encode import input_steps
    ev = {n: float(c.sum()) / len(x) for n, c in counts.items()}
    inp = next(n for n in graph if isinstance(op_of(graph, n), O.Input))
    total = 0
    for step in input_steps(op_of(graph, inp), x, T, encoding, seed, range(len(x)), "int"):
        total += int(np.count_nonzero(step))
    ev[inp] = total / len(x)
    return ev
