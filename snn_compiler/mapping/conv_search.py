"""Tile shapes for a conv layer, searched with the closed-form tile costs of :mod:`.tiles`.

Two families, each cut greedily (a core takes the longest run that fits: every resource grows
with the run, so greedy gives the fewest runs):

- **pixel-major runs** (``{"q": [a, b]}``): the layer in pixel-major, channel-minor order, so a
  core may start and end inside a pixel. Cores fill up whatever a pixel's size: a 512-channel
  3x3 layer on a 4x4 map fits ~37 of an inner pixel's channels per Loihi 2 core; 14 groups of
  37 channels per pixel took 224 cores for ResNet-18's layers.7.relu1 (edge and corner pixels
  read 6 or 4 taps and leave their cores a third empty), pixel-major runs take 147 (bound 140);
- **channel groups x pixel runs or row bands**: the C channels cut into near-equal ranges of
  ``K``, times row-major pixel runs over the map or row bands of height ``b`` cut along their
  columns (column-major inside the core: a receptive field's targets form longer runs). The
  word rounding of the runs (``K x consecutive pixels`` synapses per source: a run of 29 8-bit
  synapses fills 4 words, 32 take 5) and the pixels left over per core decide the core count.
  Tried only where a whole pixel's channels fit one core; each (K, scheme) is costed on one strip
  (the first channel group; for bands, the full-height band holding the middle row), scaled,
  and the best two are cut exactly.

The tiling with the fewest cores plus the cores its sources need for the links (links /
output-axon limit) wins.
"""
from __future__ import annotations

import numpy as np

from .network import MappingError, slice_neurons
from .tiles import ConvTiles, largest_fit, slice_spans

CANDIDATE_KS = 4         # channel-group sizes tried per scheme (the largest that fit one pixel)
BANDS = (1, 2, 4)
EXACT = 2                # candidates cut exactly after screening


class _Fit:
    def __init__(self, layer, tiles):
        self.layer, self.tiles, self.prof = layer, tiles, layer.profile
        self.dest = layer.dest[layer.name]

    def use(self, slc):
        n, axons, bits, links = self.tiles.use(*slice_spans(self.layer.shape, slc))
        out = int(self.dest[slice_neurons(self.layer.shape, slc)].sum())
        return {"neurons": n, "input_axons": axons, "output_axons": out, "synapse_bits": bits}, links

    def ok(self, slc):
        pix, lo, hi = slice_spans(self.layer.shape, slc)
        if int((hi - lo).sum()) > self.prof.neurons:
            return False
        _, axons, bits, _ = self.tiles.use(pix, lo, hi)
        if axons > self.prof.input_axons or bits > self.prof.synapse_bits:
            return False
        return int(self.dest[slice_neurons(self.layer.shape, slc)].sum()) <= self.prof.output_axons


def _groups(c, k):
    edges = np.linspace(0, c, -(-c // k) + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def _strips(shape, cg, band):
    """(length, make(a, b) -> slice) per strip of one channel range."""
    _, h, w = shape
    if band is None:
        return [(h * w, lambda a, b: {"c": list(cg), "p": [a, b]})]
    return [(w, lambda a, b, r=r: {"c": list(cg), "h": [r, min(r + band, h)], "w": [a, b], "order": "whc"})
            for r in range(0, h, band)]


def _cut(fit, total, make, guess=1):
    chunks, a = [], 0
    while a < total:
        m = largest_fit(lambda m: fit.ok(make(a, a + m)), total - a, guess)
        if m == 0:
            return None
        chunks.append(make(a, a + m))
        a, guess = a + m, m
    return chunks


def _estimate(fit, shape, k, band):
    """Cores of the whole layer, scaled from one strip: the first channel group's pixel runs, or
    its full-height band holding the middle row."""
    c, h, _ = shape
    cg = _groups(c, k)
    strips = _strips(shape, cg[0], band)
    if band is None:
        chunks = _cut(fit, *strips[0])
        return None if chunks is None else len(cg) * len(chunks)
    i = (h // 2) // band
    if (i + 1) * band > h:
        i = max(i - 1, 0)
    chunks = _cut(fit, *strips[i])
    return None if chunks is None else len(cg) * len(chunks) * h / band


def _exact(fit, shape, k, band, budget):
    tiles = []
    for cg in _groups(shape[0], k):
        guess = 1
        for total, make in _strips(shape, cg, band):
            chunks = _cut(fit, total, make, guess)
            if chunks is None:
                return None
            tiles += chunks
            guess = max(1, (total // len(chunks)))
            if len(tiles) > budget:
                return None
    return tiles


def tile_conv_layer(layer, first_layer_gid):
    """The slices of a conv layer's cores (see the module docstring)."""
    c, h, w = layer.shape
    tiles = ConvTiles(layer.net, layer.name, layer.offsets, layer.profile.encoding, layer.wb, first_layer_gid)
    fit = _Fit(layer, tiles)
    centre = (h // 2) * w + w // 2
    ks = sorted({-(-c // g) for g in range(1, c + 1)}, reverse=True)
    fitting = [k for k in ks if fit.ok({"c": [0, k], "p": [centre, centre + 1]})]
    if not fitting:
        _refuse(layer, fit)
    # pixel-major runs first: cut over the whole layer, so its estimate is its exact tiling
    q = _cut(fit, c * h * w, lambda a, b: {"q": [a, b]})
    best = None
    if q is not None:
        links = sum(fit.use(s)[1] for s in q)
        best = (q, len(q) + links / layer.profile.output_axons, "pixel-major runs")
    scored = []
    # channel groups x pixel runs or row bands: worth trying only where a pixel's channels fit a
    # core (else every core holds part of one pixel, which the pixel-major runs already pack)
    if fit.ok({"c": [0, c], "p": [centre, centre + 1]}) or q is None:
        for k in fitting[:CANDIDATE_KS]:
            for band in [None] + [b for b in BANDS if b <= h]:
                est = _estimate(fit, layer.shape, k, band)
                if est is not None:
                    scored.append((est, k, band))
    scored.sort(key=lambda e: (e[0], -e[1]))
    # exact cuts of the best estimates (a candidate can still fail on a strip it was not
    # estimated on); the last resort, one channel per core along pixel runs, fits whenever
    # single neurons do
    tried = 0
    for _, k, band in scored + [(0, 1, None)]:
        if tried >= EXACT or (best is not None and (k, band) == (1, None)):
            break
        slices = _exact(fit, layer.shape, k, band, best[1] if best else float("inf"))
        if slices is None:
            continue
        tried += 1
        links = sum(fit.use(s)[1] for s in slices)
        cost = len(slices) + links / layer.profile.output_axons
        if best is None or cost < best[1]:
            best = (slices, cost, f"{k}-channel groups x " + ("pixel runs" if band is None else f"{band}-row bands"))
    if best is None:
        _refuse(layer, fit)
    layer.tiling = best[2]
    return best[0]


def _refuse(layer, fit):
    """No tiling fits: name a neuron that does not fit a core on its own (channel 0 of each pixel
    first: a pixel's channels mostly need the same)."""
    c, h, w = layer.shape
    for ch, p in [(0, p) for p in range(h * w)] + [(ch, p) for p in range(h * w) for ch in range(1, c)]:
        slc = {"c": [ch, ch + 1], "p": [p, p + 1]}
        if not fit.ok(slc):
            use = fit.use(slc)[0]
            r = layer.worst(use)
            raise MappingError(f"layer {layer.name!r} does not fit a core of profile {layer.profile.name!r}: one "
                               f"neuron (flat index {ch * h * w + p}) needs {use[r]} {r} (limit {layer.profile.limit(r)})")
    raise MappingError(f"layer {layer.name!r}: no tiling fits profile {layer.profile.name!r} (resource: cores)")
