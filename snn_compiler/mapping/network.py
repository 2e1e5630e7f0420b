"""The neuron layers of an SNN-form graph and the connections between them, as mapping sees them.

A *layer* is a neuron layer (IF or Output) and sits on cores; the Input is off-chip (its values
arrive as spikes on the input axons of the cores it feeds). A *connection* is a Dense or Conv2d op
from a source (a neuron layer or the Input, looked through Flatten) into a neuron layer (looked
through Add). Synapses are structural: a Dense op connects every source to every target, a Conv2d
connects each target to the sources its receptive field touches (padding excluded), zero weights
included. A *structurally sparse* Dense (at most :data:`SPARSE_DENSE` of its weights nonzero: a
pool or an identity composed into it, a channel selection) connects only its nonzero pairs:
SqueezeNet's read-out, a global pool composed into an identity, reads 9 of 9,000 sources per
target, and counted dense it needed more input axons than a core has.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ..ir import op_of, topo_order
from ..ir import ops as O
from ..ir.layers import incoming, source_of


class MappingError(ValueError):
    """A network does not fit the profile; the message names the layer and the resource."""


# The largest fraction of nonzero weights at which a Dense is mapped as its nonzero pairs only (the
# partitioner, the lower bound and the checker all read synapses by this one rule).
SPARSE_DENSE = 0.5


def sparse_dense(op) -> bool:
    """Whether Dense ``op`` is structurally sparse: its synapses are its nonzero weights only."""
    return isinstance(op, O.Dense) and op.weight.size > 0 and np.count_nonzero(op.weight) <= SPARSE_DENSE * op.weight.size


def dense_pattern(op):
    """(indptr, columns) of a structurally sparse Dense's nonzero weights, row by row (CSR), else None."""
    if not sparse_dense(op):
        return None
    rows, cols = np.nonzero(op.weight)
    indptr = np.searchsorted(rows, np.arange(op.weight.shape[0] + 1)).astype(np.int64)
    return indptr, cols.astype(np.int64)


@dataclass
class Conn:
    op_name: str
    src: str            # source layer name (or the Input node)
    op: object          # Dense or Conv2d
    src_shape: Tuple[int, ...]
    dst_shape: Tuple[int, ...]
    pattern: object = None  # a structurally sparse Dense's nonzero weights (:func:`dense_pattern`)


@dataclass
class Net:
    layers: List[str]               # neuron layers in topological order
    shapes: dict                    # node -> shape (layers and the input)
    conns: dict                     # layer -> [Conn]
    consumers: dict                 # layer or input -> [layer]
    input: str

    def size(self, name) -> int:
        return int(np.prod(self.shapes[name]))


def _weighted_into(graph, layer):
    try:
        return incoming(graph, layer)
    except ValueError as e:
        raise MappingError(f"{e}: the graph is not in SNN form") from None


def build_net(graph) -> Net:
    order = topo_order(graph)
    layers = [n for n in order if isinstance(op_of(graph, n), O.NEURONS)]
    inp = next(n for n in order if isinstance(op_of(graph, n), O.Input))
    shapes = {n: tuple(graph.nodes[n]["shape"]) for n in layers + [inp]}
    conns, consumers = {}, {n: [] for n in layers + [inp]}
    for n in layers:
        conns[n] = []
        for w in _weighted_into(graph, n):
            src = source_of(graph, w)
            if src not in shapes:
                raise MappingError(f"layer {n!r}: connection {w!r} reads {src!r}, which is not a neuron layer or the input")
            op = op_of(graph, w)
            conns[n].append(Conn(w, src, op, shapes[src], shapes[n], dense_pattern(op)))
            if n not in consumers[src]:
                consumers[src].append(n)
    return Net(layers, shapes, conns, consumers, inp)


def gather_sources(conn: Conn, targets: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Target-side enumeration: for target neurons ``targets`` (flat indices into the layer), the
    synapses ``(source_flat, position_in_targets)`` of ``conn`` (unsorted, no duplicates within one
    connection)."""
    targets = np.asarray(targets, np.int64)
    pos = np.arange(len(targets), dtype=np.int64)
    op = conn.op
    if isinstance(op, O.Dense) and conn.pattern is not None:
        indptr, cols = conn.pattern
        starts, counts = indptr[targets], indptr[targets + 1] - indptr[targets]
        first = np.cumsum(counts) - counts  # where each target's synapses start in the result
        at = np.repeat(starts - first, counts) + np.arange(int(counts.sum()), dtype=np.int64)
        return cols[at], np.repeat(pos, counts)
    if isinstance(op, O.Dense):
        n_in = op.weight.shape[1]
        return np.tile(np.arange(n_in, dtype=np.int64), len(targets)), np.repeat(pos, n_in)
    co, cg, kh, kw = op.weight.shape
    _, ho, wo = conn.dst_shape
    ci, hi, wi = conn.src_shape
    c, rem = np.divmod(targets, ho * wo)
    oy, ox = np.divmod(rem, wo)
    base_ci = (c // (co // op.groups)) * cg
    (sh, sw), (ph, pw), (dh, dw) = op.stride, op.padding, op.dilation
    k = np.arange(cg)[:, None, None]
    i = np.arange(kh)[None, :, None]
    j = np.arange(kw)[None, None, :]
    ys = oy[:, None, None, None] * sh - ph + i[None] * dh          # (T, 1, kh, 1)
    xs = ox[:, None, None, None] * sw - pw + j[None] * dw          # (T, 1, 1, kw)
    chans = base_ci[:, None, None, None] + k[None]                  # (T, cg, 1, 1)
    ys, xs, chans = np.broadcast_arrays(ys, xs, chans)
    (ih, iw) = op.input_dilation  # a tap reads the zero-inserted map: only its every ih-th row is real
    ok = (ys >= 0) & (ys < ih * (hi - 1) + 1) & (ys % ih == 0) & (xs >= 0) & (xs < iw * (wi - 1) + 1) & (xs % iw == 0)
    src = (chans * hi + ys // ih) * wi + xs // iw
    p = np.broadcast_to(pos[:, None, None, None], src.shape)
    return src[ok], p[ok]


def group_cost_bits(n: np.ndarray, enc, weight_bits: int) -> np.ndarray:
    """Bits of synapse groups holding ``n`` synapses each (header + weights, rounded up to words)."""
    per = enc.synapse_bits(weight_bits)
    w = enc.word_bits
    return -(-(enc.header_bits + np.asarray(n, np.int64) * per) // w) * w


_RUN_TABLES = {}


def run_cost_table(enc, weight_bits: int, longest: int) -> np.ndarray:
    """``t[L]``: the fewest bits a run of L consecutive synapses takes, cut into groups of at most
    ``group_max`` synapses sized to fill their words (e.g. 61 8-bit synapses and a 20-bit header
    fill 8 words exactly, 64 would take 9)."""
    key = (enc, int(weight_bits))
    t = _RUN_TABLES.get(key)
    if t is None or len(t) <= longest:
        size = max(int(longest) + 1, 2 * (len(t) if t is not None else 512))
        m = enc.group_max
        c = group_cost_bits(np.arange(1, m + 1), enc, weight_bits)       # c[n-1]: one group of n
        t = np.zeros(size, np.int64)
        for L in range(1, size):
            k = min(L, m)
            t[L] = np.min(t[L - k:L][::-1] + c[:k])
        _RUN_TABLES[key] = t
    return t


def run_bits(lengths, enc, weight_bits: int) -> int:
    """Synapse memory of runs of the given lengths (each cut into groups as cheaply as possible)."""
    lengths = np.asarray(lengths, np.int64)
    if not len(lengths):
        return 0
    return int(run_cost_table(enc, weight_bits, int(lengths.max()))[lengths].sum())


def best_bits_per_synapse(enc, weight_bits: int) -> float:
    """The lowest memory per synapse any group achieves (header and rounding included): the
    synapse demand of the lower bound."""
    n = np.arange(1, enc.group_max + 1)
    return float(np.min(group_cost_bits(n, enc, weight_bits) / n))


def slice_neurons(shape, slc: dict) -> np.ndarray:
    """The flat indices (torch C,H,W order) of the neurons a core-map slice holds, in core order.

    ``{"n": [a, b]}``: neurons a..b-1 of a vector layer. ``{"c": [c0, c1], "p": [p0, p1]}``: pixels
    p0..p1-1 (row-major) of channels c0..c1-1, ordered pixel-major, channel-minor.
    ``{"c": [...], "h": [r0, r1], "w": [q0, q1]}``: a rectangle of rows and columns, same order
    (``"order": "whc"``: pixels column-major, then channel-minor). ``{"q": [a, b]}``: positions
    a..b-1 of the whole layer in pixel-major, channel-minor order (position = pixel * C + channel),
    so a core may start and end inside a pixel.
    """
    if "n" in slc or "flat" in slc:   # "flat": a range in C,H,W flatten order (equal-chunk maps)
        a, b = slc.get("n", slc.get("flat"))
        return np.arange(a, b, dtype=np.int64)
    c, h, w = shape
    if "q" in slc:                    # a run of the pixel-major, channel-minor order of the whole layer
        p, ch = np.divmod(np.arange(*slc["q"], dtype=np.int64), c)
        return ch * (h * w) + p
    c0, c1 = slc["c"]
    if "p" in slc:
        p = np.arange(*slc["p"], dtype=np.int64)
    else:
        rows = np.arange(*slc["h"], dtype=np.int64)
        cols = np.arange(*slc["w"], dtype=np.int64)
        if slc.get("order", "hwc") == "whc":      # column-major pixels
            p = (rows[None, :] * w + cols[:, None]).ravel()
        else:
            p = (rows[:, None] * w + cols[None, :]).ravel()
    return (np.arange(c0, c1, dtype=np.int64)[None, :] * (h * w) + p[:, None]).ravel()
