"""TrueNorth-style corelet export: an integer SNN as cores of 256 axons x 256 neurons.

Core model (what the JSON means; :mod:`.sim` runs it):

- A core has ``axons`` input axons, each of one of 4 types (``axon_types``), a binary
  ``crossbar`` (for each axon, the neurons it connects to) and up to 256 neurons. Each neuron has
  a signed integer weight per axon type (``weights``), a ``threshold``, a ``leak`` added every
  tick, a ``reset`` (``zero``: v = 0 after a spike; ``subtract``: v -= threshold) and ``v_init``.
  Per tick: ``v = clip(v + sum over spiking axons a connected to the neuron of weights[type(a)]
  + leak, -vmax, vmax)``; it spikes when ``v >= threshold``, then resets.
- Each neuron sends its spike to exactly one target: an axon of a core (``{"core", "axon"}``), an
  output pin (``{"output": k}``), or nothing (``null``, when no synapse reads it). A source read
  by several axons reaches them through *copy neurons* (role ``copy`` cores: threshold 1, weight
  1, reset zero), in a tree when there are more than 256.
- Connectors: ``input.pins[p]`` is the axon input element ``p`` (flat, C,H,W order) drives (or
  ``null``); a pin spike stands for the input value ``input.levels``. ``output.pins`` output
  neurons, one per element of the Output layer, counted as spikes.
- Ticks are the reference's logical timesteps: a spike reaches its target axon in the same
  tick, cores are listed (and run) in dependency order. On hardware with one tick per hop each
  core would run ``depth`` ticks late (the corelet records ``depth`` per core).

Mapping (what snnc does with what does not fit the core model directly):

- Weights: per layer, when its integer weights (times ``levels`` for the first layer) take at
  most 4 distinct nonzero values, each value is an axon type and a source gets one axon per
  value it uses (exact). Otherwise, when every weight is ``g * k`` with ``k`` in [-8, 7] (``g``
  the gcd; any 4-bit quantization, ``--bits 4`` or lower), the types are the bit planes
  ``g, 2g, 4g, -8g`` and a source gets one axon per set bit of its two's-complement weight
  (exact). Anything else is refused (TrueNorthError naming the layer): compile with ``--bits 4``.
- Fan-in: a neuron needing more than 256 axons is refused (TrueNorthError naming the layer and
  its axons): TrueNorth has no exact partial-sum accumulation across cores, so partial-sum cores
  (which would threshold partial sums) are not used. Layers are cut into cores of consecutive
  neurons (pixel-major, channel-minor for maps) while the union of their axons fits 256.
- Input: unsigned only (a signed input is refused); exact when every step's input value is 0 or
  ``levels`` (Poisson encoding, or constant encoding with ``--input-bits 1``).
- Membrane: ``membrane_bits`` of the compile (the reference clips at the same bound).
- Read-out: output neurons spike (``--readout count``); a membrane read-out has no corelet form.
"""
from __future__ import annotations

import json
import math
import os
from functools import reduce

import numpy as np

from snn_compiler.ir import ops as O
from snn_compiler.ir import op_of
from snn_compiler.ir.layers import layer_depths
from snn_compiler.ir.registers import signed_max
from snn_compiler.mapping.network import build_net, gather_sources

AXONS, NEURONS, TYPES = 256, 256, 4
FORMAT, VERSION = "snnc-corelet", 1


class TrueNorthError(ValueError):
    """The network does not fit the TrueNorth core model; the message names the layer."""


def _incoming(net, graph, name, levels):
    """Per target neuron: {(source, flat): integer weight} summed over the layer's connections."""
    n = net.size(name)
    tgt = np.arange(n, dtype=np.int64)
    rows = [dict() for _ in range(n)]
    for conn in net.conns[name]:
        w = O.effective_weights(conn.op).astype(np.int64)
        scale = levels if conn.src == net.input else 1
        if isinstance(conn.op, O.Dense):
            src = np.tile(np.arange(w.shape[1]), n)
            pos = np.repeat(tgt, w.shape[1])
            val = w.ravel()
        else:
            src, pos = gather_sources(conn, tgt)
            co, cg, kh, kw = w.shape
            _, hi, wi = conn.src_shape
            _, ho, wo = conn.dst_shape
            c = pos // (ho * wo)
            ci = src // (hi * wi)
            y, x = np.divmod(src % (hi * wi), wi)
            oy, ox = np.divmod(pos % (ho * wo), wo)
            i = (y * conn.op.input_dilation[0] - oy * conn.op.stride[0] + conn.op.padding[0]) // conn.op.dilation[0]
            j = (x * conn.op.input_dilation[1] - ox * conn.op.stride[1] + conn.op.padding[1]) // conn.op.dilation[1]
            val = w[c, ci - (c // (co // conn.op.groups)) * cg, i, j]
        for s, p, v in zip(src.tolist(), pos.tolist(), (val * scale).tolist()):
            key = (conn.src, s)
            rows[p][key] = rows[p].get(key, 0) + v
    return [{k: v for k, v in r.items() if v} for r in rows]


def _types(name, rows):
    """Axon-type weights and a decomposition ``value -> [types]`` for one layer (or refuse)."""
    values = sorted({v for r in rows for v in r.values()})
    if len(values) <= TYPES:
        weights = values + [0] * (TYPES - len(values))
        return weights, {v: [t] for t, v in enumerate(values)}, "values"
    g = reduce(math.gcd, (abs(v) for v in values))
    if all(-8 <= v // g <= 7 for v in values):
        weights = [g, 2 * g, 4 * g, -8 * g]
        dec = {v: [t for t in range(4) if ((v // g) & 15) >> t & 1] for v in values}
        return weights, dec, "bit-planes"
    raise TrueNorthError(
        f"layer {name!r}: its weights take {len(values)} distinct values in [{values[0]}, {values[-1]}] and are not "
        f"4-bit multiples of one step (gcd {g}); a TrueNorth core has {TYPES} axon types: compile with --bits 4 or lower")


def _order(shape):
    """Neuron order inside the layer: pixel-major, channel-minor for maps (compact receptive fields)."""
    if len(shape) == 3:
        c, h, w = shape
        return (np.arange(c)[None, :] * (h * w) + np.arange(h * w)[:, None]).ravel()
    return np.arange(int(np.prod(shape)))


def supports(op):
    """None, or why a TrueNorth neuron cannot run ``op`` (compile checks every node with it, and
    the export every layer, so a graph compiled for another target is refused the same way)."""
    if isinstance(op, O.Neuron) and op.leaky:
        return ("a TrueNorth neuron's leak is a constant per step, not a fraction of its membrane, so it cannot "
                "run a LIF layer: use --target reference or lava")
    if isinstance(op, O.Delay):
        return (f"a Delay of {op.steps} step{'s' * (op.steps != 1)} (a recurrent or delayed connection): TrueNorth's "
                "axons have delays of 1..15 ticks, but snnc's corelet exporter does not model them (its cores run "
                "a layer per tick, feed-forward), and a recurrent connection would route a core's output back "
                "into itself: use --target reference or lava")
    if isinstance(op, O.Neuron) and op.decays:
        return (f"a TrueNorth neuron has no synaptic current that decays (this layer's decay_u is {op.decay_u}, "
                "4096 = none), so it cannot run a current-based (CUBA) layer: use --target reference or lava")
    return None


def export_corelet(graph, config=None) -> dict:
    """The corelet of a quantized SNN-form graph, as a JSON-able dict (raises TrueNorthError)."""
    meta = graph.graph.get("snnc", {})
    if not meta.get("quantized"):
        raise TrueNorthError("the corelet needs a quantized graph (run the compile pipeline)")
    from snn_compiler.passes.compose_pools import without_pools
    graph = without_pools(graph)  # cores have no pooling synapse: a pool joins the next connection
    for n in graph:  # a graph compiled for another target: its Delays are refused as compile refuses them
        if isinstance(op_of(graph, n), O.Delay):
            raise TrueNorthError(f"layer {n!r}: {supports(op_of(graph, n))}")
    net = build_net(graph)
    inp = op_of(graph, net.input)
    if inp.signed:
        raise TrueNorthError(f"input {net.input!r} is signed; TrueNorth input pins carry unsigned spikes")
    levels = int(inp.levels)
    depth = layer_depths(graph)
    (membrane_bits,) = {op_of(graph, n).membrane_bits for n in net.layers}  # one register width per compile
    vmax = signed_max(membrane_bits)

    cores = []           # dicts with "_axon_keys" (source, flat, type) until routing
    layer_cores = {}
    for name in net.layers:
        op = op_of(graph, name)
        why = supports(op)
        if why:
            raise TrueNorthError(f"layer {name!r}: {why}")
        rows = _incoming(net, graph, name, levels)
        tw, dec, mode = _types(name, rows)
        bias = np.broadcast_to(op.bias, net.shapes[name]).ravel()
        layer_cores[name] = []
        cur = None
        for flat in _order(net.shapes[name]).tolist():
            axons = {(s, f, t) for (s, f), v in rows[flat].items() for t in dec[v]}
            if len(axons) > AXONS:
                raise TrueNorthError(f"layer {name!r}: neuron {flat} needs {len(axons)} axons (fan-in {len(rows[flat])} "
                                     f"sources, {mode} weights) > {AXONS} per core; partial-sum cores are not supported")
            if cur is None or len(cur["neurons"]) >= NEURONS or len(cur["_axons"] | axons) > AXONS:
                cur = {"layer": name, "role": "layer", "mode": mode, "depth": depth[name], "_axons": set(),
                       "neurons": [], "_rows": []}
                cores.append(cur)
                layer_cores[name].append(cur)
            cur["_axons"] |= axons
            cur["_rows"].append({(s, f, t) for (s, f), v in rows[flat].items() for t in dec[v]})
            cur["neurons"].append({"source": flat, "weights": list(tw), "threshold": int(op.threshold),
                                   "leak": int(bias[flat]), "reset": op.reset, "v_init": int(op.v_init),
                                   "target": None})
    # axon lists and crossbars
    readers = {}     # (source, flat) -> [(core dict, axon index)]
    for core in cores:
        keys = sorted(core.pop("_axons"), key=lambda k: (str(k[0]), k[1], k[2]))
        index = {k: a for a, k in enumerate(keys)}
        core["axons"] = len(keys)
        core["axon_types"] = [k[2] for k in keys]
        core["axon_sources"] = [[k[0], k[1]] for k in keys]
        xbar = [[] for _ in keys]
        for nidx, row in enumerate(core.pop("_rows")):
            for k in row:
                xbar[index[k]].append(nidx)
        core["crossbar"] = xbar
        for k in keys:
            readers.setdefault((k[0], k[1]), []).append((core, index[k]))
    # routing: one target per neuron / pin, copy-neuron trees for fan-out
    copies = {}      # source layer (or input) -> [copy cores], run right after that layer

    def route(src_layer, dests):
        """One destination standing for ``dests`` (adds copy neurons when there are several)."""
        while len(dests) > 1:
            groups = [dests[i:i + NEURONS] for i in range(0, len(dests), NEURONS)]
            nxt = []
            for grp in groups:
                pool = copies.setdefault(src_layer, [])
                core = pool[-1] if pool and pool[-1]["axons"] < AXONS and len(pool[-1]["neurons"]) + len(grp) <= NEURONS else None
                if core is None:
                    core = {"layer": src_layer, "role": "copy", "depth": depth[src_layer], "axons": 0, "axon_types": [],
                            "axon_sources": [], "crossbar": [], "neurons": []}
                    pool.append(core)
                a = core["axons"]
                core["axons"] += 1
                core["axon_types"].append(0)
                core["axon_sources"].append(["copy", a])
                first = len(core["neurons"])
                for d in grp:
                    core["neurons"].append({"source": None, "weights": [1, 0, 0, 0], "threshold": 1, "leak": 0,
                                            "reset": "zero", "v_init": 0, "target": d})
                core["crossbar"].append(list(range(first, first + len(grp))))
                nxt.append((core, a))
            dests = nxt
        return dests[0] if dests else None

    in_pins = []
    for f in range(net.size(net.input)):
        in_pins.append(route(net.input, readers.get((net.input, f), [])))
    out_name = net.layers[-1]
    for name in net.layers:
        for core in layer_cores[name]:
            for nrn in core["neurons"]:
                if name == out_name:
                    nrn["target"] = {"output": nrn["source"]}
                else:
                    nrn["target"] = route(name, readers.get((name, nrn["source"]), []))
    # final order: input copies, then per layer its cores and the copy cores of its outputs
    ordered = list(copies.get(net.input, []))
    for name in net.layers:
        ordered += layer_cores[name] + copies.get(name, [])
    ids = {id(c): i for i, c in enumerate(ordered)}

    def ref(t):
        if t is None or isinstance(t, dict):
            return t
        core, axon = t
        return {"core": ids[id(core)], "axon": axon}

    out_cores = []
    for i, c in enumerate(ordered):
        for nrn in c["neurons"]:
            nrn["target"] = ref(nrn["target"])
        out_cores.append({"id": i, "layer": c["layer"], "role": c["role"], "depth": c["depth"],
                          "axons": c["axons"], "axon_types": c["axon_types"], "axon_sources": c["axon_sources"],
                          "crossbar": c["crossbar"], "neurons": c["neurons"]})
    return {
        "format": FORMAT, "version": VERSION,
        "semantics": "logical ticks: zero-delay routing, cores run in list order (see backends/truenorth/corelet.py)",
        "membrane_bits": membrane_bits, "v_max": vmax,
        "limits": {"axons": AXONS, "neurons": NEURONS, "axon_types": TYPES},
        "input": {"node": net.input, "shape": list(net.shapes[net.input]), "levels": levels,
                  "pins": [ref(p) for p in in_pins]},
        "output": {"layer": out_name, "shape": list(net.shapes[out_name]), "pins": net.size(out_name)},
        "layers": {name: [ids[id(c)] for c in layer_cores[name]] for name in net.layers},
        "weight_modes": {name: layer_cores[name][0]["mode"] for name in net.layers if layer_cores[name]},
        "cores": out_cores,
    }


def corelet_path(out_path) -> str:
    """``out_path`` ending in ``.json`` as is; otherwise (e.g. the artifact's ``.snnc`` path)
    ``<stem>.corelet.json`` next to it."""
    out_path = os.fspath(out_path)
    return out_path if out_path.endswith(".json") else os.path.splitext(out_path)[0] + ".corelet.json"


def corelet_bytes(graph, config) -> bytes:
    return json.dumps(export_corelet(graph, config), separators=(",", ":")).encode()
