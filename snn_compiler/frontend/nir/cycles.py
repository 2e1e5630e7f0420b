"""NIR import of recurrent graphs and Delay nodes: where a cycle reads the previous step.

NIR writes a recurrent layer as a cycle (``lif -> w_rec -> lif``) and the libraries that run
such graphs (Norse, snnTorch's RLeaky/RSynaptic equations) apply the recurrent weights to the
previous step's spikes. snnc's IR says that delay explicitly: each cycle is cut at one edge out
of a spiking neuron, which becomes ``neuron -> Delay(1) -> ...`` (:func:`feedback_edges`).
Which edge: the cycle's edge that runs back toward the input (its target no farther from the
Input than its source), moved back along the cycle to the nearest spiking neuron, whose spikes
are what a connection may delay (the ops between are linear, so delaying their input is the
same). A cycle through a NIR ``Delay`` node is cut at that node instead, which delays by its
own ``delay / dt`` whole steps (no extra step). A cycle with no spiking neuron and no Delay is
an algebraic loop, refused.

The importer lowers the graph in topological order without the cut edges, so each neuron first
gets its feed-forward inputs; :func:`close` then lowers what the cut edges feed, in the same
order, and adds it to the neurons' input sums, with each neuron's input gain folded in as it
was into its other inputs.
"""
from __future__ import annotations

import networkx as nx
import numpy as np

from ... import ir
from ...ir import ops as O
from . import layers
from .common import SPIKING, UNIT_TOL, NIRError

STEP_TOL = 1e-6   # a NIR Delay of k steps, in units of dt, is k to this (relative) tolerance


def feedback_edges(imp, d: nx.DiGraph, source: str) -> set:
    """The edges to cut so the NIR graph ``d`` becomes acyclic (see the module docstring)."""
    cut = {(a, b) for a, b in d.edges if imp.kind(b) == "Delay"}
    work = d.copy()
    work.remove_edges_from(cut)
    dist = nx.single_source_shortest_path_length(d, source)
    while not nx.is_directed_acyclic_graph(work):
        cycle = nx.find_cycle(work)
        back = max(range(len(cycle)), key=lambda i: dist.get(cycle[i][0], 0) - dist.get(cycle[i][1], 0))
        for k in range(len(cycle)):
            a, b = cycle[(back - k) % len(cycle)]
            if imp.kind(a) in SPIKING:
                cut.add((a, b))
                work.remove_edge(a, b)
                break
        else:
            path = " -> ".join(a for a, _ in cycle)
            raise NIRError(f"the NIR graph has a cycle without a spiking neuron or a Delay ({path}): a current that "
                           "feeds itself within one step has no timestep semantics")
    return cut


def delay_steps(imp, name) -> int:
    """The whole steps a NIR Delay node delays by: its ``delay`` (one value, in the units of dt)
    over dt; anything else is refused with the reason."""
    if imp.dt is None:
        imp.fail(name, "a Delay is given in time units: give the timestep (--dt)")
    d = np.asarray(getattr(imp.ng.nodes[name], "delay", None), np.float64).reshape(-1)
    if d.size == 0 or not np.all(np.isfinite(d)) or np.any(d != d[0]):
        imp.fail(name, f"its delay must be one finite value for all neurons (snnc delays a connection as a whole), got "
                       f"{d.tolist()[:4]}")
    k = d[0] / imp.dt
    steps = int(round(k))
    if steps < 1 or abs(k - steps) > STEP_TOL * max(1.0, k):
        imp.fail(name, f"its delay {d[0]:g} is {k:g} steps of dt {imp.dt:g}; snnc (and Loihi's axonal delays) "
                       "delay by whole steps >= 1")
    return steps


def close(imp, order, cut) -> None:
    """Lower what the cut edges feed (module docstring), after the feed-forward pass."""
    late, delayed = set(), {}

    def delay_of(src, steps=1):
        key = (src, steps)
        if key not in delayed:
            x = imp.map[src]
            if not (isinstance(ir.op_of(imp.g, x), O.Neuron) or isinstance(ir.op_of(imp.g, x), O.Input)):
                imp.fail(src, "its output is delayed (a recurrent connection or a Delay) but it sends currents, "
                              "not spikes; snnc delays the spikes of a neuron layer or the input")
            delayed[key] = imp.emit(f"{src}.delay" if steps == 1 else f"{src}.delay{steps}",
                                    O.Delay(shape=imp.shape(x), steps=steps), [x])
        return delayed[key]

    for name in order:
        preds = imp.preds(name)
        cut_in = [p for p in preds if (p, name) in cut]
        late_in = [p for p in preds if p in late]
        if (not cut_in and not late_in) or imp.kind(name) == "Output":  # (finish reads the Output's source)
            continue
        if imp.kind(name) == "Delay":
            (p,) = preds
            if p in late or p not in imp.map:
                imp.fail(name, "a Delay must read a neuron layer or the Input")
            imp.set(name, delay_of(p, delay_steps(imp, name)))
            late.add(name)
            continue
        ins = [delay_of(p) for p in cut_in] + [imp.map[p] for p in late_in]
        if name in imp.map and name in imp.gains:  # a neuron its feed-forward inputs made: add these to its sum
            attach(imp, name, ins)
        else:
            earlier = [imp.map[p] for p in preds if p in imp.map and p not in late and (p, name) not in cut]
            imp.lower(name, earlier + ins)
            late.add(name)


def attach(imp, name, ins) -> None:
    """Add the currents ``ins`` to neuron ``name``'s input sum, its input gain folded into them."""
    neuron = imp.map[name]
    syn = [layers.synapse(imp, x) for x in ins]
    for s in syn:
        if imp.shape(s) != imp.shape(neuron):
            imp.fail(name, f"a recurrent input has shape {imp.shape(s)}, the layer has {imp.shape(neuron)}")
        gain = imp.gains[name]
        if np.any(np.abs(gain - 1.0) > UNIT_TOL):
            layers.fold(imp, name, s, gain)
    (cur,) = ir.inputs_of(imp.g, neuron)
    if isinstance(ir.op_of(imp.g, cur), O.Add) and imp.g.out_degree(cur) == 1:  # its own sum: extend it
        for s in syn:
            imp.g.add_edge(s, cur, port=len(ir.inputs_of(imp.g, cur)))
        return
    imp.g.remove_edge(cur, neuron)
    total = imp.emit(f"{name}.sum", O.Add(), [cur] + syn)
    imp.g.add_edge(total, neuron, port=0)
