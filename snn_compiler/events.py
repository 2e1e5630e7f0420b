"""Event streams (an event camera's output) binned into frames: the one rule snnc uses.

An event is a record ``(x, y, t, p)`` - the layout tonic uses: ``x`` the pixel column
(0..W-1), ``y`` its row (0..H-1), ``t`` the timestamp (any unit, integer or float: microseconds
for most sensors), ``p`` the polarity (ON when ``p > 0``; OFF for 0, False or -1).

Binning (:func:`bin_events`): the window ``[t0, t1]`` (the events' own ``[t_min, t_max]`` unless
given) is cut into ``T`` bins of equal length ``(t1 - t0) / T``; an event at ``t`` falls in bin
``floor((t - t0) * T / (t1 - t0))``, the last bin closed (``t = t1`` is in bin T-1), computed in
exact integer arithmetic for integer timestamps. Frame ``k`` is (2, H, W): channel 0 counts the
OFF events, channel 1 the ON events of bin k at each pixel. Events outside the window are
dropped (and counted). A window of zero length (one timestamp) puts every event in bin 0.
The frames are a sequence (T, 2, H, W) that a network with input shape (2, H, W) takes
(:mod:`snn_compiler.sim.encode`).

Files (no pickle anywhere): EVENTS.npz holds plain 1-D arrays ``x``, ``y``, ``t``, ``p`` (the
events of all samples, concatenated), ``offsets`` (N + 1 ascending indices: sample i is events
``offsets[i]:offsets[i+1]``; absent: one sample), ``sensor_size`` (W, H) and optionally
``labels`` (N,) integers. :func:`save_events` writes one from tonic-style structured arrays,
:func:`bin_file` bins one into DATA.npz arrays (x (N, T, 2, H, W), y the labels); ``snnc
bin-events`` stores the counts in the narrowest unsigned integer type that holds them.
"""
from __future__ import annotations

import io

import numpy as np

from . import zipped_arrays as zipped

FIELDS = ("x", "y", "t", "p")


class EventError(ValueError):
    pass


def _fields(events, where):
    """The four fields of a structured array or a mapping of arrays, as 1-D arrays of one length."""
    names = events.dtype.names if isinstance(events, np.ndarray) else tuple(events)
    missing = [f for f in FIELDS if f not in (names or ())]
    if missing:
        raise EventError(f"{where}: events need fields x, y, t, p (tonic's layout); missing {', '.join(missing)}")
    cols = {f: np.asarray(events[f]) for f in FIELDS}
    n = len(cols["x"])
    for f, a in cols.items():
        if a.ndim != 1 or len(a) != n:
            raise EventError(f"{where}: field {f!r} must be 1-D with {n} events, got shape {a.shape}")
        if a.dtype.kind not in "biuf":
            raise EventError(f"{where}: field {f!r} must be numbers, got {a.dtype}")
    if cols["t"].dtype.kind == "f" and not np.isfinite(cols["t"]).all():
        raise EventError(f"{where}: timestamps 't' hold NaN or infinite values")
    return cols


def bin_events(events, sensor_size, bins: int, window=None, where="events"):
    """(frames, dropped): ``frames`` (bins, 2, H, W) int64 event counts of one stream (module
    docstring: the rule), ``dropped`` the number of events outside ``window`` = (t0, t1)."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise EventError(f"bins must be a whole number >= 1, got {bins!r}")
    w, h = _sensor(sensor_size, where)
    c = _fields(events, where)
    x, y, t, on = c["x"], c["y"], c["t"], c["p"] > 0
    frames = np.zeros((int(bins), 2, h, w), np.int64)
    if window is None:
        if not len(t):
            return frames, 0
        t0, t1 = t.min(), t.max()
    else:
        t0, t1 = window
        if not t1 >= t0:
            raise EventError(f"{where}: the window must have t0 <= t1, got ({t0}, {t1})")
    inside = (t >= t0) & (t <= t1)
    x, y, t, on = x[inside], y[inside], t[inside], on[inside]
    bad = (x < 0) | (x >= w) | (y < 0) | (y >= h) | (x != np.floor(x)) | (y != np.floor(y))
    if bad.any():
        i = int(np.argmax(bad))
        raise EventError(f"{where}: event ({x[i]}, {y[i]}) lies outside the {w}x{h} sensor (x in 0..{w - 1}, "
                         f"y in 0..{h - 1}); {int(bad.sum())} such events")
    span = t1 - t0
    if span == 0:
        k = np.zeros(len(t), np.int64)
    elif t.dtype.kind in "iub" and np.asarray(t0).dtype.kind in "iub" and np.asarray(t1).dtype.kind in "iub":
        k = ((t.astype(np.int64) - int(t0)) * int(bins)) // int(span)  # exact: no float rounding at bin edges
    else:
        k = np.floor((t.astype(np.float64) - float(t0)) * bins / float(span)).astype(np.int64)
    k = np.minimum(k, bins - 1)  # t = t1 closes the last bin
    np.add.at(frames, (k, on.astype(np.int64), y.astype(np.int64), x.astype(np.int64)), 1)
    return frames, int((~inside).sum())


def _sensor(sensor_size, where):
    size = tuple(int(d) for d in np.asarray(sensor_size).reshape(-1))
    if len(size) not in (2, 3) or min(size[:2]) < 1 or (len(size) == 3 and size[2] not in (1, 2)):
        raise EventError(f"{where}: sensor_size must be (W, H) or (W, H, 2) with W, H >= 1, got {size}")
    return size[0], size[1]


def save_events(streams, sensor_size, labels=None) -> bytes:
    """EVENTS.npz bytes (plain arrays, no pickle) of ``streams``, a list of tonic-style event
    arrays (structured with fields x, y, t, p), one per sample."""
    cols = [_fields(s, f"stream {i}") for i, s in enumerate(streams)]
    arrays = {f: np.concatenate([c[f] for c in cols]) if cols else np.zeros(0) for f in FIELDS}
    arrays["offsets"] = np.concatenate([[0], np.cumsum([len(c["x"]) for c in cols])]).astype(np.int64)
    arrays["sensor_size"] = np.asarray(_sensor(sensor_size, "sensor_size"), np.int64)
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def read_events(path):
    """(streams as dicts of the four fields, sensor (W, H), labels or None) of EVENTS.npz."""
    try:  # the data files' guarded reader: shapes and sizes checked before anything is inflated
        arrays, _ = zipped.read_npz(path, FIELDS + ("offsets", "sensor_size", "labels"), "EVENTS.npz", "the events")
    except zipped.ZipArrayError as e:
        raise EventError(str(e)) from None
    for key in FIELDS + ("sensor_size",):
        if key not in arrays:
            raise EventError(f"{path}: no array {key!r} (EVENTS.npz holds x, y, t, p, sensor_size and "
                             f"optionally offsets, labels)")
    cols = _fields(arrays, str(path))
    n = len(cols["x"])
    offsets = arrays.get("offsets", np.array([0, n]))
    if (offsets.ndim != 1 or len(offsets) < 2 or offsets.dtype.kind not in "iu" or offsets[0] != 0
            or offsets[-1] != n or (np.diff(offsets) < 0).any()):
        raise EventError(f"{path}: 'offsets' must be ascending integers from 0 to {n} (the events' count), "
                         f"one more than the samples")
    streams = [{f: cols[f][a:b] for f in FIELDS} for a, b in zip(offsets[:-1], offsets[1:])]
    labels = arrays.get("labels")
    if labels is not None and (labels.shape != (len(streams),) or labels.dtype.kind not in "iu"):
        raise EventError(f"{path}: 'labels' must be {len(streams)} integers, got {labels.dtype} {labels.shape}")
    return streams, _sensor(arrays["sensor_size"], str(path)), labels


def bin_file(path, bins: int, window=None):
    """(x (N, bins, 2, H, W) int64 event counts, labels or None, dropped events) of EVENTS.npz,
    each sample binned by :func:`bin_events`."""
    streams, (w, h), labels = read_events(path)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise EventError(f"bins must be a whole number >= 1, got {bins!r}")
    need = len(streams) * int(bins) * 2 * h * w * 8  # int64 frames
    if need > zipped.MAX_ARRAY_BYTES:
        raise EventError(f"{path}: {len(streams)} samples x {bins} bins of (2, {h}, {w}) frames take "
                         f"{need / 2**30:.1f} GiB, over the {zipped.MAX_ARRAY_BYTES / 2**30:.0f} GiB snnc reads at once "
                         f"(MAX_ARRAY_BYTES): fewer bins or samples per file")
    x = np.zeros((len(streams), bins, 2, h, w), np.int64)
    dropped = 0
    for i, s in enumerate(streams):
        frames, d = bin_events(s, (w, h), bins, window, f"{path}: sample {i}")
        x[i], dropped = frames, dropped + d
    return x, labels, dropped
