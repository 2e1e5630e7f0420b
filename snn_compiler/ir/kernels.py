"""Batched numpy kernels for the IR's ops: what each op's ``ann`` reading computes with, and what
the numpy engine multiplies with, exact on integers.

A reading is written once, in each op's ``ann(xs, k)``, against a namespace ``k`` of array
functions: this module (numpy, float64) or ``sim.torch_ann.TorchKernels`` (torch, any device),
so a new op needs one ``ann`` and, if it uses a new array function, that function in both.

Integer operands are multiplied in floating point through BLAS: every product and partial sum of
integers stays an integer, and is exact while its magnitude is below 2**24 (float32) or 2**53
(float64). :func:`exact_dtype` picks the narrowest float type whose range the caller has proved
sufficient, so integer results are bit-exact whatever order BLAS sums in.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

F32_EXACT = 1 << 24
F64_EXACT = 1 << 53


def exact_dtype(bound: float):
    """The float dtype that holds every integer of magnitude <= bound exactly."""
    if bound < F32_EXACT:
        return np.float32
    if bound < F64_EXACT:
        return np.float64
    raise OverflowError(f"integer sums up to {bound:.3g} exceed float64's exact range")


def dense(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x (B, in) @ w(out, in).T"""
    return x @ w.T


def _im2col(x, kernel, stride, padding, dilation):
    """(B, C, H, W) -> (B, C, kH, kW, Ho, Wo) view of the receptive fields (a copy only for padding)."""
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = kernel
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # (B, C, Ho, Wo, kH, kW)
    return win


def conv2d(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """torch.nn.functional.conv2d without bias: x (B, C, H, W), w (O, C/groups, kH, kW)."""
    b, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    win = _im2col(x, (kh, kw), stride, padding, dilation)
    ho, wo = win.shape[2:4]
    if groups == 1:
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, c * kh * kw)
        out = cols @ w.reshape(o, -1).T
        return out.reshape(b, ho, wo, o).transpose(0, 3, 1, 2)
    og = o // groups
    if cg == 1 and og == 1:  # depthwise: one filter per channel
        return np.einsum("bchwij,cij->bchw", win, w[:, 0], optimize=True)
    wins = win.reshape(b, groups, cg, ho, wo, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    cols = wins.reshape(groups, b * ho * wo, cg * kh * kw)
    out = cols @ w.reshape(groups, og, cg * kh * kw).transpose(0, 2, 1)  # (g, B*Ho*Wo, og)
    return out.reshape(groups, b, ho, wo, og).transpose(1, 0, 4, 2, 3).reshape(b, o, ho, wo)


def zero_insert(x, dilation):
    """(B, C, H, W) -> (B, C, d0*(H-1)+1, d1*(W-1)+1): ``d - 1`` zeros between neighbouring values."""
    b, c, h, w = x.shape
    out = np.zeros((b, c, dilation[0] * (h - 1) + 1, dilation[1] * (w - 1) + 1), x.dtype)
    out[:, :, ::dilation[0], ::dilation[1]] = x
    return out


def avg_pool2d(x, kernel, stride, padding=(0, 0)):
    """torch's avg_pool2d with count_include_pad=True."""
    win = _im2col(x, kernel, stride, padding, (1, 1))
    return win.mean(axis=(4, 5))


# ---- the rest of the array namespace every op's ``ann`` reads (torch_ann.TorchKernels is the other)

def max_pool2d(x, kernel, stride, padding=(0, 0), dilation=(1, 1)):
    """torch's max_pool2d: padding counts as -inf."""
    (ph, pw), (sh, sw), (dh, dw) = padding, stride, dilation
    kh, kw = kernel
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return win[:, :, ::sh, ::sw, ::dh, ::dw].max(axis=(4, 5))


def adaptive_windows(n_in: int, n_out: int) -> list:
    """torch's adaptive pool windows along one axis: [start, end) of output cell i."""
    return [(i * n_in // n_out, -(-(i + 1) * n_in // n_out)) for i in range(n_out)]


def adaptive_avg_pool2d(x, output_size):
    """torch's adaptive_avg_pool2d: x (B, C, H, W) -> (B, C, oh, ow)."""
    rows, cols = adaptive_windows(x.shape[2], output_size[0]), adaptive_windows(x.shape[3], output_size[1])
    out = np.empty(x.shape[:2] + tuple(output_size), np.result_type(x.dtype, np.float32))
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out


@lru_cache(maxsize=64)
def window_matrices(rows, cols, h, w):
    """The per-axis averaging matrices of a window pool (ops.WindowAvgPool2d): ``a_rows[i, r] = 1 /
    count`` over window i's rows (oh, h), ``a_cols`` alike (ow, w); one pair per pool and map size
    (cached: the torch kernels keep a tensor per array they are given)."""
    mats = []
    for windows, n in ((rows, int(h)), (cols, int(w))):
        a = np.zeros((len(windows), n))
        for i, (start, end, count) in enumerate(windows):
            a[i, start:end] = 1.0 / count
        mats.append(a)
    return tuple(mats)


def separable_pool(x, a_rows, a_cols):
    """(B, C, H, W) -> (B, C, oh, ow): ``a_rows @ x @ a_cols.T`` on every map."""
    return a_rows @ x @ a_cols.T


def concat(xs):
    """Batched samples joined along their first axis (the channels): np.concatenate on axis 1."""
    return np.concatenate(xs, axis=1)


def take_channels(x, index):
    """Batched samples' channels (axis 1) in the order of ``index`` (integers)."""
    return x[:, np.asarray(index)]


def relu(x):
    return np.maximum(x, 0.0)


def const(a):
    """A parameter (numpy, float64) as this namespace's arrays."""
    return np.asarray(a, np.float64)


def in_float64(fn, x):
    """``fn(x)`` computed in float64 (numpy's readings already are)."""
    return fn(x)
