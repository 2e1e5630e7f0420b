"""Average-pool windows by each framework's rule, for the frontends' pool handlers.

A pool whose every window divides by the kernel's area is the IR's AvgPool2d (zero padding counted
in the mean). Where a framework divides a border window by fewer (torch's and ONNX's ``ceil_mode``
and ``count_include_pad=False``; Keras's ``padding='same'``, which leaves the padding out), the
handler emits a WindowAvgPool2d with the windows written out, one ``(start, end, count)`` per output
row and per output column (the divisor of window (i, j) is the product of the two counts in every
one of these rules), and fold_adaptive_pools composes it into the Linear that reads it.
"""
from __future__ import annotations

import math

from ..ir import ops as O


def torch_windows(n: int, k: int, s: int, p: int, ceil_mode: bool, count_include_pad: bool) -> list:
    """torch's avg_pool2d along one axis of ``n`` (ONNX's AveragePool is the same): output ``i`` sums
    rows ``i*s - p .. + k - 1`` clipped to the input, divided by that window clipped to the padded
    input (``count_include_pad``) or to the input; with ``ceil_mode`` a last window may overhang, but
    must start inside the input or its left padding."""
    out = (n + 2 * p - k) // s + 1
    if ceil_mode:
        out = math.ceil((n + 2 * p - k) / s) + 1
        if (out - 1) * s >= n + p:
            out -= 1
    windows = []
    for i in range(out):
        start = i * s - p
        end = min(start + k, n + p)
        padded = end - start
        start, end = max(start, 0), min(end, n)
        windows.append((start, end, padded if count_include_pad else end - start))
    return windows


def keras_same_windows(n: int, k: int, s: int) -> list:
    """Keras's (TensorFlow's) ``padding='same'`` along one axis: ``ceil(n / s)`` outputs, the padding
    split with the extra row after, each window divided by how many input rows it holds."""
    out = -(-n // s)
    before = max((out - 1) * s + k - n, 0) // 2
    return [(max(i * s - before, 0), min(i * s - before + k, n), min(i * s - before + k, n) - max(i * s - before, 0))
            for i in range(out)]


def full_windows(windows, k: int) -> bool:
    """Every window divides by the kernel size: an AvgPool2d expresses the pool."""
    return all(count == k for _, _, count in windows)


def average_pool(rows, cols, k, s, p):
    """The IR op for windows ``rows``, ``cols`` of a (kh, kw) pool with stride ``s`` and padding ``p``."""
    if full_windows(rows, k[0]) and full_windows(cols, k[1]):
        return O.AvgPool2d(kernel_size=tuple(k), stride=tuple(s), padding=tuple(p))
    return O.WindowAvgPool2d(rows=rows, cols=cols)
