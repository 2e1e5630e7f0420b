"""N-MNIST-style event streams made from still images: a simulated event camera over three saccades.

N-MNIST (Orchard, Jayawant, Cohen and Thakor, Frontiers in Neuroscience 2015) was recorded by
showing each MNIST digit on a screen and moving an ATIS event camera in three saccades of about
100 ms each, a triangle returning to where it began; the digit's edges sweep over the pixels and
each pixel reports an ON (OFF) event whenever its log intensity has risen (fallen) by a contrast
threshold since its last event. The recordings are 34x34 pixels (a 28x28 digit plus the motion).
The real recordings cannot be downloaded here, so :func:`nmnist_events` simulates that process
from the images themselves. It is a stand-in, NOT the recordings: use it to exercise a temporal
pipeline end to end, and do not compare its accuracies with published N-MNIST figures.

What it models:
- the motion: the 28x28 image's top-left corner moves over :data:`TRIANGLE` on the 34x34 sensor,
  (3, 0) -> (6, 6) -> (0, 6) -> (3, 0) pixels (x, y), three saccades of ``saccade_us`` each, each
  starting and ending at rest (a cosine velocity profile, as a pan-tilt motor moves), sub-pixel
  positions rendered by bilinear interpolation (a pixel integrates the light that falls on it);
- the pixel: log intensity ``log(floor + (1 - floor) * image)`` (``floor``: the screen's black is
  not black; it also keeps the log finite), an event each time it crosses ``reference +- k C``,
  the reference moving by C per event; the time of each crossing is interpolated within the
  ``step_us`` rendering step, so timestamps are in whole microseconds, not on a step grid;
- the sensor: each pixel's ON and OFF thresholds are ``threshold * (1 + mismatch * N(0, 1))``,
  drawn once per ``seed`` (one camera recorded every sample), and background activity (noise
  events of random polarity, Poisson at ``noise_hz`` per pixel, uniform in time) drawn per
  sample from ``(seed, first_index + i)``, so a sample's events do not depend on the batch it
  was made in.

What it does not model: the ATIS's optics (blur, vignetting), pixel latency and jitter, the
refractory period, bias drift, the screen's refresh flicker, the exposure-measurement events of
the ATIS and the exact paths and timing of the original recordings.

Output: tonic's layout, one structured array per sample with fields x, y (int16), t (int64,
microseconds from 0 to 3 * saccade_us) and p (int8, 1 ON, 0 OFF), sorted by time;
:func:`write_events` stores them as EVENTS.npz (:func:`snn_compiler.events.save_events`), which
``snnc bin-events`` bins into frames.
"""
from __future__ import annotations

import numpy as np

from .events import save_events

SENSOR = (34, 34)  # (W, H), N-MNIST's
IMAGE = 28
TRIANGLE = ((3.0, 0.0), (6.0, 6.0), (0.0, 6.0), (3.0, 0.0))  # image top-left (x, y): down-right, left, up-right
DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
_PAD = 7  # the image inside a 42x42 zero margin: every shift of 0..6 px plus one for interpolation


def position(t_us, saccade_us: int = 100_000):
    """The image's top-left (x, y) on the sensor at times ``t_us`` (array): along :data:`TRIANGLE`,
    one leg per saccade, ``(1 - cos(pi u)) / 2`` of the way at fraction ``u`` of the saccade."""
    t = np.clip(np.asarray(t_us, np.float64), 0, 3 * saccade_us)
    leg = np.minimum((t // saccade_us).astype(np.int64), 2)
    u = (t - leg * saccade_us) / saccade_us
    s = (1 - np.cos(np.pi * u)) / 2
    a, b = np.asarray(TRIANGLE)[leg], np.asarray(TRIANGLE)[leg + 1]
    return a + (b - a) * s[..., None]


def _render(padded, ox, oy):
    """(B, 34, 34) view of padded (B, 42, 42) images with the top-left at (ox, oy): bilinear."""
    ix, iy = int(np.floor(ox)), int(np.floor(oy))
    fx, fy = ox - ix, oy - iy
    w, h = SENSOR

    r0, c0 = _PAD - iy, _PAD - ix  # sensor pixel (y, x) sees image pixel (y - oy, x - ox)
    row = (1 - fx) * padded[:, r0 - 1:r0 + h, c0:c0 + w] + fx * padded[:, r0 - 1:r0 + h, c0 - 1:c0 - 1 + w]
    return (1 - fy) * row[:, 1:] + fy * row[:, :-1]


def _crossings(idx, level0, step, l_prev, l_cur, t_prev, step_us, polarity):
    """Events of the flat pixel indices ``idx`` that crossed levels ``level0 + k step`` (k = 1..n)
    between ``l_prev`` and ``l_cur`` (all arrays over ``idx``): (flat index, t, p), each event's
    time interpolated linearly within the step; returns also n, the levels each pixel crossed."""
    n = np.floor((l_cur - level0) / step).astype(np.int64)
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 1  # 1..n within each pixel
    lp = np.repeat(l_prev, n)
    frac = np.clip((np.repeat(level0, n) + k * np.repeat(step, n) - lp) / (np.repeat(l_cur, n) - lp), 0.0, 1.0)
    t = np.rint(t_prev + frac * step_us).astype(np.int64)
    return (np.repeat(idx, n), t, np.full(len(t), polarity, np.int8)), n


def nmnist_events(images, seed: int = 0, first_index: int = 0, threshold: float = 0.3, mismatch: float = 0.03,
                  floor: float = 0.15, noise_hz: float = 0.2, saccade_us: int = 100_000, step_us: int = 2000):
    """One tonic-style event array per image (module docstring: what is modelled). ``images``:
    (N, 28, 28) or (N, 1, 28, 28), uint8 0..255 or floats in [0, 1]."""
    imgs = np.asarray(images)
    if imgs.ndim == 4 and imgs.shape[1] == 1:
        imgs = imgs[:, 0]
    if imgs.ndim != 3 or imgs.shape[1:] != (IMAGE, IMAGE):
        raise ValueError(f"images must be (N, 28, 28) or (N, 1, 28, 28), got shape {imgs.shape}")
    imgs = imgs / 255.0 if imgs.dtype == np.uint8 else imgs.astype(np.float64)
    if imgs.size and not (np.isfinite(imgs).all() and imgs.min() >= 0 and imgs.max() <= 1):
        raise ValueError("float images must lie in [0, 1] (uint8 images are read as 0..255)")
    for name, v in (("threshold", threshold), ("floor", floor), ("saccade_us", saccade_us), ("step_us", step_us)):
        if not v > 0:
            raise ValueError(f"{name} must be > 0, got {v!r}")
    if 3 * saccade_us >= 2**31:  # the sort key below keeps 31 bits of time
        raise ValueError(f"saccade_us must be below {2**31 // 3} (microseconds), got {saccade_us!r}")
    if not (mismatch >= 0 and noise_hz >= 0 and floor < 1):
        raise ValueError(f"need mismatch >= 0, noise_hz >= 0 and floor < 1, got {mismatch}, {noise_hz}, {floor}")
    if isinstance(first_index, bool) or not isinstance(first_index, (int, np.integer)) or first_index < 0:
        raise ValueError(f"first_index must be a whole number >= 0, got {first_index!r}")
    w, h = SENSOR
    sensor_rng = np.random.default_rng([seed, 2**31])  # the camera: the same for every sample of a seed
    c_on, c_off = (threshold * np.maximum(1 + mismatch * sensor_rng.standard_normal((h, w)), 0.5) for _ in "ab")
    padded = np.pad(np.log(floor + (1 - floor) * imgs).astype(np.float32), ((0, 0), (_PAD, _PAD), (_PAD, _PAD)),
                    constant_values=np.log(floor))
    c_on, c_off = (np.broadcast_to(c.astype(np.float32), (len(imgs), h, w)) for c in (c_on, c_off))
    steps = int(np.ceil(3 * saccade_us / step_us))
    times = np.minimum(np.arange(steps + 1) * step_us, 3 * saccade_us)
    l_prev = _render(padded, *position(times[0], saccade_us)).ravel()
    ref = l_prev.copy()  # the pixels have adapted to the still image before the first saccade
    c_on, c_off = c_on.ravel(), c_off.ravel()
    parts = []
    for t0, t1 in zip(times[:-1], times[1:]):
        l_cur = _render(padded, *position(t1, saccade_us)).ravel()
        diff = l_cur - ref
        # whole-array work is only this test; the few pixels that fire are handled on their own
        for idx, c, sign, pol in ((np.flatnonzero(diff >= c_on), c_on, 1, 1),
                                  (np.flatnonzero(diff <= -c_off), c_off, -1, 0)):
            if len(idx):
                step = sign * c[idx]
                ev, n = _crossings(idx, ref[idx], step, l_prev[idx], l_cur[idx], t0, t1 - t0, pol)
                parts.append(ev)
                ref[idx] += n * step
        l_prev = l_cur
    flat, t, p = (np.concatenate([q[i] for q in parts]) if parts else np.zeros(0, np.int64) for i in range(3))
    b, y, x = np.unravel_index(flat, (len(imgs), h, w))
    if noise_hz > 0:  # background activity, per sample from its own seed
        counts, rows = [], []
        for i in range(len(imgs)):
            rng = np.random.default_rng([seed, first_index + i])
            k = rng.poisson(noise_hz * h * w * 3 * saccade_us * 1e-6)
            counts.append(k)
            rows.append(rng.integers(0, [h, w, 3 * saccade_us + 1, 2], size=(k, 4)))  # y, x, t, p
        rows = np.concatenate(rows)
        b = np.concatenate([b, np.repeat(np.arange(len(imgs)), counts)])
        y, x, t, p = (np.concatenate([v, rows[:, j]]) for j, v in enumerate((y, x, t, p)))
    # by sample, then time, ties in a fixed order: one int64 key (t < 2^31 us, 2 * 34 * 34 < 2^12)
    order = np.argsort(((b.astype(np.int64) << 31 | t) << 12) | ((y * w + x) << 1 | p), kind="stable")
    ev = np.empty(len(order), DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = x[order], y[order], t[order], p[order]
    bounds = np.searchsorted(b[order], np.arange(len(imgs) + 1))
    return [ev[bounds[i]:bounds[i + 1]] for i in range(len(imgs))]


def write_events(path, images, labels=None, batch: int = 100, **kwargs):
    """Simulate :func:`nmnist_events` for ``images`` (in batches of ``batch``; the events do not
    depend on it) and write EVENTS.npz at ``path``; returns the number of events written."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a whole number >= 1, got {batch!r}")
    streams = []
    for i in range(0, len(images), batch):
        streams += nmnist_events(images[i:i + batch], first_index=i, **kwargs)
    with open(path, "wb") as f:
        f.write(save_events(streams, SENSOR, labels))
    return sum(len(s) for s in streams)
