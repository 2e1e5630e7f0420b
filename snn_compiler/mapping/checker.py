"""An independent checker of core maps: recomputes every core's resources from the graph alone.

It shares no counting code with the partitioner: synapses are enumerated from the source side
(for each kernel offset, which output pixels each input pixel reaches) over whole layers at
once, then bucketed by the core that owns each target, and the word-based synapse memory is
summed per run with its own arithmetic. What it checks: every neuron of every layer sits on
exactly one core, each core holds one layer, core ids are unique, chips and cores per chip are
not exceeded, and each core is within each per-core limit of the profile.
"""
from __future__ import annotations

import numpy as np

from ..ir import ops as O
from .network import build_net, slice_neurons, sparse_dense
from .profile import LIMITS, load_profile


def _pairs(conn):
    """All synapses (source flat, target flat) of one connection, enumerated source-side."""
    op = conn.op
    if sparse_dense(op):  # only its nonzero weights are synapses (the rule network.py states)
        dst, src = np.nonzero(op.weight)
        return src.astype(np.int64), dst.astype(np.int64)
    if isinstance(op, O.Dense):
        n_out, n_in = op.weight.shape
        src = np.broadcast_to(np.arange(n_in, dtype=np.int64)[None, :], (n_out, n_in)).ravel()
        dst = np.broadcast_to(np.arange(n_out, dtype=np.int64)[:, None], (n_out, n_in)).ravel()
        return src, dst
    co, cg, kh, kw = op.weight.shape
    ci, hi, wi = conn.src_shape
    _, ho, wo = conn.dst_shape
    og = co // op.groups
    # channel pairs (input channel, output channel) within each group
    cin = np.concatenate([np.repeat(np.arange(g * cg, (g + 1) * cg), og) for g in range(op.groups)])
    cout = np.concatenate([np.tile(np.arange(g * og, (g + 1) * og), cg) for g in range(op.groups)])
    srcs, dsts = [], []
    for i in range(kh):
        y = np.arange(hi)
        ny = y * op.input_dilation[0] + op.padding[0] - i * op.dilation[0]
        oky = (ny % op.stride[0] == 0) & (ny // op.stride[0] >= 0) & (ny // op.stride[0] < ho)
        ys, oys = y[oky], ny[oky] // op.stride[0]
        for j in range(kw):
            x = np.arange(wi)
            nx_ = x * op.input_dilation[1] + op.padding[1] - j * op.dilation[1]
            okx = (nx_ % op.stride[1] == 0) & (nx_ // op.stride[1] >= 0) & (nx_ // op.stride[1] < wo)
            xs, oxs = x[okx], nx_[okx] // op.stride[1]
            if not len(ys) or not len(xs):
                continue
            s_pix = (ys[:, None] * wi + xs[None, :]).ravel()
            d_pix = (oys[:, None] * wo + oxs[None, :]).ravel()
            srcs.append((cin[:, None] * (hi * wi) + s_pix[None, :]).ravel())
            dsts.append((cout[:, None] * (ho * wo) + d_pix[None, :]).ravel())
    if not srcs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(srcs), np.concatenate(dsts)


def _group_bits(n, enc, wb):
    per = (wb if enc.weight_bits is None else enc.weight_bits) + enc.delay_bits + enc.tag_bits
    bits = enc.header_bits + n * per
    words = (bits + enc.word_bits - 1) // enc.word_bits
    return words * enc.word_bits


_BEST = {}


def _run_cost(length, enc, wb):
    """Cheapest cut of a run into groups; plain dynamic programming, memoised per encoding."""
    best = _BEST.setdefault((enc, wb), [0])
    while len(best) <= length:
        L = len(best)
        best.append(min(best[L - n] + _group_bits(n, enc, wb) for n in range(1, min(L, enc.group_max) + 1)))
    return best[length]


def _runs_bits(lengths, enc, wb):
    uniq, inv = np.unique(lengths, return_inverse=True)
    cost = np.array([_run_cost(int(L), enc, wb) for L in uniq], np.int64)
    return cost[inv.ravel()]


def check_core_map(graph, core_map: dict, profile=None, weight_bits=None, check_chips=True) -> dict:
    """Validate ``core_map`` against ``profile``; return ``{"ok", "violations", "cores": [usage rows]}``.

    Each usage row: id, chip, layer, neurons, input_axons, output_axons, synapse_bits and the
    list of that core's violations. Never raises for a map that does not fit; raises ValueError
    only when the map is malformed beyond counting.
    """
    profile = load_profile(profile if profile is not None else core_map.get("profile_spec", core_map.get("profile")))
    wb = int(weight_bits if weight_bits is not None else core_map["weight_bits"])
    enc = profile.encoding
    net = build_net(graph)
    cores = core_map["cores"]
    violations = []
    ids = [c["id"] for c in cores]
    if len(set(ids)) != len(ids):
        violations.append("core ids are not unique")
    owner, local = {}, {}
    for name in net.layers:
        owner[name] = np.full(net.size(name), -1, np.int64)
        local[name] = np.full(net.size(name), -1, np.int64)
    rows = []
    for k, c in enumerate(cores):
        row = {"id": c["id"], "chip": c["id"] // profile.cores_per_chip, "layer": c["layer"], "violations": []}
        rows.append(row)
        if c["layer"] not in owner:
            row["violations"].append(f"core {c['id']}: {c['layer']!r} is not a neuron layer")
            row["neurons"] = 0
            continue
        flat = slice_neurons(net.shapes[c["layer"]], c["slice"])
        if len(flat) and (flat.min() < 0 or flat.max() >= net.size(c["layer"])):
            raise ValueError(f"core {c['id']}: slice {c['slice']} lies outside layer {c['layer']!r}")
        if len(np.unique(flat)) != len(flat) or np.any(owner[c["layer"]][flat] >= 0):
            row["violations"].append(f"core {c['id']}: neurons of {c['layer']!r} placed twice")
        owner[c["layer"]][flat] = k
        local[c["layer"]][flat] = np.arange(len(flat))
        row["neurons"] = len(flat)
        if check_chips and "chip" in c and c["chip"] != row["chip"]:
            row["violations"].append(f"core {c['id']}: chip {c['chip']} but id {c['id']} is on chip {row['chip']}")
    for name in net.layers:
        missing = int((owner[name] < 0).sum())
        if missing:
            violations.append(f"layer {name!r}: {missing} neuron(s) on no core")
    n = len(cores)
    in_ax = np.zeros(n, np.int64)
    out_ax = np.zeros(n, np.int64)
    syn = np.zeros(n, np.int64)
    out_links = []   # (source layer, source flat, destination core) for output axons
    gbase, g = {}, 0
    for name in [net.input] + net.layers:
        gbase[name] = g
        g += net.size(name)
    lmax = max([r["neurons"] for r in rows] + [1]) + 1
    for name in net.layers:
        parts = []
        for conn in net.conns[name]:
            s, d = _pairs(conn)
            dcore, dloc = owner[name][d], local[name][d]
            ok = dcore >= 0
            parts.append(((dcore[ok] * g + gbase[conn.src] + s[ok]) * lmax + dloc[ok]))
        if not parts:
            continue
        key = np.sort(np.concatenate(parts))
        if not len(key):
            continue
        key = key[np.concatenate(([True], key[1:] != key[:-1]))]   # a shared (source, target) is one synapse
        axon = key // lmax                      # (core, source) pairs
        core = axon // g
        new_axon = np.r_[True, axon[1:] != axon[:-1]]
        np.add.at(in_ax, core[new_axon], 1)
        brk = np.r_[True, (np.diff(key) != 1) | new_axon[1:]]
        starts = np.flatnonzero(brk)
        lengths = np.diff(np.r_[starts, len(key)])
        np.add.at(syn, core[starts], _runs_bits(lengths, enc, wb))
        src_gid = axon[new_axon] % g
        out_links.append((core[new_axon], src_gid))
    if out_links:
        dcore = np.concatenate([a for a, _ in out_links])
        gid = np.concatenate([b for _, b in out_links])
        for name in net.layers:
            sel = (gid >= gbase[name]) & (gid < gbase[name] + net.size(name))
            src = gid[sel] - gbase[name]
            src_core = owner[name][src]
            good = src_core >= 0
            np.add.at(out_ax, src_core[good], 1)   # (source, destination core) pairs are unique here
    for k, row in enumerate(rows):
        row.update(input_axons=int(in_ax[k]), output_axons=int(out_ax[k]), synapse_bits=int(syn[k]))
        for r in LIMITS:
            if row[r] > profile.limit(r):
                row["violations"].append(f"core {row['id']} ({row['layer']}): {r} {row[r]} > limit {profile.limit(r)}")
        for cfg, lim in profile.configs:
            if cfg != "axon_types" and lim < 1:
                row["violations"].append(f"core {row['id']}: {cfg} limit {lim} < 1")
    if profile.max_weight_bits is not None and wb > profile.max_weight_bits:
        violations.append(f"{wb}-bit weights exceed the profile's {profile.max_weight_bits}-bit synapses")
    if check_chips:
        if n > profile.max_cores:
            violations.append(f"{n} cores > {profile.chips} chip(s) x {profile.cores_per_chip} cores")
        bad = [i for i in ids if not 0 <= i < profile.max_cores]
        if bad:
            violations.append(f"core ids {bad[:5]} outside 0..{profile.max_cores - 1}")
    all_v = violations + [v for r in rows for v in r["violations"]]
    return {"ok": not all_v, "violations": all_v, "cores": rows}
