"""The plans of a graph kept between simulate calls while its content is unchanged.

A :class:`.plan.Plan` and the event-driven engine's :class:`.fast.FastPlan` (every weight bounded,
converted and rearranged; the schedule found) were made afresh by every ``simulate`` call, and a
caller running one network batch after batch (``snn.run``, an accuracy sweep, a benchmark) paid for
them each time, where a peer builds its module once (Norse's ``from_nir``). Measured here, 1 thread:
61 ms of VGG-11's ~180 ms call (8 images, T = 32), 77 ms of ResNet-18's ~820 ms, 1.7 ms of the
SHD-sized recurrent net's 35 ms (256 samples x 100 steps). They are now kept on the graph object
itself (they live and die with it; a copy starts without them) under a digest of everything they
are made from: every node's name and attributes (each op's every field), every edge and the
graph's metadata, arrays by their bytes (sha1: 32 ms, 41 ms and 0.65 ms on those three). A graph
changed in any of these, in place or not, gets new plans; one holding a value of a type the
digest does not read (anything but numpy arrays and scalars, Python numbers, strings, and
containers and snnc objects of these) keeps none.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .encode import is_static
from ..row_blocks import for_row_blocks
from .plan import Plan

ATTRIBUTE = "_snnc_prepared"  # on the networkx graph object; never in graph.graph (the saved metadata)
KEPT_KINDS = 4  # plans kept per graph (mode x static encoding x sequence): a cap, not a cache policy
HASH_BLOCK = 1 << 20  # bytes an array is hashed in (in parallel; under 4 blocks' worth in all, on one thread)


class _Unread(Exception):
    """A value the digest does not read."""


def _feed(words, arrays, v, skip=()) -> None:
    """Append ``v``'s description to ``words`` and its arrays to ``arrays`` (hashed after: one update
    for all the small values). ``skip``: fields of an op left out."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "biuf":  # (object arrays hold pointers, not content)
            raise _Unread
        words.append(f"a{v.dtype.str}{v.shape}{len(arrays)}")
        arrays.append(v)
    elif isinstance(v, (str, bool, int, float, complex, np.generic)) or v is None:
        words.append(f"{type(v).__name__}:{v!r}")
    elif isinstance(v, dict):
        words.append(f"{{{len(v)}")
        for key, item in v.items():
            _feed(words, arrays, key)
            _feed(words, arrays, item)
    elif isinstance(v, (list, tuple)):
        words.append(f"[{type(v).__name__}{len(v)}")
        for item in v:
            _feed(words, arrays, item)
    elif type(v).__module__.startswith("snn_compiler.") and hasattr(v, "__dict__"):  # an op: every attribute
        fields = vars(v)
        words.append(f"<{type(v).__qualname__}{len(fields)}")
        for key, item in fields.items():
            words.append(repr(key))
            if key in skip and getattr(v, "weight_int", None) is not None:
                words.append("left out")
            else:
                _feed(words, arrays, item)
    else:
        raise _Unread


def digest(graph, mode="float"):
    """A digest of the graph's whole content (nodes with their attributes, edges, metadata), or None
    where it holds a value of a type the digest does not read. For the integer SNN (``mode`` int) a
    weighted op's float ``weight`` is left out where it carries ``weight_int``: the integer engines
    read ``weight_int`` and ``weight_exp`` only (plan.Plan._weights; a test runs them with the float
    weights made NaN), and the float copy is most of a quantized graph's bytes."""
    words, arrays = [], []
    try:
        _feed(words, arrays, graph.graph)
        for n, data in graph.nodes(data=True):
            words.append("node")
            _feed(words, arrays, n)
            for key, item in data.items():
                words.append(repr(key))
                _feed(words, arrays, item, ("weight",) if mode == "int" else ())
        for edge in graph.edges(data=True):
            _feed(words, arrays, edge)
    except _Unread:
        return None
    h = hashlib.sha1("\x1f".join(words).encode())  # (no word holds the separator: strings go in as repr)
    for d in _array_digests(arrays):
        h.update(d)
    return h.digest()


def _array_digests(arrays) -> list:
    """The sha1 of each block of HASH_BLOCK bytes of the arrays, on the engine's threads (hashlib lets go
    of the GIL on big buffers): hashing VGG-11's 37 MB of integer weights on one thread was a third of
    its 8-image call at 2 threads. The blocks are fixed, so a digest does not depend on the threads."""
    blocks = []
    for a in arrays:
        flat = memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
        blocks += [flat[i:i + HASH_BLOCK] for i in range(0, len(flat), HASH_BLOCK)] or [flat]
    try:
        import numba
        threads = numba.get_num_threads()
    except ImportError:
        threads = 1
    digests = [b""] * len(blocks)

    def hash_blocks(lo, hi):
        for i in range(lo, hi):
            digests[i] = hashlib.sha1(blocks[i]).digest()

    # (under 4 blocks' worth in all, one thread: starting threads would cost more than they save)
    for_row_blocks(hash_blocks, len(blocks), sum(len(b) for b in blocks) // 4, threads=threads)
    return digests


class _Kept(dict):
    """{(mode, static encoding, sequence): [content digest, Plan, FastPlan or None]}; a deep copy or a
    pickle of the graph carries none of it (the copy makes its own)."""

    def __deepcopy__(self, memo):
        return _Kept()

    def __reduce__(self):
        return _Kept, ()


def plans(graph, mode, encoding, sequence, fast_plan):
    """``(Plan, FastPlan or None)`` for a simulate call: those an earlier call made from the same content,
    else new ones (kept for the next call). ``fast_plan``: the callable making the FastPlan, or None
    when the call does not run the event-driven engine. A kept FastPlan's method counts start from
    zero (they are this call's ``info["methods"]``)."""
    key = digest(graph, mode)
    kind = (mode, is_static(encoding), bool(sequence))
    kept = graph.__dict__.get(ATTRIBUTE)
    if kept is None:
        kept = _Kept()
        setattr(graph, ATTRIBUTE, kept)
    entry = kept.get(kind)
    if entry is None or entry[0] != key or key is None:
        kept.pop(kind, None)
        entry = [key, Plan(graph, mode, encoding, sequence), None]
        if key is not None:
            while len(kept) >= KEPT_KINDS:
                kept.pop(next(iter(kept)))
            kept[kind] = entry
    if fast_plan is None:
        return entry[1], None
    if entry[2] is None:
        entry[2] = fast_plan(entry[1])
    entry[2].methods = {}
    return entry[1], entry[2]
