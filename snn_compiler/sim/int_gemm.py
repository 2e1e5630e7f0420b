"""The dense exact method of the event-driven engine: int8 x int8 products summed in int32.

Spikes are 0/1 and 8-bit synapses are int8, so a weighted op over a chunk's frames is one
integer matrix product whose int32 sums are exact wherever the op's proved bound fits (the plan
keeps int32 sums only below 2**24). ``torch._int_mm`` runs it on the CPU's integer dot-product
instructions (AVX-512 VNNI here: ~4x float32's GEMM), so a busy layer costs less dense than one
weight run added per spike. A conv becomes that product through an im2col of its channels-last
input (numba, in blocks of :data:`COLS_BYTES`).

Which method runs is a matter of speed only: both give the same integers. :func:`cheaper` picks
from the layer's shape and its input's measured density (costs fitted on this machine's CPU, an
Intel Rocket Lake Xeon with AVX-512 VNNI, one thread; see benchmarks/README.md). :func:`available` says whether the
product runs here and is exact: torch importable, a CPU torch reports vector integer support for,
and a self-test against numpy's int64 product on values at int8's ends. Otherwise the scatter runs.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys

import numpy as np

COLS_BYTES = 1 << 24   # one im2col block: bounded memory whatever the chunk

# Fitted costs (ns): a scatter adds one weight run per nonzero input and tap, SCATTER_NS + og *
# SCATTER_NS_PER_OUT each; the product costs about GEMM_PS_PER_MAC + GEMM_PS_NARROW / out per
# multiply-add (narrow outputs use the integer units poorly), plus IM2COL_NS_PER_BYTE per column byte.
SCATTER_NS = 6.0
SCATTER_NS_PER_OUT = 0.048
GEMM_PS_PER_MAC = 0.6
GEMM_PS_NARROW = 550.0
IM2COL_NS_PER_BYTE = 0.1


def torch_if_on(variable: str):
    """torch, or None where ``variable`` is 0 in the environment (a switch of an exact method that runs
    in torch) or torch is not installed (the core without torch: the Lava environment)."""
    if os.environ.get(variable, "1") == "0":
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """The int8 product runs here, exactly (``SNNC_INT_GEMM=0`` turns it off)."""
    torch = torch_if_on("SNNC_INT_GEMM")
    if torch is None or not hasattr(torch, "_int_mm") or torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return False
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (37, 300), dtype=np.int8)
    b = rng.integers(-128, 128, (300, 19), dtype=np.int8)
    a[0], b[:, 0] = -128, -128  # the extreme product sums: 300 * 2**14
    try:
        got = torch._int_mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    except RuntimeError:
        return False
    return bool(np.array_equal(got.astype(np.int64), a.astype(np.int64) @ b.astype(np.int64)))


_threads = {"want": None, "before": None}


@contextlib.contextmanager
def threads(n: int):
    """Products inside run on ``n`` threads (numba's count: a run limited to one thread, e.g. a Ray
    worker's, keeps torch's pool to one too); torch's own setting is restored after, if a product
    changed it (torch is imported by the first product, not here)."""
    _threads["want"], _threads["before"] = max(1, n), None
    try:
        yield
    finally:
        if _threads["before"] is not None:
            sys.modules["torch"].set_num_threads(_threads["before"])
        _threads["want"] = _threads["before"] = None


def use_threads(torch) -> None:
    """torch's thread count to the one :func:`threads` asked for (inside it; the first change saves torch's own)."""
    want = _threads["want"]
    if want is not None and torch.get_num_threads() != want:
        if _threads["before"] is None:
            _threads["before"] = torch.get_num_threads()
        torch.set_num_threads(want)


def int8_parts(w: np.ndarray):
    """``w`` (K, N) integers as int8 matrices ``[(part, multiplier)]`` with ``w == sum(part * multiplier)``:
    itself for int8 weights, a high and a low byte for 16-bit ones (a residual's shortcut, scaled to
    its add's threshold), None beyond. Weights that share a power-of-two factor 2**e (an op's weight
    exponent: ``weight_int << weight_exp``) with ``w >> e`` within int8 are one part with multiplier 2**e:
    one product instead of two (DenseNet's composed 1x1 convs). Each part's int32 sums stay exact while
    ``K * 128 * 128 < 2**31``; a multiplier scales a sum the plan proves fits int32."""
    w = np.asarray(w)
    if w.shape[0] * 128 * 128 >= 1 << 31:
        return None
    if w.dtype == np.int8:
        return [(np.ascontiguousarray(w), 1)]
    wide = w.astype(np.int64)
    bits = int(np.bitwise_or.reduce(wide, axis=None)) if w.size else 0
    shift = (bits & -bits).bit_length() - 1 if bits else 0   # the trailing zero bits every weight shares
    if shift:
        scaled = wide >> shift
        if scaled.min(initial=0) >= -128 and scaled.max(initial=0) <= 127:
            return [(np.ascontiguousarray(scaled.astype(np.int8)), 1 << shift)]
    low = ((w.astype(np.int32) + 128) % 256 - 128).astype(np.int8)
    high = (w.astype(np.int32) - low) // 256
    if high.min(initial=0) < -128 or high.max(initial=0) > 127:
        return None
    return [(np.ascontiguousarray(low), 1), (np.ascontiguousarray(high.astype(np.int8)), 256)]


def matmul(a: np.ndarray, parts, out: np.ndarray) -> None:
    """``out = a @ w`` exactly, ``w`` given as :func:`int8_parts`: a (M, K) int8 (0/1 spikes as uint8
    are viewed as int8), out (M, N) int32, contiguous rows."""
    import torch
    use_threads(torch)
    if a.dtype == np.uint8:
        a = a.view(np.int8)
    ta, to = _rows(a), _rows(out)
    (first, mult), rest = parts[0], parts[1:]
    torch._int_mm(ta, _rows(first), out=to)
    if mult != 1:
        to.mul_(mult)
    for part, mult in rest:
        to.add_(torch._int_mm(ta, _rows(part)), alpha=mult)


def _rows(x: np.ndarray):
    """``x`` (a C-ordered matrix) as a torch tensor with the canonical row strides. numpy calls a
    matrix with a length-1 axis contiguous whatever that axis's stride (a transposed (2, 1) weight
    is (1, 2) with strides (1, 1)), and ``_int_mm`` reads such strides as a transposed layout: wrong
    sums (found by the engines' hypothesis test on a 1-input Dense)."""
    import torch
    if not x.flags.c_contiguous:
        raise ValueError("the int8 product takes C-ordered matrices")
    return torch.from_numpy(x).as_strided(x.shape, (x.shape[1], 1))


def cheaper(density: float, taps_per_input: float, inputs: int, outputs_per_tap: int, positions: int,
            k: int, n: int, cols: bool, parts: int = 1) -> bool:
    """Whether the product costs less than the scatter for one frame: ``inputs`` values at ``density``
    each adding ``taps_per_input`` runs of ``outputs_per_tap`` weights, against ``positions`` output
    rows of ``parts`` (k x n) products (and their im2col, ``cols``)."""
    scatter = density * inputs * taps_per_input * (SCATTER_NS + outputs_per_tap * SCATTER_NS_PER_OUT)
    gemm = parts * positions * k * n * (GEMM_PS_PER_MAC + GEMM_PS_NARROW / n) * 1e-3
    if cols:
        gemm += positions * k * IM2COL_NS_PER_BYTE
    return gemm < scatter


def conv(x: np.ndarray, parts, out: np.ndarray, geometry) -> None:
    """A groups-1 conv as products: x (F, H, W, C) int8/uint8 channels-last, ``parts`` the
    :func:`int8_parts` of its (kh*kw*C, O) weights in (ky, kx, c) row order, out (F, Ho, Wo, O)
    int32; ``geometry`` (kh, kw, stride, padding, dilation) of the op."""
    from . import numba_kernels as K
    kh, kw, stride, padding, dilation = geometry
    n_f, ho, wo, n_out = out.shape
    k = parts[0][0].shape[0]
    per_frame = ho * wo * k
    block = max(1, COLS_BYTES // max(1, per_frame))
    xs = x.view(np.int8) if x.dtype == np.uint8 else x
    flat = out.reshape(n_f * ho * wo, n_out)
    if (kh, kw) == (1, 1) and tuple(stride) == (1, 1) and not any(padding) and x.flags.c_contiguous:
        # a pointwise conv reads each pixel's channels as they lie: the input is its own im2col (DenseNet's
        # 1x1 convs, one per concatenated part: the copy was a third of their time)
        matmul(xs.reshape(n_f * ho * wo, k), parts, flat)
        return
    cols = np.empty((min(block, n_f) * ho * wo, k), np.int8)
    for f0 in range(0, n_f, block):
        nb_f = min(block, n_f - f0)
        c = cols[:nb_f * ho * wo]
        K.im2col_hwc(xs[f0:f0 + nb_f], kh, kw, stride[0], stride[1], padding[0], padding[1], dilation[0],
                     dilation[1], c.reshape(nb_f, ho, wo, k))
        matmul(c, parts, flat[f0 * ho * wo:(f0 + nb_f) * ho * wo])
