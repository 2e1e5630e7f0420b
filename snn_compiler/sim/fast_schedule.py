"""The event-driven engine's schedule, found once per plan: the order of its blocks, the cycles the
recurrent kernel runs whole, the Adds whose conv terms run as one product and those the neuron kernel
sums itself (:mod:`.fast_run` runs it)."""
from __future__ import annotations

import networkx as nx
import numpy as np

from ..ir import feedforward_view
from ..ir import ops as O
from . import stacked
from .fast import K


class Schedule:
    """What the graph's shape decides for every batch, found once per plan (:func:`schedule`):
    ``blocks`` [(nodes in step order, cyclic)] in an order where every block's inputs come from
    earlier blocks or itself (condensation order; ties broken by the nodes' names, so runs repeat);
    ``step_order`` a cyclic block's nodes in the order one step runs them (its Delays first);
    ``fused`` the cyclic blocks the recurrent kernel runs whole (:func:`_self_recurrent`); ``frames`` those of
    them whose currents from outside are one Dense of the Input (:func:`_dense_of_input`); ``fan_out`` the
    Dense each one's spikes feed, which the kernel runs too (:func:`_dense_reading`); ``summed`` the Adds
    the neuron kernel sums (:func:`_summed_by_neurons`); ``stacked`` the Adds whose conv terms run as one
    product (:mod:`.stacked`), ``stacked_terms`` those convs."""

    def __init__(self, fp):
        plan, g = fp.plan, fp.plan.graph
        cond = nx.condensation(g)
        comps = {}
        for n, c in cond.graph["mapping"].items():
            comps.setdefault(c, []).append(n)
        key = {c: min(ns) for c, ns in comps.items()}
        rank = {n: i for i, n in enumerate(plan.order)}
        self.blocks = [(sorted(comps[c], key=rank.__getitem__), len(comps[c]) > 1)
                       for c in nx.lexicographical_topological_sort(cond, key=lambda c: key[c])]
        ff = feedforward_view(g)
        self.step_order = {tuple(ns): list(nx.lexicographical_topological_sort(ff.subgraph(ns)))
                           for ns, cyclic in self.blocks if cyclic}
        out_node = next(n for n, op in plan.ops.items() if O.is_readout(op))
        self.fused = {key: f for key in self.step_order if (f := _self_recurrent(fp, key, out_node))}
        self.frames = {key: d for key, parts in self.fused.items() if (d := _dense_of_input(fp, parts))}
        self.fan_out = {key: d for key, parts in self.fused.items() if (d := _dense_reading(fp, parts))}
        cyclic = {n for ns, is_cyclic in self.blocks if is_cyclic for n in ns}
        # a residual Add read by one neuron layer alone is summed by the neuron kernel as it steps: its two
        # currents are read once and the sum is never written (ResNeXt-50, 32 images at T = 64: 0.73 s of
        # a 3.6 s run went to Adds)
        self.summed = {a for a in plan.order if _summed_by_neurons(fp, a, out_node, cyclic)}
        # convs into one Add run as one product over their spikes side by side (a concatenation's parts)
        self.stacked = stacked.find(fp, cyclic)
        self.stacked_terms = {c for convs in self.stacked.values() for c in convs}
        self.stacked_parts = {}   # add -> its stacked weights (stacked.stacked_parts), made at its first run


def schedule(fp) -> Schedule:
    """``fp``'s :class:`Schedule`, made at its first batch."""
    if getattr(fp, "schedule", None) is None:
        fp.schedule = Schedule(fp)
    return fp.schedule


def _self_recurrent(fp, nodes, out_node):
    """(delay, dense, add, layer) when a cyclic block is one vector layer reading its own spikes
    one step late (``layer -> Delay(1) -> Dense -> Add -> layer``; not the read-out): the fused
    kernel runs it, every step of a chunk in one call."""
    plan, g = fp.plan, fp.plan.graph
    ops = {n: plan.ops[n] for n in nodes}
    by = {kind: [n for n in nodes if isinstance(ops[n], kind)] for kind in (O.Delay, O.Dense, O.Add, O.NEURONS)}
    if len(nodes) != 4 or any(len(v) != 1 for v in by.values()):
        return None
    (d,), (r,), (a,), (n,) = by[O.Delay], by[O.Dense], by[O.Add], by[O.NEURONS]
    inputs = plan.inputs
    ok = (ops[d].steps == 1 and inputs[d] == [n] and inputs[r] == [d] and inputs[n] == [a] and r in inputs[a]
          and len(g.nodes[n]["shape"]) == 1 and n != out_node and g.out_degree(r) == 1 and g.out_degree(a) == 1
          and fp.ops[r][0] == "dense")
    return (d, r, a, n) if ok else None


def _dense_of_input(fp, parts):
    """The Dense whose currents are all a fused recurrent layer receives from outside its cycle, when that
    Dense reads the (vector) Input and nothing else reads either: a sequence's frames then go straight
    into the recurrent kernel (numba_kernels.recurrent_frames), never quantized nor scattered on their own."""
    plan, g = fp.plan, fp.plan.graph
    _, r, a, _ = parts
    others = [p for p in plan.inputs[a] if p != r]
    if len(others) != 1 or fp.ops[others[0]][0] != "dense":
        return None
    (dense,) = others
    (inp,) = plan.inputs[dense]
    ok = (isinstance(plan.ops[inp], O.Input) and len(g.nodes[inp]["shape"]) == 1 and g.out_degree(inp) == 1
          and g.out_degree(dense) == 1)
    return dense if ok else None


def _dense_reading(fp, parts):
    """A Dense reading a fused recurrent layer's spikes (outside the cycle; the first by name), which the
    recurrent kernel runs on its own scan of each step's spikes."""
    d, _, _, n = parts
    readers = sorted(o for o in fp.plan.graph.successors(n) if o != d and fp.ops.get(o, ("",))[0] == "dense")
    return readers[0] if readers else None


def _summed_by_neurons(fp, a, out_node, cyclic) -> bool:
    """Whether node ``a`` is an Add of two terms whose one reader is a neuron layer (not the read-out, not
    in a cycle, not so narrow that the kernel steps whole frames at once: numba_kernels.SMALL_LAYER)."""
    plan, g = fp.plan, fp.plan.graph
    if not isinstance(plan.ops[a], O.Add) or len(plan.inputs[a]) != 2 or a in cyclic or g.out_degree(a) != 1:
        return False
    (n,) = g.successors(a)
    return (isinstance(plan.ops[n], O.NEURONS) and plan.inputs[n] == [a] and n != out_node and n not in cyclic
            and K is not None and int(np.prod(g.nodes[n]["shape"])) >= K.SMALL_LAYER)
