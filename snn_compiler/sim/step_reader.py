"""Reading an encoder's chunks of steps in runs of whatever length the engine's batches take."""
from __future__ import annotations

import numpy as np


class StepReader:
    """Steps of an encoder's chunks, in runs of any length (a run inside one chunk is a view of it)."""

    def __init__(self, chunks):
        self.chunks, self.left = chunks, None

    def take(self, c, shape, dtype):
        if self.left is None or len(self.left) == 0:
            self.left = next(self.chunks)
        if len(self.left) >= c and self.left.shape[1:] == shape and self.left.dtype == dtype:
            out, self.left = self.left[:c], self.left[c:]  # one chunk holds the steps: a view (callers read it)
            return out
        out = np.empty((c,) + shape, dtype)
        t = 0
        while t < c:
            if self.left is None or len(self.left) == 0:
                self.left = next(self.chunks)
            k = min(c - t, len(self.left))
            out[t:t + k] = self.left[:k]
            self.left, t = self.left[k:], t + k
        return out
