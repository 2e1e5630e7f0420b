"""The partitioner: each neuron layer onto as few cores as the profile's limits allow.

Layers are placed from the output back to the input, so when a layer is cut its consumers are
already placed and each neuron's output-axon need (the number of distinct cores it must reach) is
known. Vector layers are cut into contiguous neuron ranges, greedily (each core takes as many
neurons as still fit: every resource only grows when a neuron is added, so greedy is optimal for
contiguous ranges) and then evened out when an even split fits as well. Conv layers are tiled by
:mod:`.conv_search` with the closed-form tile costs of :mod:`.tiles` (runs of the pixel-major
order, or channel groups times pixel runs or row bands); a conv layer fed twice by one source
layer (two ops sharing synapses) falls back to enumerating synapses per tile here. Among tilings
the one with the fewest cores plus the cores its sources need for the links (links / output-axon
limit) wins: thin tiles would push the producing layer onto more cores through its output axons.
Cores are then placed on chips by :mod:`.placement` (fewest spike links between chips).
"""
from __future__ import annotations

import numpy as np

from ..ir import ops as O
from .network import MappingError, build_net, gather_sources, run_bits, slice_neurons
from .conv_search import tile_conv_layer
from .tiles import ConvTiles, slice_spans
from .tiles import applies as closed_form
from .tiles import largest_fit as _largest
from .placement import place
from .profile import LIMITS, load_profile


BAND_SEARCH_SYNAPSES = 4_000_000


class _Layer:
    def __init__(self, net, name, offsets, profile, weight_bits, dest_count, bounds=None):
        self.net, self.name, self.offsets = net, name, offsets
        self.bounds = bounds or {"demand": {"synapse_bits": 0}, "cores": 1}
        self.profile, self.wb, self.dest = profile, weight_bits, dest_count
        self.shape = net.shapes[name]

    def evaluate(self, targets):
        """Resources of one core holding ``targets`` (in core order); also the source ids it reads."""
        n = len(targets)
        conns = self.net.conns[self.name]
        enc = self.profile.encoding
        if len(conns) == 1 and isinstance(conns[0].op, O.Dense) and conns[0].pattern is None:
            # all-to-all: every source is one axon with one run over all n targets
            n_in = conns[0].op.weight.shape[1]
            use = {"neurons": n, "input_axons": n_in,
                   "output_axons": int(self.dest[self.name][targets].sum()),
                   "synapse_bits": n_in * run_bits([n], enc, self.wb)}
            return use, np.arange(n_in, dtype=np.int64) + self.offsets[conns[0].src]
        keys = []
        for conn in conns:
            src, pos = gather_sources(conn, targets)
            keys.append((src + self.offsets[conn.src]) * n + pos)
        key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        if len(key) and key.max() < 2 ** 31:
            key = key.astype(np.int32)     # sorts about twice as fast
        key = np.sort(key).astype(np.int64)
        if len(keys) > 1 and len(key):   # two ops from one source onto one target share a synapse
            key = key[np.r_[True, key[1:] != key[:-1]]]
        gid = key // n
        new_src = np.ones(len(key), bool)
        new_src[1:] = gid[1:] != gid[:-1]
        new_run = new_src.copy()
        new_run[1:] |= np.diff(key) != 1
        starts = np.flatnonzero(new_run)
        lengths = np.diff(np.append(starts, len(key)))
        use = {"neurons": n, "input_axons": int(new_src.sum()),
               "output_axons": int(self.dest[self.name][targets].sum()),
               "synapse_bits": run_bits(lengths, enc, self.wb)}
        return use, gid[new_src]

    def fits(self, use):
        return all(use[r] <= self.profile.limit(r) for r in LIMITS)

    def worst(self, use):
        return max(LIMITS, key=lambda r: use[r] / self.profile.limit(r))


def _guess(layer, make, a, total):
    """Estimate how many positions from ``a`` fit one core, scaling a small sample linearly."""
    s = min(total - a, 16)
    use = layer.evaluate(make(a, a + s))[0]
    est = total - a
    for r in LIMITS:
        if use[r] > 0:
            est = min(est, int(layer.profile.limit(r) / (use[r] / s)))
    return max(1, est)


def _greedy(layer, make, total):
    """Cut positions 0..total-1 into consecutive chunks that fit; ``make(a, b)`` -> targets.

    Every resource grows with the chunk, so the largest fitting chunk is found by a search around
    a guess (the previous chunk's size, or a linear estimate)."""
    chunks, a, guess = [], 0, None
    while a < total:
        lo = _largest(lambda m: layer.fits(layer.evaluate(make(a, a + m))[0]), total - a,
                      guess or _guess(layer, make, a, total))
        if lo == 0:
            one = make(a, a + 1)
            use = layer.evaluate(one)[0]
            r = layer.worst(use)
            raise MappingError(f"layer {layer.name!r} does not fit a core of profile {layer.profile.name!r}: one "
                               f"neuron (flat index {int(one[0])}) needs {use[r]} {r} (limit {layer.profile.limit(r)})")
        chunks.append((a, a + lo))
        a, guess = a + lo, lo
    return chunks


def _even(layer, make, total, k):
    """An even split into k chunks, if every chunk fits (it spreads the load)."""
    edges = np.linspace(0, total, k + 1).round().astype(int)
    chunks = list(zip(edges[:-1].tolist(), edges[1:].tolist()))
    return chunks if all(layer.fits(layer.evaluate(make(a, b))[0]) for a, b in chunks) else None


def _cut(layer, make, total, even=True):
    chunks = _greedy(layer, make, total)
    if even and len(chunks) > 1:
        chunks = _even(layer, make, total, len(chunks)) or chunks
    return chunks


def _strips(shape, pc, band):
    """A tiling scheme as strips, each cut greedily along one axis: ``band`` None cuts each channel
    group's pixels (row-major); a band height cuts each channel group's row band along its
    columns (pixels column-major inside the core, so a receptive field's targets form long runs)."""
    c, h, w = shape
    per = c // pc
    out = []
    for g in range(pc):
        cs = [g * per, (g + 1) * per]
        if band is None:
            out.append((h * w, lambda a, b, cs=cs: {"c": cs, "p": [a, b]}))
        else:
            for r in range(0, h, band):
                rows = [r, min(r + band, h)]
                out.append((w, lambda a, b, cs=cs, rows=rows: {"c": cs, "h": rows, "w": [a, b], "order": "whc"}))
    return out


def _try(layer, strips, budget):
    slices = []
    for total, to_slice in strips:
        make = lambda a, b, f=to_slice: slice_neurons(layer.shape, f(a, b))
        slices += [to_slice(a, b) for a, b in _cut(layer, make, total, even=False)]
        if len(slices) > budget:
            return None
    return slices


def _partition_layer(layer, lb=1):
    shape = layer.shape
    if len(shape) != 3:
        total = int(np.prod(shape))
        return [{"n": [a, b]} for a, b in _cut(layer, lambda a, b: np.arange(a, b, dtype=np.int64), total)]
    c, h, w = shape
    # row bands: a second scheme for layers small enough that trying it is cheap
    synapses = layer.bounds["demand"]["synapse_bits"] / max(layer.profile.encoding.synapse_bits(layer.wb), 1)
    bands = [None] + ([b for b in (2, 3, 4, 8) if b < h] if synapses <= BAND_SEARCH_SYNAPSES else [])
    # channel splits only shrink a core's input axons for grouped convs; otherwise they are
    # the fallback when no whole-channel tiling fits
    grouped = any(getattr(conn.op, "groups", 1) > 1 for conn in layer.net.conns[layer.name])
    best, error = None, None
    for pc in [d for d in range(1, c + 1) if c % d == 0]:
        if best is not None and (pc >= len(best[0]) or len(best[0]) <= lb or not grouped):
            break
        for band in bands:
            if best is not None and len(best[0]) <= lb:
                break
            try:
                slices = _try(layer, _strips(shape, pc, band), int(best[1]) if best else float("inf"))
            except MappingError as e:
                error = error or e
                continue
            if slices is None:
                continue
            # cost: this layer's cores plus the cores its on-chip sources need to send the links
            # (each source neuron read by a core spends one of its core's output axons)
            first = layer.net.size(layer.net.input)
            links = sum(int((layer.evaluate(slice_neurons(shape, sl))[1] >= first).sum()) for sl in slices)
            cost = len(slices) + links / layer.profile.output_axons
            if best is None or cost < best[1]:
                best = (slices, cost)
    if best is None:
        raise error
    return best[0]


def _depthwise(net, name) -> bool:
    """Every connection into layer ``name`` reads one input channel per output channel (depthwise, or a
    max pool's comparisons: several outputs per channel)."""
    conns = net.conns[name]
    return bool(conns) and all(isinstance(c.op, O.Conv2d) and c.op.groups > 1 and c.op.weight.shape[1] == 1
                               for c in conns)


def _channel_major(layer):
    """A depthwise layer cut into runs of its C, H, W order, as (slice, use, source gids) per core, or
    None where no core holds one neuron: a source's targets are rows of its own channel(s), so they
    form a run per kernel row, where the pixel-major orders (channels interleaved) make every synapse
    a group of its own (MnasNet's 3x3 depthwise layers: three times the synapse memory)."""
    try:
        cuts = _cut(layer, lambda a, b: np.arange(a, b, dtype=np.int64), int(np.prod(layer.shape)), even=False)
    except MappingError:
        return None
    return [({"flat": [a, b]},) + layer.evaluate(np.arange(a, b, dtype=np.int64)) for a, b in cuts]


def _cost(layer, tiles, offsets):
    """A tiling's cores plus the cores its on-chip sources need to send the links (the conv search's measure)."""
    first = offsets[layer.net.layers[0]]
    return len(tiles) + sum(int((gids >= first).sum()) for _, _, gids in tiles) / layer.profile.output_axons


def _pixels(shape):
    """Positions of a layer's map (pixels of a conv map, neurons of a vector)."""
    return int(np.prod(shape[1:])) if len(shape) == 3 else int(shape[0])


def partition_graph(graph, profile, weight_bits: int, progress: bool = False) -> dict:
    """Map every neuron layer of an SNN-form graph onto cores; return the JSON-able core map
    (``progress``: a bar over the layers' neurons on stderr)."""
    from ..progress import bar
    from .bounds import layer_bounds
    profile = load_profile(profile)
    if profile.max_weight_bits is not None and weight_bits > profile.max_weight_bits:
        raise MappingError(f"{weight_bits}-bit weights exceed profile {profile.name!r}'s "
                           f"{profile.max_weight_bits}-bit synapses (resource weight_bits)")
    net = build_net(graph)
    offsets, off = {}, 0
    for n in [net.input] + net.layers:
        offsets[n] = off
        off += net.size(n)
    dest = {n: np.zeros(net.size(n), np.int64) for n in net.layers}
    bounds = layer_bounds(net, profile, weight_bits, offsets)
    need = 0
    for name in net.layers:   # fail fast when even the lower bound overflows the chips
        need += bounds[name]["cores"]
        if need > profile.max_cores:
            raise MappingError(
                f"layer {name!r} needs at least {bounds[name]['cores']} cores (its binding resource is "
                f"{bounds[name]['binding']}) but at most {max(profile.max_cores - need + bounds[name]['cores'], 0)} "
                f"of the {profile.chips} chip(s) x {profile.cores_per_chip} cores remain: the network needs at least "
                f"{sum(b['cores'] for b in bounds.values())} cores > {profile.max_cores} (resource: cores)")
    placed, tilings = {}, {}
    tiling = bar(sum(net.size(n) for n in net.layers), "map cores", unit="neuron", enabled=progress)
    for name in reversed(net.layers):
        tiling.update(net.size(name))
        layer = _Layer(net, name, offsets, profile, weight_bits, dest, bounds[name])
        tiles = []
        if closed_form(net, name):   # conv layers: closed-form tile costs, a search over tile shapes
            fast = ConvTiles(net, name, offsets, profile.encoding, weight_bits, offsets[net.layers[0]])
            for slc in tile_conv_layer(layer, offsets[net.layers[0]]):
                spans = slice_spans(layer.shape, slc)
                n, axons, bits, _ = fast.use(*spans)
                use = {"neurons": n, "input_axons": axons, "synapse_bits": bits,
                       "output_axons": int(dest[name][slice_neurons(layer.shape, slc)].sum())}
                tiles.append((slc, use, fast.gids(*spans)))
            tilings[name] = layer.tiling
            flat = _channel_major(layer) if _depthwise(net, name) else None
            if flat is not None and _cost(layer, flat, offsets) < _cost(layer, tiles, offsets):
                tiles, tilings[name] = flat, "channel-major runs"
        else:
            for slc in _partition_layer(layer, bounds[name]["cores"]):
                use, gids = layer.evaluate(slice_neurons(layer.shape, slc))
                tiles.append((slc, use, gids))
        placed[name] = tiles
        for src in {conn.src for conn in net.conns[name]} & set(dest):
            lo = offsets[src]    # each source neuron a core reads needs an output axon to that core
            for _, _, gids in tiles:
                dest[src][gids[(gids >= lo) & (gids < lo + net.size(src))] - lo] += 1
    tiling.close()
    for name in net.layers:   # recounted below with the link graph (same numbers)
        dest[name][:] = 0
    cores = []
    for name in net.layers:
        for slc, use, gids in placed[name]:
            cores.append({"layer": name, "slice": slc, "use": use, "gids": gids})
    owner = {n: np.zeros(net.size(n), np.int64) for n in net.layers}
    for i, c in enumerate(cores):
        owner[c["layer"]][slice_neurons(net.shapes[c["layer"]], c["slice"])] = i
    edges = {}
    for i, c in enumerate(cores):
        for src in {conn.src for conn in net.conns[c["layer"]]}:
            if src not in owner:
                continue
            lo = offsets[src]
            g = c["gids"]
            mine = g[(g >= lo) & (g < lo + net.size(src))] - lo
            dest[src][mine] += 1
            ids, counts = np.unique(owner[src][mine], return_counts=True)
            for j, k in zip(ids.tolist(), counts.tolist()):
                key = (min(i, j), max(i, j))
                edges[key] = edges.get(key, 0) + k
    for c in cores:   # output axons recomputed from the final, duplicate-free link counts
        c["use"]["output_axons"] = int(dest[c["layer"]][slice_neurons(net.shapes[c["layer"]], c["slice"])].sum())
        if c["use"]["output_axons"] > profile.output_axons:
            raise MappingError(f"layer {c['layer']!r}: a core needs {c['use']['output_axons']} output_axons "
                               f"(limit {profile.output_axons})")
    if len(cores) > profile.max_cores:
        used = 0
        for name in net.layers:
            k = len(placed[name])
            if used + k > profile.max_cores:
                b = bounds[name]
                raise MappingError(
                    f"layer {name!r} needs {k} cores (its binding resource is {b['binding']}) but only "
                    f"{max(profile.max_cores - used, 0)} of the {profile.chips} chip(s) x {profile.cores_per_chip} cores "
                    f"remain: the network needs {len(cores)} cores > {profile.max_cores} (resource: cores)")
            used += k
    where = [float(np.mean(slice_neurons(net.shapes[c["layer"]], c["slice"]) % _pixels(net.shapes[c["layer"]]))
                   / _pixels(net.shapes[c["layer"]])) for c in cores]
    ids, placed_stats = place(edges, [c["layer"] for c in cores], profile.cores_per_chip, profile.chips, where)
    out = []
    for i, c in enumerate(cores):
        cid = int(ids[i])
        out.append({"id": cid, "chip": cid // profile.cores_per_chip, "layer": c["layer"], "slice": c["slice"], **c["use"]})
    out.sort(key=lambda c: c["id"])
    layers = {name: sorted(int(ids[i]) for i, c in enumerate(cores) if c["layer"] == name) for name in net.layers}
    links = sum(edges.values())
    return {
        "profile": profile.name, "weight_bits": int(weight_bits),
        "limits": profile.limits(), "cores_per_chip": profile.cores_per_chip, "chips": profile.chips,
        "cores": out, "layers": layers,
        "lower_bound": int(sum(b["cores"] for b in bounds.values())),
        "layer_bounds": bounds, "tilings": tilings,
        "traffic": {"links": int(links), "inter_core_links": int(sum(w for (a, b), w in edges.items() if a != b)),
                    **placed_stats},
    }
