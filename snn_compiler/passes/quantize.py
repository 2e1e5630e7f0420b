"""Quantize a normalised graph into the integer SNN (N-bit signed synapses, per-layer scale).

For neuron layer N with incoming ops k (normalised float weights W'_k, biases b'_k) whose
sources send integer values of float size u_k (1 for a spike; 1/levels for the graded input;
divided by the window area when the op reads through a synaptic pool, which sums the window):

    m_k    = max |W'_k| * u_k
    theta  = clip(round(wmax / min_k m_k), 1, threshold_max)   wmax = 2**(bits-1) - 1
             (and small enough that no e_k exceeds the register's weight_exp_max)
    e_k    = max(0, ceil(log2(m_k * theta / (wmax + 1/2))))   (the op's weight_exp)
    W_int  = clip(round(W'_k * u_k * theta / 2**e_k), -wmax, wmax)
    bias   = round(sum_k b'_k * theta)     (then rounded to the register format, if it has one)
    v_init = theta // 2  (--v-init half)  or 0

One integer unit is 1/theta of a threshold, so every op entering N (both branches of a residual
join included) is in the same units; the op with the smallest weights sets theta and keeps all
N bits, a larger one (typically an identity skip) is shifted left by its exponent instead of
squeezing the other's weights into a few levels. Saturation at threshold_max trades weight precision for a
threshold the register can hold. The pass records worst-case per-step currents and membrane
ranges over ``config.timesteps`` in ``graph.graph['snnc']['ranges']`` for targets to check.
"""
from __future__ import annotations

import numpy as np

from ..ir import op_of, topo_order
from ..ir import ops as O
from ..ir.layers import incoming, neuron_layers, source_and_area


def fit_bias(bias: np.ndarray, registers, layer: str) -> np.ndarray:
    """Round integer biases to ``mantissa << exponent``; refuse what the register cannot hold."""
    mb = registers.bias_mantissa_bits
    if mb is None:
        return bias
    mmax, emax = (1 << (mb - 1)) - 1, (1 << registers.bias_exponent_bits) - 1
    if np.abs(bias).max(initial=0) > mmax << emax:
        raise ValueError(f"layer {layer!r}: bias {int(np.abs(bias).max())} exceeds the {mb}-bit mantissa "
                         f"with {registers.bias_exponent_bits}-bit exponent (max {mmax << emax})")
    exp = np.zeros(bias.shape, np.int64)
    big = np.abs(bias) > mmax
    exp[big] = np.ceil(np.log2(np.abs(bias[big]) / mmax)).astype(np.int64)
    mant = np.clip(np.rint(bias / (1 << exp)), -mmax, mmax).astype(np.int64)
    return mant << exp


def _per_neuron_bounds(w_int, in_max, signed_in):
    """(low, high) worst-case sums of one op per output channel/neuron."""
    w = w_int.reshape(w_int.shape[0], -1).astype(np.int64)
    pos, neg = np.where(w > 0, w, 0).sum(1), np.where(w < 0, w, 0).sum(1)
    if signed_in:
        return -(pos - neg) * in_max, (pos - neg) * in_max
    return neg * in_max, pos * in_max


def quantize(graph, config) -> bool:
    state = graph.graph.setdefault("snnc", {})
    if state.get("quantized"):
        return False
    if not state.get("normalized"):
        raise ValueError("quantize needs a normalised graph (run normalize first)")
    regs = config.registers
    wmax = (1 << (config.bits - 1)) - 1
    ranges = {}
    for n in neuron_layers(graph, topo_order(graph)):
        ops = incoming(graph, n)
        units = {}
        for k in ops:
            name, area = source_and_area(graph, k)
            src = op_of(graph, name)
            levels = src.levels if isinstance(src, O.Input) else 1
            units[k] = (1.0 / (levels * area), levels * area, isinstance(src, O.Input) and src.signed)
        mk = {k: float(np.abs(op_of(graph, k).weight).max(initial=0.0)) * units[k][0] for k in ops}
        m = min((v for v in mk.values() if v > 0), default=0.0)
        theta = int(np.clip(np.rint(wmax / m), 1, regs.threshold_max)) if m > 0 else regs.threshold_max
        big = max(mk.values())
        if big > 0:  # the largest connection must fit wmax << weight_exp_max
            theta = max(1, min(theta, int((wmax + 0.5) * 2 ** regs.weight_exp_max / big)))
        layer = op_of(graph, n)
        bias = np.zeros(graph.nodes[n]["shape"][:1] + (1,) * (len(graph.nodes[n]["shape"]) - 1))
        lo = hi = 0
        for k in ops:
            op = op_of(graph, k)
            op.weight_exp = min(regs.weight_exp_max,
                                max(0, int(np.ceil(np.log2(mk[k] * theta / (wmax + 0.5))))) if mk[k] > 0 else 0)
            op.weight_int = np.clip(np.rint(op.weight * units[k][0] * theta / 2.0 ** op.weight_exp),
                                    -wmax, wmax).astype(np.int32)
            if op.bias is not None:
                bias = bias + op.bias.reshape(bias.shape) * theta
            l, h = _per_neuron_bounds(O.effective_weights(op), units[k][1], units[k][2])
            lo, hi = lo + l, hi + h
        layer.threshold = theta
        layer.bias = fit_bias(np.rint(bias).astype(np.int64), regs, n)
        layer.v_init = theta // 2 if config.v_init == "half" and not isinstance(layer, O.Output) else 0
        layer.step = 1.0 / theta
        b = layer.bias.reshape(-1)
        lo, hi = np.broadcast_to(lo + b, np.broadcast(lo, b).shape), np.broadcast_to(hi + b, np.broadcast(hi, b).shape)
        cur = [int(lo.min()), int(hi.max())]
        v_lo = min(layer.v_init, layer.v_init + config.timesteps * cur[0])
        v_hi = max(theta - 1, layer.v_init) + max(cur[1], 0) if not isinstance(layer, O.Output) else config.timesteps * max(cur[1], 0)
        ranges[n] = {"current": cur, "membrane": [int(v_lo), int(v_hi)],
                     "current_fits": max(-cur[0], cur[1]) <= regs.current_max,
                     "membrane_saturates": max(-v_lo, v_hi) > regs.v_max}
    state.update(quantized=True, bits=config.bits, reset=config.reset, v_init=config.v_init,
                 membrane_bits=regs.membrane_bits, timesteps=config.timesteps, ranges=ranges)
    return True
