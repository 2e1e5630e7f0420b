"""One run's samples as consecutive shards, run apart (a batch of a streamed data set at a time,
or on Ray workers, :mod:`.distributed`) and merged into the SimResult the whole run gives, bit for bit.

A shard of samples [first, first + n) runs with ``first_sample=first``, so Poisson input draws the
streams of sample indices first.. (:mod:`.sim.streams` keys them by seed and index), exactly as in
the whole run. Everything simulate returns is per sample (concatenated in order) except the
rates, which are merged from each shard's integer spike totals and simulated sample-steps with the
division simulate itself makes. A sweep's synaptic operations come from the same integer spike
totals and the input's event total, divided by N once (:func:`events_per_inference`).
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


def run_shard(graph, x, first: int, backend: str, options: dict) -> dict:
    """Samples ``x`` (indices ``first``.. of the whole run) on ``backend`` with simulate's
    ``options`` (``timesteps`` given): the per-sample results, per-layer spike totals and the
    sample-steps run."""
    from .targets import get_backend
    T = int(options["timesteps"])
    r = get_backend(backend)(graph, x, **({"first_sample": first} if first else {}), **options)   # 0: any backend
    stopped = not options.get("record") and options.get("record_steps") is None
    ran = _steps_run(r, T, stopped)
    sizes = {n: int(np.prod(graph.nodes[n]["shape"])) for n in r.rates}
    # rate = total / (ran * size) in float64: an exact integer total comes back by rounding
    totals = {n: int(round(rate * ran * sizes[n])) for n, rate in r.rates.items()}
    return dict(first=first, n=len(x), scores=r.scores, predictions=r.predictions, decision_time=r.decision_time,
                tied=r.tied, counts=r.counts, steps=r.steps, totals=totals, ran=ran)


def input_events(graph, x, first, T, encoding, seed) -> int:
    """The input's nonzero values over T steps for samples ``x`` (indices ``first``..): graded
    values with the constant encoding, spikes with Poisson (the streams of those indices)."""
    from .ir import input_node, op_of
    from .sim.encode import input_steps
    ids = range(first, first + len(x))
    inp = op_of(graph, input_node(graph))
    return sum(int(np.count_nonzero(s)) for s in input_steps(inp, x, T, encoding, seed, ids, "int"))


def events_per_inference(graph, totals, input_total, n) -> dict:
    """{source: mean events per inference} from whole-run integer totals: each neuron layer's
    spikes and the input's nonzero values, divided by N once (the rule of
    :func:`.report.analysis.events_per_inference`, which reads them from recorded counts)."""
    from .ir import input_node
    ev = {layer: t / n for layer, t in totals.items()}
    ev[input_node(graph)] = input_total / n
    return ev


def merge(graph, parts):
    """(SimResult of the whole run, {spiking layer: its whole-run spike total}) from its shards'
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
    return result, totals


def run_local(graph, source, backend: str, options: dict, batch: int):
    """:func:`merge` of the source's batches run here one after another (a streamed data set: one
    batch of x in memory at a time)."""
    return merge(graph, [run_shard(graph, x, first, backend, options) for first, x in source.batches(batch)])
