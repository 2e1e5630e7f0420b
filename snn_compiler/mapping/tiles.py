"""Closed-form resources of a conv tile: a channel range times a list of pixels (in core order).

A core holding output channels ``c0..c1-1`` at pixels ``pix`` (pixel-major, channel-minor) sees,
for each kernel tap, which source pixel feeds which of its pixels. That pixel-level picture is
the same for every source channel of a channel group, so the core's synapse runs, input axons
and links follow from it without enumerating synapses: a source channel of group ``g`` reaches
the ``k`` output channels of ``g`` inside the tile at every pixel it reaches; when ``k`` is the
whole channel range, reached pixels that are consecutive in the core merge into one run of
``k x pixels`` synapses, otherwise each reached pixel is a run of ``k``. Valid when every
connection is a Conv2d and no two connections share a source layer (two ops from one source
onto one target share a synapse; the partitioner enumerates those). Counts equal the checker's
enumeration (tests/test_mapping.py checks every core of generated networks).
"""
from __future__ import annotations

import numpy as np

from ..ir import ops as O
from .network import run_cost_table


def applies(net, name) -> bool:
    conns = net.conns[name]
    # (an input-dilated conv's tap pattern is not a window sliding over its source: the generic mapper)
    return (len(net.shapes[name]) == 3 and bool(conns)
            and all(isinstance(c.op, O.Conv2d) and not c.op.dilates_input for c in conns)
            and len({c.src for c in conns}) == len(conns))


def slice_spans(shape, slc):
    """A conv slice as ``(pixels, lo, hi)`` in core order: position j holds channels lo[j]..hi[j]-1
    of pixel pixels[j] (a rectangle slice: the same channels at every pixel; a ``"q"`` run of the
    pixel-major order: a partial first and last pixel)."""
    c, h, w = shape
    if "q" in slc:
        a, b = slc["q"]
        p0, p1 = a // c, (b - 1) // c
        pix = np.arange(p0, p1 + 1, dtype=np.int64)
        lo, hi = np.zeros(len(pix), np.int64), np.full(len(pix), c, np.int64)
        lo[0], hi[-1] = a - p0 * c, b - p1 * c
        return pix, lo, hi
    if "p" in slc:
        pix = np.arange(*slc["p"], dtype=np.int64)
    else:
        rows = np.arange(*slc["h"], dtype=np.int64)
        cols = np.arange(*slc["w"], dtype=np.int64)
        if slc.get("order", "hwc") == "whc":
            pix = (rows[None, :] * w + cols[:, None]).ravel()
        else:
            pix = (rows[:, None] * w + cols[None, :]).ravel()
    c0, c1 = slc["c"]
    return pix, np.full(len(pix), c0, np.int64), np.full(len(pix), c1, np.int64)


class ConvTiles:
    """Resources of tiles of one conv layer (see the module docstring)."""

    def __init__(self, net, name, offsets, enc, weight_bits, first_layer_gid):
        self.enc, self.wb = enc, weight_bits
        self.shape = net.shapes[name]
        self.first = first_layer_gid          # gids below this are the (off-chip) input
        self.conns = []
        for c in net.conns[name]:
            op = c.op
            co, cg, kh, kw = op.weight.shape
            self.conns.append(dict(cg=cg, og=co // op.groups, k=(kh, kw), s=op.stride, p=op.padding, d=op.dilation,
                                   src_hw=c.src_shape[1:], off=offsets[c.src], groups=op.groups))
        self._cache = {}

    def _reach(self, c, pix):
        """Sorted (source pixel, position) pairs of one connection for pixels ``pix``, with where the
        source pixels change and where runs of consecutive positions start (cached: a greedy
        search tries many tiles on the same pixels)."""
        key = (c["off"], pix.tobytes())
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        _, ho, wo = self.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = c["k"], c["s"], c["p"], c["d"]
        hi, wi = c["src_hw"]
        oy, ox = np.divmod(pix, wo)
        ys = oy[:, None] * sh - ph + np.arange(kh)[None, :] * dh                     # (P, kh)
        xs = ox[:, None] * sw - pw + np.arange(kw)[None, :] * dw                     # (P, kw)
        ok = ((ys >= 0) & (ys < hi))[:, :, None] & ((xs >= 0) & (xs < wi))[:, None, :]
        n = len(pix)
        key_pairs = np.sort(((ys[:, :, None] * wi + xs[:, None, :]) * n + np.arange(n)[:, None, None])[ok])
        spix, pos = np.divmod(key_pairs, n)
        new_src = np.empty(len(spix), bool)
        brk = np.empty(len(spix), bool)
        if len(spix):
            new_src[0] = brk[0] = True
            np.not_equal(spix[1:], spix[:-1], out=new_src[1:])
            brk[1:] = new_src[1:] | (pos[1:] != pos[:-1] + 1)
        out = (spix, pos, new_src, np.flatnonzero(brk))
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = out
        return out

    def _touched(self, c, spix, pos, new_src, lo, hi):
        """(distinct source pixels, bool matrix source pixel x group: a source channel of the group
        reaches the tile through that pixel)."""
        og = c["og"]
        row = np.cumsum(new_src) - 1
        mark = np.zeros((int(row[-1]) + 1, c["groups"] + 1), np.int64)
        np.add.at(mark, (row, lo[pos] // og), 1)
        np.add.at(mark, (row, (hi[pos] - 1) // og + 1), -1)
        return spix[new_src], np.cumsum(mark, axis=1)[:, :-1] > 0

    def use(self, pix, lo, hi):
        """``(neurons, input_axons, synapse_bits, links)`` of a tile (:func:`slice_spans`); links:
        input axons fed by on-chip layers (each spends an output axon of its source's core)."""
        width = hi - lo
        axons = bits = links = 0
        for c in self.conns:
            spix, pos, new_src, starts = self._reach(c, pix)
            if not len(spix):
                continue
            og, cg = c["og"], c["cg"]
            g_lo, g_hi = lo // og, (hi - 1) // og
            if c["groups"] == 1 or (g_lo[0] == g_hi[0] and np.all(g_lo == g_lo[0]) and np.all(g_hi == g_lo[0])):
                # one group holds every span: a source channel reaches all of them, and reached
                # pixels consecutive in the core merge into one run
                lengths = np.add.reduceat(width[pos], starts)
                t = run_cost_table(self.enc, self.wb, int(lengths.max()))
                b = cg * int(t[lengths].sum())
                a = cg * int(np.count_nonzero(new_src))
            else:
                # each reached pixel holds one run per group: the group's channels in its span
                per_pos = np.zeros(len(pix), np.int64)
                t = run_cost_table(self.enc, self.wb, int(og))
                for span in set(zip(lo.tolist(), hi.tolist())):
                    gs = np.arange(span[0] // og, (span[1] - 1) // og + 1)
                    k = np.minimum(span[1], (gs + 1) * og) - np.maximum(span[0], gs * og)
                    per_pos[(lo == span[0]) & (hi == span[1])] = int(t[k].sum())
                b = cg * int(per_pos[pos].sum())
                a = cg * int(self._touched(c, spix, pos, new_src, lo, hi)[1].sum())
            axons += a
            bits += b
            if c["off"] >= self.first:
                links += a
        return int(width.sum()), axons, bits, links

    def gids(self, pix, lo, hi):
        """The sorted source gids (one per input axon) of a tile."""
        out = []
        for c in self.conns:
            spix, pos, new_src, _ = self._reach(c, pix)
            if not len(spix):
                continue
            src, touched = self._touched(c, spix, pos, new_src, lo, hi)
            r, g = np.nonzero(touched)
            chans = g[:, None] * c["cg"] + np.arange(c["cg"])[None, :]
            hw = c["src_hw"][0] * c["src_hw"][1]
            out.append(c["off"] + (chans * hw + src[r][:, None]).ravel())
        return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def largest_fit(ok, rest, guess):
    """The largest m in 1..rest with ok(m) (ok shrinks as m grows), searched around ``guess``; 0 if none."""
    g = max(1, min(guess, rest))
    if ok(g):
        lo, step = g, 1
        while lo < rest and ok(min(lo + step, rest)):
            lo, step = min(lo + step, rest), step * 2
        hi = min(lo + step, rest + 1)
    else:
        hi, step = g, 1
        while hi - step > 0 and not ok(hi - step):
            hi, step = hi - step, step * 2
        lo = max(hi - step, 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo
