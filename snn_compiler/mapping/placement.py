"""Chip-aware core placement: which chip each core sits on, and its id there.

Spike links (source neuron -> destination core) between cores on different chips go through the
chip-to-chip links, far slower and costlier than a chip's mesh, so placement minimises the links
that cross chips, then the id distance of the rest:

1. Orders of the cores: layer by layer (tiles in their spatial order); reverse Cuthill-McKee
   of the core link graph (networkx), which interleaves a layer's tiles with the tiles of its
   producers and consumers that share their links; and stages of 2 to 8 consecutive layers
   whose cores are sorted by where their tiles lie in the map (a conv's links are local, so a
   chip then holds one region of several layers).
2. Each order is cut into chips. Layer order never splits a layer that fits one chip while the
   spare cores allow it (the layer starts on a fresh chip instead); the whole network on one chip
   when it fits one.
3. Refinement: a core moves to the chip holding most of its links when that chip has room and
   the move lowers the inter-chip links (repeated while anything improves, a few passes).

The placement with the fewest inter-chip links wins (ties: the shorter link distance). Ids are
``chip x cores_per_chip + rank on the chip``, so a chip may end with unused ids.
"""
from __future__ import annotations

import networkx as nx
import numpy as np

PASSES = 8
STAGES = (2, 3, 4, 6, 8)


def _csr(edges, n):
    a = np.array([k[0] for k in edges], np.int64)
    b = np.array([k[1] for k in edges], np.int64)
    w = np.array(list(edges.values()), np.int64)
    keep = a != b
    a, b, w = a[keep], b[keep], w[keep]
    src, dst, wt = np.r_[a, b], np.r_[b, a], np.r_[w, w]
    order = np.argsort(src, kind="stable")
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, src + 1, 1)
    return np.cumsum(indptr), dst[order], wt[order], (a, b, w)


def _cut_chips(order, units, per_chip, chips):
    """Chip of each core, cutting ``order`` into chips; a unit (a layer) that fits one chip but
    would straddle two starts on a fresh chip while spare cores remain."""
    n = len(order)
    spare = per_chip * chips - n
    chip = np.zeros(n, np.int64)
    slot = 0
    i = 0
    while i < n:
        j = i
        while j < n and units[order[j]] == units[order[i]]:
            j += 1
        size, room = j - i, per_chip - slot % per_chip
        if size <= per_chip and size > room and room <= spare and slot % per_chip:
            spare -= room
            slot += room
        for k in range(i, j):
            chip[order[k]] = slot // per_chip
            slot += 1
        i = j
    return chip


def _refine(chip, csr, per_chip, chips):
    """Move cores to the chip holding most of their links while that lowers the inter-chip links."""
    indptr, nbr, wt, _ = csr
    n = len(chip)
    w_to = np.zeros((n, chips), np.int64)         # link weight from each core to each chip
    rows = np.repeat(np.arange(n), np.diff(indptr))
    np.add.at(w_to, (rows, chip[nbr]), wt)
    load = np.bincount(chip, minlength=chips)
    for _ in range(PASSES):
        gain = w_to.max(axis=1) - w_to[np.arange(n), chip]
        moved = 0
        for i in np.argsort(-gain, kind="stable")[: int((gain > 0).sum())]:
            here = chip[i]
            row = w_to[i]
            best = int(np.argmax(np.where(load < per_chip, row, -1)))
            if row[best] <= row[here] or best == here:
                continue
            s, e = indptr[i], indptr[i + 1]
            w_to[nbr[s:e], here] -= wt[s:e]
            w_to[nbr[s:e], best] += wt[s:e]
            load[here] -= 1
            load[best] += 1
            chip[i] = best
            moved += 1
        if not moved:
            break
    return chip


def _ids(order, chip, per_chip):
    """Core ids: chip x per_chip + rank on the chip (ranks in ``order``)."""
    ids = np.zeros(len(order), np.int64)
    used = {}
    for c in order:
        k = int(chip[c])
        ids[c] = k * per_chip + used.get(k, 0)
        used[k] = used.get(k, 0) + 1
    return ids


def _score(ids, per_chip, ab):
    a, b, w = ab
    pa, pb = ids[a], ids[b]
    cross = pa // per_chip != pb // per_chip
    return int((w * cross).sum()), int((w * (np.abs(pa - pb) + per_chip * cross)).sum())


def place(edges, layers, per_chip, chips, where=None):
    """Core ids for cores ``0..n-1`` (``layers[i]``: core i's layer, cores numbered layer by layer;
    ``where[i]``: where its tile lies in its layer's map, 0..1) given the links ``edges``
    {(i, j): count}; returns ``(ids, stats)``."""
    n = len(layers)
    csr = _csr(edges, n)
    natural = np.arange(n)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(k for k in edges if k[0] != k[1])
    rcm = np.array(list(nx.utils.reverse_cuthill_mckee_ordering(g)), np.int64)
    if len(rcm) and rcm[0] != 0 and rcm[-1] == 0:
        rcm = rcm[::-1]      # start from the input side either way
    fits_one = n <= per_chip
    plain = _ids(natural, np.minimum(natural // per_chip, chips - 1), per_chip)
    base = {"layer order": plain}
    if not fits_one:
        index = {name: k for k, name in enumerate(dict.fromkeys(layers))}
        units = np.array([index[x] for x in layers], np.int64)
        base["layer order, chip-aware"] = _ids(natural, _cut_chips(natural, units, per_chip, chips), per_chip)
        rank = np.empty(n, np.int64)
        rank[rcm] = natural
        base["reverse-cuthill-mckee"] = _ids(rcm, rank // per_chip, per_chip)
        orders = {"layer order": natural, "layer order, chip-aware": natural, "reverse-cuthill-mckee": rcm}
        if where is not None:
            for k in STAGES:    # k consecutive layers side by side, by where their tiles lie
                name = f"{k}-layer stages by position"
                orders[name] = np.lexsort((units, np.asarray(where), units // k))
                rank = np.empty(n, np.int64)
                rank[orders[name]] = natural
                base[name] = _ids(orders[name], rank // per_chip, per_chip)
    else:
        base["reverse-cuthill-mckee"] = _ids(rcm, np.zeros(n, np.int64), per_chip)
        orders = {"layer order": natural, "reverse-cuthill-mckee": rcm}
    results = {}
    for name, ids in base.items():
        order = orders[name]
        results[name] = ids
        if not fits_one and chips > 1 and name != "layer order":
            chip = _refine(ids // per_chip, csr, per_chip, chips)
            results[name + " + refined"] = _ids(order, chip, per_chip)
    scored = {name: _score(ids, per_chip, csr[3]) for name, ids in results.items()}
    best = min(scored, key=lambda k: scored[k])
    ids = results[best]
    chip_of = ids // per_chip
    stats = {"placement": best, "inter_chip_links": scored[best][0], "link_distance": scored[best][1],
             "inter_chip_links_layer_order": scored["layer order"][0], "link_distance_layer_order": scored["layer order"][1],
             "chips_used": int(len(np.unique(chip_of))),
             "cores_per_chip_used": np.bincount(chip_of, minlength=int(chip_of.max()) + 1).tolist() if n else []}
    return ids, stats
