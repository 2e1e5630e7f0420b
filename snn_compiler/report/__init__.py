"""``snnc report``: where a converted network's accuracy and energy go, as one HTML page.

:func:`build_report` computes the figures (:mod:`.analysis`, :mod:`.energy`);
:func:`.html.render` draws them. Both read a compiled artifact's graph and run the reference
simulator, the float SNN and the ANN reading on the same samples.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import origins
from ..activity import activity_warnings
from ..ir import op_of, topo_order
from ..ir import ops as O
from ..ir.layers import neuron_layers
from ..sim.encode import check_timesteps
from . import analysis, energy

RASTER_NEURONS = 6   # per layer: the most active ones of the sample shown


def default_timesteps(T: int) -> list:
    """A doubling grid around the artifact's T: T/8 .. 2T (at least 1)."""
    return sorted({max(1, T >> k) for k in range(4)} | {2 * T})


def raster(graph, x1, T, layers, encoding="constant", seed=0) -> dict:
    from ..sim.emulator import spike_trace
    trace = spike_trace(graph, x1, T, layers, encoding=encoding, seed=seed)
    out = []
    for n in layers:
        s = trace[n].reshape(T, -1)                       # (T, neurons) of the one sample
        top = np.argsort(-s.sum(axis=0), kind="stable")[:RASTER_NEURONS]
        out.append({"name": n, "module": origins.label(graph, n), "neurons": [int(i) for i in top],
                    "spikes": [s[:, i] for i in top]})
    return {"T": T, "layers": out}


def build_report(graph, x, y=None, *, timesteps=None, samples=500, encoding="constant", seed=0,
                 artifact="artifact", data="data", progress=False) -> dict:
    """All figures of the report. Without labels ``y``, accuracy is agreement with the ANN."""
    from ..progress import bar as progress_bar
    x = x[:samples]
    labelled = y is not None
    if labelled:
        y = y[:samples]
    else:
        y = np.argmax(analysis.ann_outputs(graph, x)[0], axis=1)
    meta = graph.graph.get("snnc", {})
    T = int(meta.get("timesteps", 32))
    grid = default_timesteps(T) if timesteps is None else [check_timesteps(t) for t in timesteps]
    if not grid:
        raise ValueError("timesteps: give at least one T (or none for the default grid)")
    bar = progress_bar(2 * len(grid) + 3, "report", unit="run", enabled=progress)
    tick = lambda: bar.update(1)   # noqa: E731
    sweep = analysis.accuracy_sweep(graph, x, y, grid, encoding, seed, tick)
    stats = analysis.layer_stats(graph, x, y, T, encoding, seed, tick)
    rates = {n: L["rate"] for n, L in stats["layers"].items()}
    for line in activity_warnings(rates, T, f"measured on {len(x)} samples"):
        warnings.warn(line, UserWarning, stacklevel=2)
    all_counts = stats.pop("int_counts")
    counts = {n: c for n, c in all_counts.items() if n in stats["layers"]}   # hidden layers
    events = analysis.events_per_inference(graph, x, all_counts, T, encoding, seed)
    layers = [n for n in neuron_layers(graph, topo_order(graph)) if not O.is_readout(op_of(graph, n))]
    sample = 0
    ras = raster(graph, x[sample:sample + 1], T, layers, encoding, seed)
    ras["sample"] = sample
    tick()
    cores = None
    if "core_map" in meta:
        from ..mapping import report as core_report
        cores = core_report(graph)
    bar.close()
    sweep["energy_nJ"] = [energy.energy(graph, ev)["snn_nJ"] for ev in sweep.pop("events")]
    sweep["interval"] = {mode: [analysis.wilson(a, len(x)) for a in sweep[mode]] for mode in ("float", "int")}
    sweep["ann_interval"] = analysis.wilson(sweep["ann"], len(x))
    e = energy.energy(graph, events)
    e["balance"] = energy.balance(sweep["energy_nJ"], sweep["timesteps"], e["ann_fp32_nJ"])
    stats["activity"] = analysis.neuron_activity(counts, T)
    from ..summary import layer_table, summary
    return {"artifact": str(artifact), "data": str(data), "samples": len(x), "labelled": labelled,
            "modules": origins.labels(graph, list(graph)),   # IR name -> the user's layer it lowers
            "layer_table": layer_table(summary(graph)),
            "summary": (f"{meta.get('bits')}-bit weights, target {meta.get('target')}, reset {meta.get('reset')}, "
                        f"T = {T}" + ("" if labelled else "; no labels: accuracy is agreement with the ANN")),
            "sweep": sweep, "stats": stats, "energy": e, "raster": ras, "cores": cores,
            "method": (f"T grid {grid}; {len(x)} samples (the first of the data file); {encoding} input encoding, "
                       f"seed {seed}; per-layer figures and energy at the artifact's T = {T}; rates are spike "
                       f"counts / T of the integer reference simulator; ANN activations are in threshold units "
                       f"(the compiled graph's normalisation); raster: sample {sample}, the "
                       f"{RASTER_NEURONS} most active neurons of each hidden layer.")}
