"""One run's samples as consecutive shards, run apart (a batch of a streamed data set at a time,
or on Ray workers, :mod:`.distributed`) and merged into the SimResult the whole run gives, bit for bit.

A shard of samples [first, first + n) runs with ``first_sample=first``, so Poisson input draws the
streams of sample indices first.. (:mod:`.sim.streams` keys them by seed and index), exactly as in
the whole run. Everything simulate returns is per sample (concatenated in order) except the
rates, which are merged from each shard's integer spike totals and simulated sample-steps with the
division simulate itself makes. A sweep's synaptic operations are merged the same way: integer
event totals per shard, divided by N once (:func:`.report.analysis.events_per_inference`'s rule).
"""
from __future__ import annotations

import numpy as np

# The backends whose runs split by samples: the emulator's (Lava keeps its own process per run;
# the ANN reading has no rates or streams, so it gains nothing from shards).
SHARDABLE = ("reference", "float")


def check_backend(backend: str, why: str) -> None:
    if backend not in SHARDABLE:
        raise ValueError(f"{why} runs the {' and '.join(SHARDABLE)} backends, not {backend!r}")


def _steps_run(result, T: int, stopped: bool) -> int:
    """Samples x steps the run simulated: every sample T, except a latency read-out's samples that
    stopped at their decision (:meth:`.sim.readout.Decisions.steps_run`)."""
    if result.decision_time is None or not stopped:
        return len(result.predictions) * T
    dt = result.decision_time
    return int(np.where(dt > 0, dt, T).sum())


def run_shard(graph, x, first: int, backend: str, options: dict, events=False) -> dict:
    """Samples ``x`` (indices ``first``.. of the whole run) on ``backend`` with simulate's
    ``options`` (``timesteps`` given): the per-sample results, per-layer spike totals and the
    sample-steps run; with ``events``, integer event totals (counts themselves left out)."""
    from .targets import get_backend
    T = int(options["timesteps"])
    r = get_backend(backend)(graph, x, **({"first_sample": first} if first else {}), **options)   # 0: any backend
    stopped = not options.get("record") and options.get("record_steps") is None
    ran = _steps_run(r, T, stopped)
    sizes = {n: int(np.prod(graph.nodes[n]["shape"])) for n in r.rates}
    # rate = total / (ran * size) in float64: an exact integer total comes back by rounding
    totals = {n: int(round(rate * ran * sizes[n])) for n, rate in r.rates.items()}
    part = dict(first=first, n=len(x), scores=r.scores, predictions=r.predictions, decision_time=r.decision_time,
                tied=r.tied, counts=r.counts, steps=r.steps, totals=totals, ran=ran, events=None)
    if events:
        part["events"] = event_totals(graph, x, first, r.counts, T, options["encoding"], options["seed"])
        part["counts"] = None
    return part


def event_totals(graph, x, first, counts, T, encoding, seed) -> dict:
    """{source: events of these samples}: every neuron layer's spikes and the input's nonzero values
    per step, with the input streams of sample indices ``first``.."""
    from .ir import input_node, op_of
    from .sim.encode import input_steps
    ev = {n: int(c.sum()) for n, c in counts.items()}
    inp = input_node(graph)
    ids = range(first, first + len(x))
    ev[inp] = sum(int(np.count_nonzero(s)) for s in input_steps(op_of(graph, inp), x, T, encoding, seed, ids, "int"))
    return ev


def merge(graph, parts):
    """(SimResult of the whole run, {source: mean events per inference} or None) from its shards'
    parts, in any order."""
    from .sim.emulator import SimResult
    parts = sorted((p for p in parts if p["n"]), key=lambda p: p["first"])
    if not parts:
        raise ValueError("no samples were run")
    expect = parts[0]["first"]
    for p in parts:
        if p["first"] != expect:
            raise RuntimeError(f"shards do not tile the samples: one starts at {p['first']}, expected {expect}")
        expect += p["n"]

    def cat(key):
        return None if parts[0][key] is None else np.concatenate([p[key] for p in parts])

    def cat_dict(key):
        return None if parts[0][key] is None else {k: np.concatenate([p[key][k] for p in parts]) for k in parts[0][key]}
    ran = sum(p["ran"] for p in parts)
    totals = {n: sum(p["totals"][n] for p in parts) for n in parts[0]["totals"]}
    rates = {n: totals[n] / (ran * int(np.prod(graph.nodes[n]["shape"]))) for n in totals}
    result = SimResult(scores=cat("scores"), predictions=cat("predictions"), rates=rates, counts=cat_dict("counts"),
                       decision_time=cat("decision_time"), tied=cat("tied"), steps=cat_dict("steps"))
    events = None
    if parts[0]["events"] is not None:
        n = sum(p["n"] for p in parts)
        events = {k: sum(p["events"][k] for p in parts) / n for k in parts[0]["events"]}
    return result, events


def run_local(graph, source, backend: str, options: dict, batch: int, events=False):
    """:func:`merge` of the source's batches run here one after another (a streamed data set: one
    batch of x in memory at a time)."""
    return merge(graph, [run_shard(graph, x, first, backend, options, events) for first, x in source.batches(batch)])
