"""Building, walking and verifying IR graphs (networkx DiGraph; works on networkx 2.8 and 3.x)."""
from __future__ import annotations

import weakref

import networkx as nx
import numpy as np

from . import ops as O
from .neuron import RESETS
from .routing import JOIN_KINDS


class IRError(ValueError):
    """The graph breaks an IR invariant; the message names the node."""


def new_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    g.graph["snnc"] = {}
    return g


def add_op(g: nx.DiGraph, name: str, op, inputs=()) -> str:
    """Add node ``name`` computing ``op`` on ``inputs`` (node names, in port order)."""
    if name in g:
        raise IRError(f"duplicate node name {name!r}")
    g.add_node(name, op=op)
    for port, src in enumerate(inputs):
        g.add_edge(src, name, port=port)
    return name


def unique_name(g: nx.DiGraph, base: str) -> str:
    name, i = base, 1
    while name in g:
        name, i = f"{base}_{i}", i + 1
    return name


def op_of(g: nx.DiGraph, name: str):
    return g.nodes[name]["op"]


def inputs_of(g: nx.DiGraph, name: str) -> list:
    """Predecessors of ``name`` in port order."""
    return [s for s, _ in sorted(((s, g.edges[s, name]["port"]) for s in g.predecessors(name)), key=lambda p: p[1])]


def feedforward_view(g: nx.DiGraph) -> nx.DiGraph:
    """``g`` without the edges into Delay nodes: acyclic in a valid graph (every cycle passes
    through a Delay), the order in which one timestep runs (a Delay sends what it stored)."""
    delayed = [(s, d) for d in g if isinstance(g.nodes[d].get("op"), O.Delay) for s in g.predecessors(d)]
    return nx.restricted_view(g, [], delayed) if delayed else g


def topo_order(g: nx.DiGraph) -> list:
    """The order one timestep runs the nodes in: topological over :func:`feedforward_view`.
    Sorted tie-break keeps the order (and so any output) independent of insertion history."""
    return list(nx.lexicographical_topological_sort(feedforward_view(g)))


def is_recurrent(g: nx.DiGraph) -> bool:
    """Whether the graph has a cycle (through a Delay: a recurrent connection)."""
    return not nx.is_directed_acyclic_graph(g)


def input_node(g: nx.DiGraph) -> str:
    return next(n for n in g if isinstance(op_of(g, n), O.Input))


def output_node(g: nx.DiGraph) -> str:
    return next(n for n in g if O.is_readout(op_of(g, n)))


def add_readout(g: nx.DiGraph, name: str) -> str:
    """Give the network ending at ``name`` its read-out; returns the read-out's node. A trained
    spiking layer (LIF: its spikes are the output) is the read-out itself; anything else (a
    current, or a converted ReLU, which the read-out integrates) feeds a new Output node."""
    op = op_of(g, name)
    if isinstance(op, O.Neuron) and op.spike_value is not None:
        op.readout = True
        return name
    return add_op(g, unique_name(g, "output"), O.Output(), [name])


def splice_out(g: nx.DiGraph, name: str) -> None:
    """Remove a single-input node, wiring its input to each of its consumers."""
    (src,) = inputs_of(g, name)
    for dst in list(g.successors(name)):
        port = g.edges[name, dst]["port"]
        g.add_edge(src, dst, port=port)
    g.remove_node(name)


def insert_after(g: nx.DiGraph, name: str, new_name: str, op) -> str:
    """Insert ``op`` between ``name`` and all its consumers."""
    consumers = [(d, g.edges[name, d]["port"]) for d in g.successors(name)]
    for d, _ in consumers:
        g.remove_edge(name, d)
    add_op(g, new_name, op, [name])
    for d, port in consumers:
        g.add_edge(new_name, d, port=port)
    return new_name


def sources_through(g: nx.DiGraph, name: str, kinds) -> list:
    """Nodes reached walking backwards from ``name`` through ops of ``kinds``."""
    found = []
    for src in inputs_of(g, name):
        if isinstance(op_of(g, src), kinds):
            found.extend(sources_through(g, src, kinds))
        else:
            found.append(src)
    return found


def _arity_ok(op, n: int) -> bool:
    if isinstance(op, O.Input):
        return n == 0
    if isinstance(op, (O.Add,) + JOIN_KINDS):
        return n >= 2
    return n == 1


def verify(g: nx.DiGraph) -> None:
    """Check every invariant of the IR and fill in each node's ``shape``; raise IRError naming the node.

    Stages are read from ``g.graph['snnc']``: after ``normalized`` every neuron has a scale; after
    ``quantized`` the graph is in SNN form with integer fields everywhere the integer SNN reads.
    """
    ff = feedforward_view(g)
    try:  # any topological order will do for checking (topo_order's sorted one costs a third of verify)
        order = list(nx.topological_sort(ff))
    except nx.NetworkXUnfeasible:
        cycle = " -> ".join(a for a, _ in nx.find_cycle(ff))
        raise IRError(f"the graph has a cycle without a Delay ({cycle}): a recurrent connection must read the "
                      "previous step") from None
    ins = [n for n in g if isinstance(g.nodes[n].get("op"), O.Input)]
    outs = [n for n in g if O.is_readout(g.nodes[n].get("op"))]
    if len(ins) != 1 or len(outs) != 1:
        raise IRError(f"need exactly one Input and one Output node, found {len(ins)} and {len(outs)}")
    for n in order:
        op = g.nodes[n].get("op")
        if not isinstance(op, O.OP_KINDS):
            raise IRError(f"node {n!r}: {op!r} is not an IR op")
        preds = inputs_of(g, n)
        if sorted(g.edges[p, n]["port"] for p in preds) != list(range(len(preds))):
            raise IRError(f"node {n!r}: input ports are not 0..{len(preds) - 1}")
        if not _arity_ok(op, len(preds)):
            raise IRError(f"node {n!r}: {O.kind(op)} cannot take {len(preds)} inputs")
        if g.out_degree(n) == 0 and not O.is_readout(op):
            raise IRError(f"node {n!r}: {O.kind(op)} output is not used")
        try:  # a Delay declares its shape: its source may come later in the order (a cycle)
            g.nodes[n]["shape"] = O.infer_shape(op, [] if isinstance(op, O.Delay) else
                                                [g.nodes[p]["shape"] for p in preds])
        except ValueError as e:
            raise IRError(f"node {n!r}: {e}") from None
        _verify_fields(g, n, op)
    for n in (n for n in g if isinstance(g.nodes[n]["op"], O.Delay)):  # their sources have shapes now
        (src,) = inputs_of(g, n)
        if tuple(g.nodes[src]["shape"]) != tuple(g.nodes[n]["shape"]):
            raise IRError(f"node {n!r}: Delay declares shape {tuple(g.nodes[n]['shape'])}, its source {src!r} sends "
                          f"{tuple(g.nodes[src]['shape'])}")


# Float arrays already found finite, by identity (a weak reference tells a live array from a new one
# at a reused address): verify runs after every pass over arrays that passes share, never write into
# (compile.working_copy), so each is scanned once instead of twenty times (VGG-11: 2.4 s of its compile).
_FINITE = {}


def _finite(arr) -> bool:
    seen = _FINITE.get(id(arr))
    if seen is not None and seen() is arr:
        return True
    if not np.isfinite(arr).all():
        return False
    if arr.size >= 4096:  # (small arrays cost less to scan than to remember)
        _FINITE[id(arr)] = weakref.ref(arr, lambda _, key=id(arr): _FINITE.pop(key, None))
    return True


def _verify_fields(g, n, op) -> None:
    state = g.graph.get("snnc", {})
    for name, arr in O.arrays_of(op).items():
        if arr.dtype.kind == "f" and not _finite(arr):  # (integers are always finite)
            raise IRError(f"node {n!r}: {name} has non-finite values")
    if isinstance(op, O.Dense) and op.bias is not None and op.bias.shape != (op.weight.shape[0],):
        raise IRError(f"node {n!r}: bias shape {op.bias.shape} does not match weight {op.weight.shape}")
    if isinstance(op, O.Conv2d) and op.bias is not None and op.bias.shape != (op.weight.shape[0],):
        raise IRError(f"node {n!r}: bias shape {op.bias.shape} does not match weight {op.weight.shape}")
    if isinstance(op, O.Neuron) and op.reset not in RESETS:
        raise IRError(f"node {n!r}: reset must be one of {RESETS}, got {op.reset!r}")
    if state.get("normalized"):
        if isinstance(op, (O.BatchNorm, O.Affine)):
            raise IRError(f"node {n!r}: {O.kind(op)} should have been folded before normalization")
        if isinstance(op, O.NEURONS) and not (op.scale and op.scale > 0):
            raise IRError(f"node {n!r}: neuron has no positive scale")
        if isinstance(op, O.Input) and not (op.scale and op.scale > 0):
            raise IRError(f"node {n!r}: input has no positive scale")
    if state.get("quantized"):
        if isinstance(op, O.WEIGHTED):
            w = op.weight_int
            if w is None or w.shape != op.weight.shape or w.dtype.kind != "i":
                raise IRError(f"node {n!r}: missing or malformed integer weights")
            if not isinstance(op.weight_exp, (int, np.integer)) or not 0 <= op.weight_exp < 32:
                raise IRError(f"node {n!r}: weight_exp must be an integer in 0..31, got {op.weight_exp!r}")
        if isinstance(op, O.NEURONS):
            if not isinstance(op.threshold, (int, np.integer)) or op.threshold < 1:
                raise IRError(f"node {n!r}: integer threshold must be >= 1, got {op.threshold!r}")
            if op.bias is None or op.bias.dtype.kind != "i" or not isinstance(op.v_init, (int, np.integer)):
                raise IRError(f"node {n!r}: missing integer bias or v_init")
            if op.leaky and (op.decay_v is None or op.decay_v.dtype.kind != "i" or op.decay_v.shape != op.beta.shape):
                raise IRError(f"node {n!r}: a leaky layer needs integer decay_v shaped like its beta {op.beta.shape}")
            try:
                np.broadcast_to(op.bias, g.nodes[n]["shape"])
            except ValueError:
                raise IRError(f"node {n!r}: bias {op.bias.shape} does not broadcast to {g.nodes[n]['shape']}") from None
