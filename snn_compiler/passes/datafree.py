"""Data-free activation estimates: each neuron's pre-activation as a Gaussian, propagated from an
assumed input distribution (the default of ``--norm model`` without calibration data).

Every value the network computes is modelled per element i (channel and position) by its mean
m_i and variance v_i, in the trained network's units:

    Input:            m = 1/2, v = 1/12              (x uniform on [0, 1]: the documented assumption)
    Dense / Conv2d:   m' = W m + b                   (the op's own ANN reading)
                      v' = (|W| s) sqrt(W^2 v)       (s = sqrt(v); see below)
    AvgPool2d:        m' = pool(m),  v' = pool(s) sqrt(pool(v) / (kh kw))
    Flatten:          reshape;  Add: m' = sum m,  v' = (sum s) sqrt(sum v)
    IF (ReLU):        z ~ N(m, v), a = relu(z):  E[a] = m Phi(m/s) + s phi(m/s),
                      E[a^2] = (m^2 + v) Phi(m/s) + m s phi(m/s)

A weighted sum's standard deviation lies between two limits: sqrt(W^2 v) when its inputs are
independent and |W| s (the largest possible, Minkowski) when they are fully correlated. Real
activations are neither (neighbouring pixels and a layer's features co-vary), so the estimate
takes the geometric mean of the two standard deviations. Independence alone underestimated the
spread of the digits nets' deeper layers (their output scale came out 40x too small, and a
spike-count read-out lost 5 pt); the upper limit overestimated it (the no-BN CNN lost 14 pt at
T = 8); the geometric mean put every layer's scale within 0.8-1.6x of the calibrated one.

A Dense/Conv2d that absorbed a BatchNorm (``fold_batchnorm`` records ``bn_stats`` on its node)
replaces the propagated estimate by what the BatchNorm's training statistics say (as ZeroQ, Cai
et al. 2020, reads them): the BN output ``gamma (z - mean) / sqrt(var + eps) + beta`` has, over
the training data, mean ``beta`` and variance ``gamma^2 var / (var + eps)`` in every channel.
That is measured on the real data, so it corrects the independence assumption where present.

A layer's scale lambda is then what calibration would take from this distribution: the
``percentile`` P of all its activation values, i.e. the lambda > 0 with

    mean_i Q((lambda - m_i) / s_i) = 1 - P / 100        (Q the Gaussian tail; bisection)

and its expected firing rate is ``mean_i E[clip(z_i, 0, lambda)] / lambda`` with
``E[clip(z, 0, l)] = E[relu(z)] - E[relu(z - l)]``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import inputs_of, op_of, topo_order
from ..ir import ops as O

INPUT_MEAN, INPUT_VAR = 0.5, 1.0 / 12.0   # x ~ U[0, 1] per element
BN_STATS = "bn_stats"                      # node attribute set by fold_batchnorm: (mean, std) per channel


def _erfc(x):
    """Complementary error function, vectorised (W. J. Cody's rational fit via Numerical Recipes'
    erfc: relative error < 1.2e-7 everywhere)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277)))))))))
    r = t * np.exp(poly)
    return np.where(x >= 0, r, 2.0 - r)


def gauss_cdf(x):
    return 0.5 * _erfc(-np.asarray(x, np.float64) / np.sqrt(2.0))


def gauss_pdf(x):
    return np.exp(-0.5 * np.square(x)) / np.sqrt(2.0 * np.pi)


def relu_mean(m, s):
    """E[relu(z)] for z ~ N(m, s^2), elementwise (s = 0: max(m, 0))."""
    m, s = np.asarray(m, np.float64), np.asarray(s, np.float64)
    safe = np.where(s > 0, s, 1.0)
    a = m / safe
    out = m * gauss_cdf(a) + safe * gauss_pdf(a)
    return np.where(s > 0, out, np.maximum(m, 0.0))


def relu_moments(m, v):
    """(mean, variance) of relu(z) for z ~ N(m, v), elementwise."""
    m, v = np.asarray(m, np.float64), np.maximum(np.asarray(v, np.float64), 0.0)
    s = np.sqrt(v)
    safe = np.where(s > 0, s, 1.0)
    a = m / safe
    cdf, pdf = gauss_cdf(a), gauss_pdf(a)
    mean = np.where(s > 0, m * cdf + safe * pdf, np.maximum(m, 0.0))
    second = np.where(s > 0, (m * m + v) * cdf + m * safe * pdf, np.maximum(m, 0.0) ** 2)
    return mean, np.maximum(second - mean * mean, 0.0)


def positive_quantile(m, s, percentile: float) -> float:
    """The ``percentile`` of all values relu(z_i), z_i ~ N(m_i, s_i^2) taken with equal weight; 0 when
    at most 1 - P/100 of the mass is positive."""
    m, s = np.ravel(m).astype(np.float64), np.ravel(s).astype(np.float64)
    tail = 1.0 - percentile / 100.0

    def above(lam):  # fraction of the mixture above lam
        safe = np.where(s > 0, s, 1.0)
        return float(np.mean(np.where(s > 0, 1.0 - gauss_cdf((lam - m) / safe), (m > lam).astype(np.float64))))

    if above(0.0) <= tail:
        return 0.0
    hi = float(np.max(m + 10.0 * s))
    if tail <= 0.0:
        return hi
    lo = 0.0
    for _ in range(60):  # halves [lo, hi] to 2**-60 of the span: well inside float64's precision
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if above(mid) > tail else (lo, mid)
    return hi


def expected_rate(m, s, lam: float) -> float:
    """mean_i E[clip(z_i, 0, lam)] / lam for z_i ~ N(m_i, s_i^2)."""
    return float(np.mean(relu_mean(m, s) - relu_mean(np.asarray(m) - lam, s)) / lam)


def _squared(op):
    return dataclasses.replace(op, weight=np.square(np.asarray(op.weight, np.float64)), bias=None)


def _absolute(op):
    return dataclasses.replace(op, weight=np.abs(np.asarray(op.weight, np.float64)), bias=None)


def _spread(sd_correlated, var_independent):
    """The variance of a weighted sum: the geometric mean of its two limits' standard deviations,
    inputs independent (sqrt(sum w^2 v)) and fully correlated (sum |w| s, the largest possible)."""
    return sd_correlated * np.sqrt(var_independent)


def preactivations(graph) -> dict:
    """``{neuron layer: (m, s)}``: each neuron's estimated pre-activation mean and standard
    deviation (arrays of the layer's shape), propagated as in the module docstring."""
    mean, var, pre = {}, {}, {}
    for n in topo_order(graph):
        op = op_of(graph, n)
        ins = inputs_of(graph, n)
        if isinstance(op, O.Input):
            shape = (1,) + tuple(graph.nodes[n]["shape"])
            mean[n], var[n] = np.full(shape, INPUT_MEAN), np.full(shape, INPUT_VAR)
        elif isinstance(op, O.WEIGHTED):
            mean[n] = op.ann([mean[ins[0]]])
            var[n] = _spread(_absolute(op).ann([np.sqrt(var[ins[0]])]), _squared(op).ann([var[ins[0]]]))
            stats = graph.nodes[n].get(BN_STATS)
            if stats is not None:
                bm, bs = (np.asarray(a, np.float64).reshape((1, -1) + (1,) * (mean[n].ndim - 2)) for a in stats)
                mean[n] = np.broadcast_to(bm, mean[n].shape).copy()
                var[n] = np.broadcast_to(bs * bs, var[n].shape).copy()
        elif isinstance(op, O.AvgPool2d):
            area = op.kernel_size[0] * op.kernel_size[1]
            mean[n] = op.ann([mean[ins[0]]])
            var[n] = _spread(op.ann([np.sqrt(var[ins[0]])]), op.ann([var[ins[0]]]) / area)
        elif isinstance(op, O.Flatten):
            mean[n], var[n] = op.ann([mean[ins[0]]]), op.ann([var[ins[0]]])
        elif isinstance(op, O.Add):
            mean[n] = sum(mean[i] for i in ins)
            var[n] = _spread(sum(np.sqrt(var[i]) for i in ins), sum(var[i] for i in ins))
        elif isinstance(op, O.Neuron):
            (src,) = ins
            pre[n] = (mean[src][0], np.sqrt(np.maximum(var[src][0], 0.0)))
            mean[n], var[n] = relu_moments(mean[src], var[src])
        else:  # the structural passes leave none of these before normalize
            raise ValueError(f"data-free estimate: node {n!r} is a {O.kind(op)}, which the SNN form does not hold")
    return pre
