"""Reference counts for a mapping: the lower bound and nengo-loihi's equal-chunk rule.

Lower bound (what ``lower_bound`` means everywhere in snnc): the sum over neuron layers of
``ceil(max over resources of demand / per-core limit)``, with the demands of a whole layer

- ``neurons``: its neurons;
- ``input_axons``: the distinct presynaptic sources of the whole layer (each core counts the
  sources it reads, and together the cores read all of them);
- ``output_axons``: for each neuron and each consumer layer that reads it, the destination cores
  it must reach (an output axon is a (neuron, destination core) pair): every core of a layer that
  reads it through a Dense (at least that layer's own bound, every core holding one of its
  targets), else at least ``ceil(targets / m)``, ``m`` the most of those targets one core can
  hold: the neuron limit, and the synapse memory over the smallest fan-in among the neuron's own
  targets at the lowest bits per synapse (a core stores all its targets' synapses);
- ``synapse_bits``: for each source, the least memory its synapses into the layer can take in
  the profile's encoding, whatever the split: at least one group (a 1-synapse group, e.g. one
  64-bit word on Loihi) and at least its synapse count times the lowest bits per synapse any
  group achieves (weight + delay + tag bits plus the header, word-rounded, at the best group
  size: 8.39 bits for 8-bit weights on Loihi).

Every core map within the limits uses at least this many cores, so it is a true lower bound.

Equal-chunk (nengo-loihi's ``split`` rule): a layer whose whole-layer demands are neurons,
input axons, ``neurons x consumer layers`` output axons and its synapse memory as one core gets
``ceil(max(demand / limit))`` equal contiguous chunks in flat (C, H, W) order; nengo-loihi does not
check the chunks, so :func:`equal_chunk` also reports whether the checker accepts them and how many
equal chunks it takes until it does.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import ops as O
from .network import best_bits_per_synapse, build_net, gather_sources, group_cost_bits, run_bits, run_cost_table
from .profile import LIMITS, load_profile


def _offsets(net):
    offsets, off = {}, 0
    for n in [net.input] + net.layers:
        offsets[n] = off
        off += net.size(n)
    return offsets


def _whole_layer(net, name, offsets, n):
    """Sorted, duplicate-free synapse keys ``source_gid * n + target`` of a whole layer."""
    targets = np.arange(n, dtype=np.int64)
    keys = []
    for c in net.conns[name]:
        src, pos = gather_sources(c, targets)
        keys.append((src + offsets[c.src]) * n + pos)
    if not keys:
        return np.zeros(0, np.int64)
    key = np.sort(np.concatenate(keys))
    if len(keys) > 1:
        key = key[np.r_[True, key[1:] != key[:-1]]]
    return key


def conv_fanout(conn) -> np.ndarray:
    """Synapses of one Conv2d connection per source neuron (flat C, H, W order), in closed form:
    ``out channels per group x rows that read the source's row x columns that read its column``
    (padding excluded, zero weights included: the same count as enumerating every synapse)."""
    op = conn.op
    co, cg, kh, kw = op.weight.shape
    ci, hi, wi = conn.src_shape
    _, ho, wo = conn.dst_shape
    (sh, sw), (ph, pw), (dh, dw) = op.stride, op.padding, op.dilation
    (ih, iw) = op.input_dilation
    per_pixel = np.outer(O.axis_reads(hi, ho, kh, sh, ph, dh, ih), O.axis_reads(wi, wo, kw, sw, pw, dw, iw))
    return np.broadcast_to((co // op.groups) * per_pixel, (ci, hi, wi)).reshape(-1)


def _conn_fanout(conn, n) -> np.ndarray:
    if isinstance(conn.op, O.Dense) and conn.pattern is not None:  # structurally sparse: its nonzero pairs
        return np.bincount(conn.pattern[1], minlength=conn.op.weight.shape[1]).astype(np.int64)
    if isinstance(conn.op, O.Dense):
        return np.full(conn.op.weight.shape[1], n, np.int64)
    return conv_fanout(conn)


def _fanouts(net, name, offsets):
    """Synapses per distinct source of a whole layer (sources without synapses left out)."""
    n = net.size(name)
    conns = net.conns[name]
    if len({c.src for c in conns}) == len(conns):
        # no two connections share a source layer, so no two share a synapse: per connection, in closed form
        k = np.concatenate([_conn_fanout(c, n) for c in conns]) if conns else np.zeros(0, np.int64)
        return k[k > 0]
    key = _whole_layer(net, name, offsets, n)
    _, k = np.unique(key // n, return_counts=True)
    return k


def _fanouts_enumerated(net, name, offsets):
    """:func:`_fanouts` by enumerating every synapse (the reference the closed form is tested against)."""
    n = net.size(name)
    key = _whole_layer(net, name, offsets, n)
    _, k = np.unique(key // n, return_counts=True)
    return k


def layer_bounds(net, profile, weight_bits, offsets=None) -> dict:
    """Per layer: demands, ratio per resource, binding resource and the layer's lower bound."""
    profile = load_profile(profile)
    offsets = offsets or _offsets(net)
    density = best_bits_per_synapse(profile.encoding, weight_bits)
    one = int(group_cost_bits(1, profile.encoding, weight_bits))
    per_core = profile.limit("neurons")
    room = (profile.limit("synapse_bits"), density)
    out = {}
    for name in reversed(net.layers):  # consumers first: a Dense reader's own bound is known (cycles aside)
        n = net.size(name)
        k = _fanouts(net, name, offsets)
        demand = {"neurons": n, "input_axons": int(len(k)),
                  "output_axons": int(_destination_cores(net, name, out, per_core, room).sum()),
                  "synapse_bits": int(np.ceil(np.maximum(k * density, one)).sum())}
        ratio = {r: demand[r] / profile.limit(r) for r in LIMITS}
        binding = max(LIMITS, key=lambda r: ratio[r])
        cores = max(1, math.ceil(ratio[binding] - 1e-12))
        held = _all_to_all_per_core(net, name, profile, weight_bits)
        if held and math.ceil(n / held) > cores:  # whole runs: a dense layer's memory per core, exactly
            binding, cores = "synapse_bits", math.ceil(n / held)
        out[name] = {"demand": demand, "binding": binding, "cores": cores}
    return {name: out[name] for name in net.layers}


def _all_to_all_per_core(net, name, profile, weight_bits):
    """For a layer fed by one all-to-all Dense only: the most of its neurons one core can hold. A core
    holding n of them stores, per source, one run of n synapses (every source reaches every target),
    which costs at least ``run_cost_table[n]`` (the cheapest cut into groups, word-rounded: above the
    best bits per synapse when n is not a good group size). None for any other layer, or one that no
    core holds (the partitioner names it)."""
    conns = net.conns[name]
    if len(conns) != 1 or not isinstance(conns[0].op, O.Dense) or conns[0].pattern is not None:
        return None
    n_in, limit = conns[0].op.weight.shape[1], profile.limit("neurons")
    cost = n_in * run_cost_table(profile.encoding, weight_bits, limit)[1:limit + 1]  # nondecreasing in n
    held = int(np.searchsorted(cost, profile.limit("synapse_bits"), side="right"))
    return held or None


def _axis_taps(n_in, n_out, k, s, p, d, di=1) -> np.ndarray:
    """Along one axis of a Conv2d: per output position, the kernel taps that read a real input."""
    pos = np.arange(n_out, dtype=np.int64)[:, None] * s - p + np.arange(k, dtype=np.int64)[None, :] * d
    return ((pos >= 0) & (pos < di * (n_in - 1) + 1) & (pos % di == 0)).sum(axis=1)


def target_fan_in(net, name) -> np.ndarray:
    """A lower bound on each target's synapses in layer ``name``: per output position (H, W) of a conv
    layer (the same for every channel), per neuron of a vector layer; summed over connections from
    distinct source layers (two from one source may share synapses: the larger of theirs counts)."""
    per_src = {}
    for conn in net.conns[name]:
        op = conn.op
        if isinstance(op, O.Dense):
            f = (np.diff(conn.pattern[0]) if conn.pattern is not None
                 else np.full(op.weight.shape[0], op.weight.shape[1], np.int64))
        else:
            co, cg, kh, kw = op.weight.shape
            (_, hi, wi), (_, ho, wo) = conn.src_shape, conn.dst_shape
            f = cg * np.outer(_axis_taps(hi, ho, kh, op.stride[0], op.padding[0], op.dilation[0], op.input_dilation[0]),
                              _axis_taps(wi, wo, kw, op.stride[1], op.padding[1], op.dilation[1], op.input_dilation[1]))
        per_src[conn.src] = f if conn.src not in per_src else np.maximum(per_src[conn.src], f)
    return sum(per_src.values()) if per_src else np.zeros(1, np.int64)


NO_TARGET = np.iinfo(np.int64).max


def _source_fan_in(conn, fan_in) -> np.ndarray:
    """Per source neuron of ``conn``: the smallest ``fan_in`` (:func:`target_fan_in` of its reader) among
    the targets it reaches through ``conn``, NO_TARGET where it reaches none."""
    op = conn.op
    if isinstance(op, O.Dense):  # a sparse one (an all-to-all Dense reaches every core instead)
        indptr, cols = conn.pattern
        out = np.full(op.weight.shape[1], NO_TARGET, np.int64)
        np.minimum.at(out, cols, np.repeat(fan_in, np.diff(indptr)))
        return out
    co, cg, kh, kw = op.weight.shape
    ci, hi, wi = conn.src_shape
    _, ho, wo = conn.dst_shape
    out = np.full((hi, wi), NO_TARGET, np.int64)
    for i in range(kh):  # input row y reaches output row (y * di + p - i * d) / s through kernel row i
        ny = np.arange(hi) * op.input_dilation[0] + op.padding[0] - i * op.dilation[0]
        oky = (ny % op.stride[0] == 0) & (ny // op.stride[0] >= 0) & (ny // op.stride[0] < ho)
        for j in range(kw):
            nx = np.arange(wi) * op.input_dilation[1] + op.padding[1] - j * op.dilation[1]
            okx = (nx % op.stride[1] == 0) & (nx // op.stride[1] >= 0) & (nx // op.stride[1] < wo)
            if oky.any() and okx.any():
                ys, xs = np.flatnonzero(oky), np.flatnonzero(okx)
                reached = fan_in[np.ix_(ny[oky] // op.stride[0], nx[okx] // op.stride[1])]
                out[np.ix_(ys, xs)] = np.minimum(out[np.ix_(ys, xs)], reached)
    return np.broadcast_to(out, (ci, hi, wi)).reshape(-1)


def _destination_cores(net, name, bounds, per_core, room=None) -> np.ndarray:
    """Per neuron of ``name``: the fewest destination cores its spikes must reach, summed over the layers
    that read it (``bounds``: the lower bounds found so far; a layer in a cycle with ``name`` is not
    among them and counts its neuron limit's share instead). ``room`` (synapse memory per core, lowest
    bits per synapse): a core holds at most memory / (bits x fan-in) targets, the fan-in being the
    smallest among the neuron's own targets, which caps how many of them one core takes."""
    need = np.zeros(net.size(name), np.int64)
    for reader in net.consumers[name]:
        targets = np.zeros(net.size(name), np.int64)  # per source neuron: its targets in `reader` (a bound)
        fewest = np.full(net.size(name), NO_TARGET, np.int64)  # the smallest fan-in among those targets
        fan_in = target_fan_in(net, reader) if room else None
        dense = False
        for conn in net.conns[reader]:
            if conn.src != name:
                continue
            if isinstance(conn.op, O.Dense) and conn.pattern is None:
                dense = True
            else:
                targets = np.maximum(targets, _conn_fanout(conn, net.size(reader)))
                if room:
                    fewest = np.minimum(fewest, _source_fan_in(conn, fan_in))
        if dense:  # it reaches every core of the reader, and each core holds at least one neuron
            cores = bounds[reader]["cores"] if reader in bounds else math.ceil(net.size(reader) / per_core)
            need += cores
        else:  # ceil: its targets fill at least this many cores, each holding at most `held` of them
            held = np.full(net.size(name), per_core, np.int64)
            if room:
                memory, bits = room
                some = (fewest > 0) & (fewest < NO_TARGET)
                held[some] = np.clip(np.floor(memory / (bits * fewest[some])), 1, per_core).astype(np.int64)
            need += -(-targets // held)
    return need


def lower_bound(graph, profile, weight_bits: int) -> int:
    net = build_net(graph)
    return int(sum(b["cores"] for b in layer_bounds(net, profile, weight_bits).values()))


def equal_chunk(graph, profile, weight_bits: int, fix: bool = True) -> dict:
    """nengo-loihi's rule: per layer ``k`` equal chunks; whether the checker accepts them, and (``fix``)
    the number of equal chunks each layer needs before every chunk fits."""
    from .checker import check_core_map
    profile = load_profile(profile)
    net = build_net(graph)
    offsets = _offsets(net)
    per_layer = {}
    for name in net.layers:
        n = net.size(name)
        key = _whole_layer(net, name, offsets, n)
        gid = key // n
        first = np.ones(len(key), bool)
        first[1:] = gid[1:] != gid[:-1]
        run = first.copy()
        run[1:] |= np.diff(key) != 1
        starts = np.flatnonzero(run)
        demand = {"neurons": n, "input_axons": int(first.sum()), "output_axons": n * len(net.consumers[name]),
                  "synapse_bits": run_bits(np.diff(np.append(starts, len(key))), profile.encoding, weight_bits)}
        per_layer[name] = max(1, math.ceil(max(demand[r] / profile.limit(r) for r in LIMITS) - 1e-12))

    def chunk_map(ks):
        cores = []
        for name in net.layers:
            for a, b in _chunks(net.size(name), ks[name]):
                # a flat C,H,W range ("flat") is not a pixel-range slice; the checker accepts it
                slc = {"flat": [a, b]} if len(net.shapes[name]) == 3 else {"n": [a, b]}
                cores.append({"id": len(cores), "layer": name, "slice": slc})
        return {"cores": cores, "weight_bits": weight_bits}

    rule = dict(per_layer)
    res = check_core_map(graph, chunk_map(rule), profile, weight_bits, check_chips=False)
    result = {"cores": sum(rule.values()), "layers": rule, "valid": res["ok"]}
    if fix:
        from .partitioner import _Layer
        ks = dict(rule)
        dest = {n: np.zeros(net.size(n), np.int64) for n in net.layers}
        for name in reversed(net.layers):   # consumers first, so output axons are known
            layer = _Layer(net, name, offsets, profile, weight_bits, dest)
            while True:
                uses = [layer.evaluate(np.arange(a, b, dtype=np.int64)) for a, b in _chunks(net.size(name), ks[name])]
                if all(layer.fits(u) for u, _ in uses) or ks[name] >= net.size(name):
                    break
                ks[name] += 1
            for src in {c.src for c in net.conns[name]} & set(dest):
                lo = offsets[src]
                for _, gids in uses:
                    dest[src][gids[(gids >= lo) & (gids < lo + net.size(src))] - lo] += 1
        res = check_core_map(graph, chunk_map(ks), profile, weight_bits, check_chips=False)
        result.update(fitted_cores=sum(ks.values()) if res["ok"] else None, fitted_layers=ks)
    return result


def _chunks(n, k):
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))
