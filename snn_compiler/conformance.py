"""``snnc check``: one compiled network on two backends, compared layer by layer.

Comparison rules
----------------
**Exact** (two integer backends: ``reference``, ``reference-numpy`` — the reference's numpy
engine, to check it against the numba one —, ``lava``, or a plugin): the integer SNN is defined
bit for bit, so every neuron layer's spike count (every sample, every neuron) and every read-out
score must be identical. Otherwise the first divergence is named:

- sample: the first (in data order) whose counts or scores differ after T steps;
- timestep: the first t in 1..T at which that sample's cumulative counts or read-out differ. The
  count at T says nothing about when, so the sample is re-run alone (Poisson: with the samples
  before it, whose index seeds its spikes) for t <= T steps and t is bisected: 1 + ceil(log2 T)
  re-runs of each backend. Runs are prefix-consistent (the first t steps of a T-step run are a
  t-step run, for both encodings; tests/test_conformance_check.py asserts it). The reported t always has identical
  counts and read-out at t - 1 and a difference at t; bisection assumes a difference, once there,
  does not vanish from every layer and the read-out before T (a difference that came and went
  before the reported t would be missed);
- layer and neuron at t: the first layer in topological order, then the first neuron (flat index,
  and its index in the layer's shape), with both backends' counts at t (``quantity``: the spike
  count, or the output membrane when only a membrane read-out differs).

**Tolerance** (an integer backend against ``float``, the float SNN the integer one approximates):
per layer, the mean over samples and neurons of |count_a - count_b| / T, the mean absolute
firing-rate difference in spikes per neuron per step, must be <= ``tolerance`` (default
:data:`RATE_TOLERANCE` = 0.05), and the predictions must agree on at least ``min_agreement`` of
the samples (default :data:`MIN_AGREEMENT` = 0.9). A count flips where quantization moves T x
activation across an integer, so the mean rate difference estimates the mean activation error
(in units of the layer's full scale) and hardly depends on T. The output membrane per step, in
the float SNN's units (integer membrane / threshold), is reported but not judged: it carries the
1/T timing noise of every spike feeding it (up to 0.08 on 8-bit nets at T = 8).

``ann`` has no spikes and is refused.
"""
from __future__ import annotations

import math

import numpy as np

from .ir import input_node, op_of, topo_order
from .ir import ops as O
from .sim.encode import is_seeded, run_timesteps, sequence_steps

# Measured (reference vs float; the four nets of tests/lava_nets.py with 200 random inputs, and the
# trained digits CNN of the demo on its 540 test images; T = 8, 16, 32, 64, both encodings, both
# resets), the worst layer's mean |rate difference|: 8-bit weights 0.0097 (digits 0.0086), 6-bit
# 0.019 (0.016), 4-bit 0.055 (0.051). 0.05 passes 8-bit networks with a 5x margin and 6-bit ones
# with 2.5x; 4-bit quantization alone sits at the limit (pass --tolerance 0.1). A wrong layer
# threshold shows: doubled, its layer moves by 0.07-0.1; 25% too high moves it by 0.03, which only
# --tolerance 0.02 separates from 8-bit quantization.
RATE_TOLERANCE = 0.05
# Predictions agreed on >= 95.7% of the digits test images at 6-8 bits (>= 91.9% at 4 bits);
# untrained nets, whose outputs are near ties, went down to 84% at 8 bits and T = 8
# (pass --min-agreement for them).
MIN_AGREEMENT = 0.9

NO_SPIKES = ("ann",)         # backends without a spiking reading: nothing to compare
APPROXIMATE = ("float",)     # backends compared within a tolerance, not exactly


def _reference_numpy(graph, x, **kw):
    from .sim.emulator import simulate
    return simulate(graph, x, mode="int", engine="numpy", **kw)


PSEUDO_BACKENDS = {"reference-numpy": _reference_numpy}


def _runner(name):
    from .targets import get_backend
    if name in NO_SPIKES:
        raise ValueError(f"backend {name!r} has no spikes to compare; check reference, float, lava or reference-numpy")
    return PSEUDO_BACKENDS[name] if name in PSEUDO_BACKENDS else get_backend(name)


def _neuron_layers(graph):
    return [n for n in topo_order(graph) if isinstance(op_of(graph, n), O.NEURONS)]


def compare_backends(graph, x, backends=("reference", "lava"), *, timesteps=None, encoding="constant", seed=0,
                     readout="membrane", batch_size=256, progress=False, tolerance=None, min_agreement=None,
                     options=None) -> dict:
    """Run ``graph`` on ``x`` with both ``backends`` and compare them (rules: module docstring).

    ``x``: samples (N, *input shape), run for ``timesteps`` (None: 32), or a sequence (N, T, *input
    shape) that sets T (``timesteps`` None or T); a sequence's divergence is bisected on its first
    t frames. ``options``: {backend: extra keyword arguments} (e.g. {"lava": {"timeout": 600}}).
    Returns a JSON-able dict: ``mode`` (exact or tolerance), ``passed``, ``identical``,
    ``within_tolerance``, ``backends``, ``timesteps``, ``samples``, ``encoding``, ``readout``,
    ``layers`` (per-layer stats), ``readout_stats``, ``first_divergence`` (None, or {sample, layer,
    neuron, index, timestep, quantity, values: {backend: value}}). Errors are one-line ValueErrors.
    """
    backends = tuple(backends)
    if len(backends) != 2:
        raise ValueError(f"check compares exactly two backends, like reference,lava; got {','.join(backends) or 'none'}")
    runs = [_runner(b) for b in backends]
    tol_mode = any(b in APPROXIMATE for b in backends)
    tolerance = RATE_TOLERANCE if tolerance is None else float(tolerance)
    min_agreement = MIN_AGREEMENT if min_agreement is None else float(min_agreement)
    if tol_mode and not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a rate >= 0 (spikes per neuron per step), got {tolerance}")
    if tol_mode and not 0 <= min_agreement <= 1:
        raise ValueError(f"min_agreement must be a fraction in 0..1, got {min_agreement}")
    x = np.asarray(x)
    shape = graph.nodes[input_node(graph)]["shape"]
    timesteps = run_timesteps(shape, x, timesteps, encoding)
    seq = sequence_steps(shape, x) is not None
    options = {} if options is None else options
    stray = sorted(set(options) - set(backends)) if isinstance(options, dict) else None
    if stray is None or stray:  # an option for a backend not compared would be silently dropped
        raise ValueError(f"options must map compared backends ({', '.join(backends)}) to keyword arguments, "
                         f"got {'a ' + type(options).__name__ if stray is None else 'options for ' + ', '.join(map(str, stray))}")

    def run(i, xs, t, show=False):
        xs = xs[:, :t] if seq else xs  # a sequence's first t steps are its first t frames
        kw = dict(timesteps=t, encoding=encoding, seed=seed, readout=readout, batch_size=batch_size,
                  progress=show, record=True)
        res = runs[i](graph, xs, **kw, **options.get(backends[i], {}))
        if res.counts is None:
            raise ValueError(f"backend {backends[i]!r} did not record spike counts (record=True)")
        return res

    res = [run(0, x, timesteps, progress), run(1, x, timesteps, progress)]
    layers = _common_layers(graph, backends, res)
    out = {"mode": "tolerance" if tol_mode else "exact", "backends": list(backends), "timesteps": int(timesteps),
           "samples": int(len(res[0].predictions)), "encoding": encoding, "readout": readout}
    identical = all(np.array_equal(res[0].counts[n], res[1].counts[n]) for n in layers) and \
        np.array_equal(res[0].scores, res[1].scores)
    if tol_mode:
        out["layers"], out["readout_stats"], ok = _tolerance_stats(graph, layers, res, backends, timesteps, readout,
                                                                   tolerance, min_agreement)
        out.update(identical=bool(identical), within_tolerance=ok, passed=ok, tolerance=tolerance,
                   min_agreement=min_agreement, first_divergence=None)
        return out
    out["layers"], out["readout_stats"] = _exact_stats(layers, res)
    out.update(identical=bool(identical), within_tolerance=bool(identical), passed=bool(identical),
               first_divergence=None if identical else _first_divergence(run, x, res, layers, backends, timesteps,
                                                                          encoding, readout, graph))
    return out


def _common_layers(graph, backends, res):
    """The neuron layers (topological order) both backends recorded, with equal shapes."""
    layers = [n for n in _neuron_layers(graph) if n in res[0].counts or n in res[1].counts]
    for n in layers:
        for b, r in zip(backends, res):
            if n not in r.counts:
                raise ValueError(f"backend {b!r} recorded no spike counts for layer {n!r}")
        if res[0].counts[n].shape != res[1].counts[n].shape:
            raise ValueError(f"layer {n!r}: {backends[0]} counts have shape {res[0].counts[n].shape}, "
                             f"{backends[1]} {res[1].counts[n].shape}")
    if res[0].scores.shape != res[1].scores.shape:
        raise ValueError(f"read-out scores: {backends[0]} gives shape {res[0].scores.shape}, "
                         f"{backends[1]} {res[1].scores.shape}")
    return layers


def _exact_stats(layers, res):
    stats = {}
    for n in layers:
        d = np.abs(res[0].counts[n] - res[1].counts[n])
        stats[n] = {"identical": not d.any(), "max_abs_diff": int(d.max(initial=0)),
                    "differing": int(np.count_nonzero(d)), "size": int(d.size)}
    d = np.abs(res[0].scores - res[1].scores)
    readout = {"identical": not d.any(), "max_abs_diff": float(d.max(initial=0)),
               "prediction_agreement": _agreement(res)}
    return stats, readout


def _agreement(res):
    n = len(res[0].predictions)
    return float(np.mean(res[0].predictions == res[1].predictions)) if n else 1.0


def _tolerance_stats(graph, layers, res, backends, timesteps, readout, tolerance, min_agreement):
    stats, ok = {}, True
    for n in layers:
        a, b = res[0].counts[n], res[1].counts[n]
        d = np.abs(a - b) / timesteps
        mean = float(d.mean()) if d.size else 0.0
        stats[n] = {"rates": {backends[0]: float(a.mean() / timesteps) if a.size else 0.0,
                              backends[1]: float(b.mean() / timesteps) if b.size else 0.0},
                    "mean_abs_rate_diff": mean, "max_abs_rate_diff": float(d.max(initial=0)),
                    "within_tolerance": mean <= tolerance}
        ok &= mean <= tolerance
    agree = _agreement(res)
    ro = {"prediction_agreement": agree}
    if readout == "membrane":  # the output membrane per step, in the float SNN's units (threshold 1)
        out = next(n for n in _neuron_layers(graph) if O.is_readout(op_of(graph, n)))
        units = [1.0 if b in APPROXIMATE else float(op_of(graph, out).threshold) for b in backends]
        d = np.abs(res[0].scores / units[0] - res[1].scores / units[1]) / timesteps
        ro["mean_abs_diff"] = float(d.mean()) if d.size else 0.0  # reported, not judged (module docstring)
    ro["within_tolerance"] = agree >= min_agreement
    return stats, ro, bool(ok and ro["within_tolerance"])


def _differs(a, b, layers, k):
    """(layer, flat neuron) of the first difference of results a and b in sample row k, or None;
    layer None: only the read-out scores differ (flat index into the scores)."""
    for n in layers:
        d = np.flatnonzero(a.counts[n][k] != b.counts[n][k])
        if d.size:
            return n, int(d[0])
    d = np.flatnonzero(a.scores[k] != b.scores[k])
    return (None, int(d[0])) if d.size else None


def _first_divergence(run, x, res, layers, backends, timesteps, encoding, readout, graph):
    k = next(i for i in range(len(res[0].predictions)) if _differs(res[0], res[1], layers, i))
    # Poisson spikes come from default_rng([seed, sample index]): the sample must keep its index,
    # so a Poisson re-run takes the samples before it too; a constant-input re-run takes it alone.
    xs, row = (x[k:k + 1], 0) if not is_seeded(encoding) else (x[:k + 1], k)
    probes = {}

    def probe(t):
        if t not in probes:
            probes[t] = (run(0, xs, t), run(1, xs, t))
        return _differs(*probes[t], layers, row)

    if probe(timesteps) is None:  # the full run differed, this sample re-run does not: no t to find
        t, (a, b), row = None, res, k
    else:
        lo, hi = 0, timesteps  # identical after lo steps (0: nothing ran yet), different after hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if probe(mid) is not None else (mid, hi)
        t, (a, b) = hi, probes[hi]
    layer, flat = _differs(a, b, layers, row)
    if layer is None:  # only the read-out differs: the output membrane (a count read-out's counts)
        layer = next(n for n in _neuron_layers(graph) if O.is_readout(op_of(graph, n)))
        shape, quantity = a.scores.shape[1:], "membrane" if readout == "membrane" else "count"
        values = [a.scores[row].flat[flat], b.scores[row].flat[flat]]
        values = [int(v) if float(v).is_integer() else float(v) for v in values]
    else:
        shape, quantity = a.counts[layer].shape[1:], "count"
        values = [int(a.counts[layer][row].flat[flat]), int(b.counts[layer][row].flat[flat])]
    found = {"sample": int(k), "layer": layer, "neuron": flat, "index": [int(i) for i in np.unravel_index(flat, shape)],
             "timestep": t, "quantity": quantity, "values": dict(zip(backends, values))}
    if t is None:
        found["note"] = ("the difference did not reproduce when the sample was re-run alone: a backend depends "
                         "on batching or is not deterministic")
    return found


def format_result(r: dict) -> str:
    """A short report: per layer identical or the difference, the read-out, the verdict."""
    a, b = r["backends"]
    head = (f"check {a} vs {b}: {r['samples']} samples, T={r['timesteps']}, {r['encoding']} input, "
            f"{r['readout']} read-out")
    lines = [head]
    width = max([len(n) for n in r["layers"]] + [8])
    for n, s in r["layers"].items():
        if r["mode"] == "exact":
            what = "identical" if s["identical"] else \
                f"{s['differing']}/{s['size']} counts differ, max |difference| {s['max_abs_diff']}"
        else:
            what = (f"rate {s['rates'][a]:.4f} vs {s['rates'][b]:.4f}, mean |difference| "
                    f"{s['mean_abs_rate_diff']:.4f} (max {s['max_abs_rate_diff']:.4f})"
                    + ("" if s["within_tolerance"] else "  OVER TOLERANCE"))
        lines.append(f"  {n:<{width}}  {what}")
    ro = r["readout_stats"]
    if r["mode"] == "exact":
        what = "identical" if ro["identical"] else \
            f"max |difference| {ro['max_abs_diff']:g}, predictions agree on {100 * ro['prediction_agreement']:.1f}%"
    else:
        what = f"predictions agree on {100 * ro['prediction_agreement']:.1f}%"
        if "mean_abs_diff" in ro:
            what += f" (output membrane per step: mean |difference| {ro['mean_abs_diff']:.4f}, not judged)"
        what += "" if ro["prediction_agreement"] >= r["min_agreement"] else "  BELOW MINIMUM"
    lines.append(f"  {'read-out':<{width}}  {what}")
    if r["mode"] == "exact":
        fd = r["first_divergence"]
        if fd is None:
            lines.append("IDENTICAL: every layer's spike counts and the read-out are equal")
        else:
            vals = ", ".join(f"{k} {v}" for k, v in fd["values"].items())
            when = f"timestep {fd['timestep']}" if fd["timestep"] is not None else f"after T={r['timesteps']}"
            lines.append(f"DIVERGED: first at sample {fd['sample']}, layer {fd['layer']}, neuron {fd['neuron']} "
                         f"(index {tuple(fd['index'])}), {when}: {fd['quantity']} {vals}")
            if "note" in fd:
                lines.append(f"  note: {fd['note']}")
    else:
        rule = (f"mean |rate difference| per layer <= {r['tolerance']:g} spikes/neuron/step, predictions agree on "
                f">= {100 * r['min_agreement']:g}% of samples")
        lines.append(("WITHIN TOLERANCE" if r["passed"] else "OUT OF TOLERANCE") + f" ({rule})")
    return "\n".join(lines)
