"""The statistics normalize takes of one layer's activations, kept while the batches stream past.

A percentile P of n values needs only the two order statistics around position ``(n - 1) P/100``,
which lie among the largest ``n - floor((n - 1) P/100)`` values; the maximum needs the largest. So a
layer keeps its count, its float64 sum and its top K values (a partition per batch), not every
activation: memory is K values per layer whatever the calibration set's size, every value counts
(no subsampling), and the expected rate ``mean(min(v, lambda)) / lambda`` follows from the sum and
the values above lambda, which the top K hold whenever lambda is at least the K-th largest value.
The percentile interpolates as numpy's default (``linear``) method does.
"""
from __future__ import annotations

import math

import numpy as np


SAMPLE = 1 << 16  # values a threshold is guessed from before the exact selection (:func:`largest`)


def largest(a: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest values of the 1-D ``a`` (in no order; a copy). Exact: a threshold ``t`` guessed
    from an evenly spaced sample cuts ``a`` to its values above ``t``; when at least ``k`` remain, every
    one of the ``k`` largest is among them (the k-th largest exceeds ``t``), so one partition of the
    few candidates replaces one of the whole batch (a calibration batch of a conv layer: millions)."""
    if a.size <= k:
        return a.copy()
    if a.size > 8 * SAMPLE and 8 * k < a.size:
        sample = a[::a.size // SAMPLE]
        j = max(0, sample.size - 1 - int(2 * k * sample.size / a.size) - 16)  # ~2k values of a above it
        cand = a[a > np.partition(sample, j)[j]]
        if cand.size >= k:
            a = cand
    return np.partition(a, a.size - k)[a.size - k:]


class LayerStats:
    """Count, float64 sum and largest values of one layer's activations (module docstring)."""

    def __init__(self, total: int, norm, keep_all: bool = False):
        """``keep_all``: lambda may end below the statistic (a factor < 1, ``scale:F`` with F < 1),
        where the expected rate needs values the top K would not hold."""
        name, arg = norm
        keep = total - math.floor((total - 1) * arg / 100.0) + 1 if name == "percentile" else 1
        self.k = int(total) if keep_all else max(1, min(int(total), int(keep)))
        self.top = np.zeros(0, np.float32)
        self.count, self.sum = 0, 0.0

    def add(self, values: np.ndarray) -> None:
        """Take in a batch of activations (any shape; float32 is kept)."""
        a = np.asarray(values, np.float32).ravel()
        self.count += a.size
        self.sum += float(a.sum(dtype=np.float64))
        if self.top.size >= self.k:  # only values above the k-th largest so far can enter the top k
            a = a[a > self.top.min()]
        self.top = largest(np.concatenate([self.top, a]) if self.top.size else a, self.k)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.sum)  # a sum is finite iff every value is

    def statistic(self, norm) -> float:
        """The layer's lambda under ``norm`` (max, scale:F or percentile:P) before the dead-layer rule."""
        name, arg = norm
        if not self.count:
            return 0.0
        top = float(self.top.max())
        if name == "max":
            return top
        if name == "scale":
            return arg * top
        q = arg / 100.0
        index = self.count * q + (1.0 - q) - 1.0   # numpy's virtual index for the linear method
        lo = math.floor(index)
        t = index - lo
        ranked = np.sort(self.top.astype(np.float64))
        first = self.count - ranked.size              # the global rank of ranked[0]
        a = ranked[max(lo - first, 0)]
        b = ranked[min(lo + 1, self.count - 1) - first]
        return float(b - (b - a) * (1.0 - t)) if t >= 0.5 else float(a + (b - a) * t)  # numpy's _lerp

    def rate(self, ceiling: float) -> float:
        """The layer's expected rate at scale ``ceiling``: ``mean(min(v, ceiling)) / ceiling``."""
        return self.clipped_mean(ceiling) / ceiling

    def clipped_mean(self, ceiling: float) -> float:
        """``mean(min(v, ceiling))`` in float64: exact when every value above ``ceiling`` is kept
        (``ceiling`` at least the statistic, or ``keep_all``)."""
        if not self.count:
            return 0.0
        if self.top.size < self.count and ceiling < float(self.top.min()):
            raise AssertionError("clipped_mean below the values kept: construct with keep_all")
        above = self.top[self.top > ceiling].astype(np.float64)
        return (self.sum - float(above.sum()) + ceiling * above.size) / self.count


class ChannelStats:
    """:class:`LayerStats` per channel (axis 1 of a batch), for channel-wise normalization: each
    channel's count, sum and largest values, kept with one partition per batch for all channels."""

    def __init__(self, channels: int, per_channel: int, norm, keep_all: bool = False):
        self.norm, self.keep_all, self.total = norm, keep_all, per_channel
        self.k = LayerStats(per_channel, norm, keep_all).k
        self.top = np.zeros((channels, 0), np.float32)
        self.count, self.sum = 0, np.zeros(channels)

    def add(self, values: np.ndarray) -> None:
        a = np.asarray(values, np.float32)
        a = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)
        self.count += a.shape[1]
        self.sum += a.sum(axis=1, dtype=np.float64)
        cand = np.concatenate([self.top, a], axis=1) if self.top.shape[1] else a.copy()
        if cand.shape[1] > self.k:
            cand = np.partition(cand, cand.shape[1] - self.k, axis=1)[:, cand.shape[1] - self.k:]
        self.top = cand

    def channel(self, c) -> LayerStats:
        """Channel ``c``'s statistics as a :class:`LayerStats` (what the vectorised methods equal)."""
        st = LayerStats(self.total, self.norm, self.keep_all)
        st.top, st.count, st.sum = self.top[c], self.count, float(self.sum[c])
        return st

    @property
    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.sum)))

    def statistic(self, norm) -> np.ndarray:
        """:meth:`LayerStats.statistic` of every channel at once (each channel holds equally many values)."""
        name, arg = norm
        if not self.count:
            return np.zeros(len(self.sum))
        ranked = np.sort(self.top.astype(np.float64), axis=1)
        if name == "max":
            return ranked[:, -1]
        if name == "scale":
            return arg * ranked[:, -1]
        q = arg / 100.0
        index = self.count * q + (1.0 - q) - 1.0
        lo = math.floor(index)
        t = index - lo
        first = self.count - ranked.shape[1]
        a = ranked[:, max(lo - first, 0)]
        b = ranked[:, min(lo + 1, self.count - 1) - first]
        return b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t

    def rate(self, ceilings) -> float:
        """The layer's expected rate, each channel at its own ceiling (channels hold equally many neurons)."""
        if not self.count:
            return 0.0
        ceilings = np.broadcast_to(np.asarray(ceilings, np.float64), self.sum.shape)
        if self.top.shape[1] < self.count and np.any(ceilings < self.top.min(axis=1)):
            raise AssertionError("clipped_mean below the values kept: construct with keep_all")
        above = self.top > ceilings[:, None]
        kept = np.where(above, self.top, 0.0).sum(axis=1, dtype=np.float64)
        mean = (self.sum - kept + ceilings * above.sum(axis=1)) / self.count
        return float(np.mean(mean / ceilings))
