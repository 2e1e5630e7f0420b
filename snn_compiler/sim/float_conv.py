"""Grouped convolutions of the event-driven engine as float32 convolutions in torch, exactly.

A conv of groups wider than the grouped pass takes (ResNeXt's 4 to 32 channels a group, RegNetX's 16)
had only the scatter left: a run of a group's few outputs added per spike and tap, its ~6 ns overhead
paid for a handful of weights. torch's CPU convolution (oneDNN, channels-last, as the engine keeps its
maps) runs it on every value at vector speed: RegNetX-400MF, 32 images at T = 64, 1.31 -> 0.58 s.

It is exact: the plan runs a weighted op in int32 only where it proved every sum below 2**24
(:class:`.fast.FastPlan`, ``plan.Plan._weights``), so every product and partial sum of the float32
convolution is an integer float32 holds, in whatever order it adds them (the torch engine's argument,
under the same :func:`.torch_engine.exact_kernels`: no NNPACK, no TF32). :func:`available` also checks
it here, on a grouped conv with the extreme sums, against numpy's integers; else the scatter runs.
"""
from __future__ import annotations

import functools

import numpy as np

from . import int_gemm


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """torch's float32 conv runs here and gives the integers (``SNNC_FLOAT_CONV=0`` turns it off)."""
    if int_gemm.torch_if_on("SNNC_FLOAT_CONV") is None:
        return False
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (3, 5, 5, 32)).astype(np.uint8)
    x[0] = 1
    w = rng.integers(-128, 128, (16, 8, 3, 3)).astype(np.float32)
    w[0] = -128  # on the first sample's ones: -128 x 72 at every inner pixel
    got = conv(x, weight(w), ((1, 1), (1, 1), (1, 1)), 4)
    return bool(np.array_equal(got, _numpy_conv(x, w, 4)))


def weight(w: np.ndarray):
    """A conv's (O, cg, kh, kw) float32 weights as the channels-last tensor :func:`conv` takes."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(w, np.float32)).contiguous(memory_format=torch.channels_last)


def conv(x: np.ndarray, w, geometry, groups: int) -> np.ndarray:
    """x (F, H, W, C) integers, channels-last -> (F, Ho, Wo, O) int32 sums of the grouped conv with
    :func:`weight` ``w``; ``geometry`` (stride, padding, dilation)."""
    import torch
    from .torch_engine import exact_kernels
    int_gemm.use_threads(torch)
    stride, padding, dilation = geometry
    with exact_kernels(torch.device("cpu")):
        xt = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()   # NCHW, channels-last strides
        y = torch.nn.functional.conv2d(xt, w, None, tuple(stride), tuple(padding), tuple(dilation), groups)
        return y.to(torch.int32).permute(0, 2, 3, 1).contiguous().numpy()


def _numpy_conv(x, w, groups):
    """The self-test's reference: a stride-1, padding-1 grouped 3x3 conv in int64 numpy."""
    n, h, wd, c = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    pad = np.zeros((n, h + 2, wd + 2, c), np.int64)
    pad[:, 1:-1, 1:-1] = x
    out = np.zeros((n, h, wd, o), np.int64)
    wi = w.astype(np.int64)
    for g in range(groups):
        for ky in range(kh):
            for kx in range(kw):
                patch = pad[:, ky:ky + h, kx:kx + wd, g * cg:(g + 1) * cg]
                out[..., g * og:(g + 1) * og] += patch @ wi[g * og:(g + 1) * og, :, ky, kx].T
    return out
