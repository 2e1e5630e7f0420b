"""Quantize a normalised graph into the integer SNN (N-bit signed synapses, per-layer scale).

For neuron layer N with incoming ops k (normalised float weights W'_k, biases b'_k) whose
sources send integer values of float size u_k (1 for a spike; 1/levels for the graded input;
divided by the window area when the op reads through a synaptic pool, which sums the window):

    m_k    = max |W'_k| * u_k
    theta  = clip(round(wmax / min_k m_k) * gain, 1, min(threshold_max, v_max))   wmax = 2**(bits-1) - 1
             (gain = 2**6 for a leaky layer: fraction bits for its decay, see ir/neuron.py)
             (and small enough that no e_k exceeds the register's weight_exp_max)
    e_k    = max(0, ceil(log2(m_k * theta / (wmax + 1/2))))   (the op's weight_exp)
    W_int  = clip(round(W'_k * u_k * theta / 2**e_k), -wmax, wmax)
    bias   = round(sum_k b'_k * theta)     (then rounded to the register format, if it has one)
    v_init = theta // 2  (--v-init half, converted hidden layers; QCFS layers always)  or 0
    decay_v = round((1 - beta) * 4096)   (leaky layers; reset and membrane width from the config)

One integer unit is 1/theta of a threshold, so every op entering N (both branches of a residual
join included) is in the same units; the op with the smallest weights sets theta and keeps all
N bits, a larger one (typically an identity skip) is shifted left by its exponent instead of
squeezing the other's weights into a few levels. Saturation at threshold_max trades weight precision for a
threshold the register can hold. The pass records worst-case per-step currents and membrane
ranges over ``config.timesteps`` in ``graph.graph['snnc']['ranges']`` for targets to check (a
layer with current memory, ``decay_u < 4096``, records what its current register ``u`` can
accumulate: :func:`snn_compiler.ir.neuron.current_range`; such a layer's theta is lowered until that
worst case fits ``current_bits``, trading weight levels for a register that never wraps), and
the register widths it used in ``graph.graph['snnc']['registers']`` (the artifact loader checks
every integer against them).

Nothing wraps: the pass refuses, naming the layer, a bias the bias register (or, without a bias
format, the current register) cannot hold, checked in float before any integer conversion; a
connection whose weights all quantize to zero, or to one level where the float weights had
several; and a connection or layer whose worst-case sum leaves the simulators' exact range
(2**53 per connection in float64 BLAS, 2**62 per layer in int64).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict

import numpy as np

from ..ir.registers import MAX_EXACT_SUM, MAX_LAYER_SUM, signed_max
from ..ir import input_node, op_of, topo_order
from ..sim.encode import input_gain
from ..ir import neuron as N
from ..ir import ops as O
from ..ir.layers import incoming, neuron_layers, signed_row_sums, source_and_area, weight_bounds
from ..row_blocks import for_row_blocks


def memory_gain(layer) -> float:
    """How many steps of input a layer's state sums at most: ``4096 / decay_u`` for its current memory
    times ``4096 / decay_v`` for its leak (1 for IF without memory; a decay of 0 counts as one step,
    the bound the run length sets instead). A trained layer with this gain has per-step weights this
    many times smaller than its threshold's units would suggest."""
    g = N.DECAY_ONE / layer.decay_u if 0 < layer.decay_u < N.DECAY_ONE else 1.0
    if layer.leaky:
        dv = int(np.min(N.quantize_decay(layer.beta)))
        g *= N.DECAY_ONE / dv if dv > 0 else 1.0
    return g


def _check_levels(op, k, layer, theta, limit, per_unit, src_levels, regs, layer_op):
    """Refuse a connection whose weights lost all their information (all zero, or one level). When
    a register capped theta (``limit`` says which) the reason is its resolution, not the scale:
    one unit of the source (``per_unit`` thresholds at most) is worth less than one integer unit
    (1/theta); the message says why the weights are that small and what changes it."""
    w = op.weight
    if not np.any(w):
        return  # a connection that is zero in the float network stays zero
    wi = op.weight_int
    if not np.any(wi):
        why = "all quantize to zero"
    elif wi.min() == wi.max() and w.min() != w.max():
        why = f"all quantize to the single level {int(wi.flat[0])}"
    else:
        return
    if limit is None:
        raise ValueError(f"layer {layer!r}: the weights of {k!r} {why} at threshold {theta}; the layer's activation "
                         "scale does not fit its weights (check --norm / --layer-scale)")
    gain = memory_gain(layer_op)
    memory = (f" (its current memory (decay_u {int(layer_op.decay_u)}) and leak sum up to {gain:.0f} steps of input, "
              "so a trained layer's per-step weights are that much smaller than its threshold)" if gain > 1 else "")
    fix = (f"use fewer --input-bits (1 for spike input: one unit is then a whole spike, not 1/{src_levels} of one)"
           if src_levels > 1 else "scale the trained network's weights up and its threshold with them")
    raise ValueError(f"layer {layer!r}: the weights of {k!r} {why} at threshold {theta}, {limit}: one input "
                     "unit is worth at most "
                     f"{per_unit:.3g} thresholds, below one integer unit (1/{theta}){memory}; {fix}")


CURRENT_FIT_TRIES = 32  # thresholds tried, each lower, until a current memory's worst case fits its register
DECAY_WARN = 0.01   # a membrane decay that 12-bit rounding moves by more than this (relative) is warned about


def _decay_report(layer, beta) -> dict:
    """The membrane decay ``1 - beta`` and its 12-bit rounding (:func:`snn_compiler.ir.neuron.decay_rounding`),
    as ``snnc inspect`` lists it; warned about, naming the layer, beyond DECAY_WARN."""
    d, r, err = N.decay_rounding(1.0 - np.asarray(beta, np.float64))
    if err > DECAY_WARN:
        warnings.warn(f"layer {layer!r}: its membrane decay 1 - beta = {d:.6g} rounds to {round(r * N.DECAY_ONE)}/4096 = "
                      f"{r:.6g} (relative error {err:.2%}; Loihi's decays have 12 bits): the integer SNN leaks "
                      "differently from the float one", UserWarning, stacklevel=4)
    return {"decay": d, "rounded": r, "error": err if np.isfinite(err) else None}


def _largest_abs(w) -> float:
    """``max |w|`` (0 for no weights; NaN where any is) without an array of the absolute values."""
    w = np.asarray(w)
    return float(np.maximum(w.max(initial=0.0), -w.min(initial=0.0)))


def _integer_weights(w, unit, theta, exp, wmax):
    """``W_int = clip(rint(W' * u * theta / 2**e), -wmax, wmax)`` (int32) and its signed row sums
    (:func:`signed_row_sums`), in blocks of rows on the compile's threads: every element takes the
    same float steps whichever block holds it, in place after the first (no temporary per step)."""
    w = np.asarray(w)
    out = np.empty(w.shape, np.int32)
    pos, neg = np.empty(len(w), np.int64), np.empty(len(w), np.int64)

    def block(lo, hi):
        q = w[lo:hi] * unit
        q *= theta
        q /= 2.0 ** exp
        np.copyto(out[lo:hi], np.clip(np.rint(q, out=q), -wmax, wmax, out=q), casting="unsafe")
        pos[lo:hi], neg[lo:hi] = signed_row_sums(out[lo:hi], largest=wmax)

    for_row_blocks(block, len(w), w.size)
    return out, pos, neg


def _connections(graph, n, ops, units, mk, theta, limit, regs, wmax):
    """Quantize the weighted ops into layer ``n`` at threshold ``theta`` (weights, exponents, the
    level check; ``limit`` says what capped theta, if anything did). Returns the layer's float bias
    in integer units and the per-step worst-case current bounds (lo, hi) per neuron."""
    layer = op_of(graph, n)
    bias = np.zeros(graph.nodes[n]["shape"][:1] + (1,) * (len(graph.nodes[n]["shape"]) - 1))
    lo = hi = 0
    for k in ops:
        op = op_of(graph, k)
        need = np.log2(mk[k] * theta / (wmax + 0.5)) if mk[k] > 0 else 0.0  # finite: mk, theta finite
        op.weight_exp = int(min(regs.weight_exp_max, max(0, np.ceil(need))))
        op.weight_int, pos, neg = _integer_weights(op.weight, units[k][0], theta, op.weight_exp, wmax)
        _check_levels(op, k, n, theta, limit, mk[k], units[k][3], regs, layer)
        if op.bias is not None:
            bias = bias + op.bias.reshape(bias.shape) * theta
        # the effective weights are weight_int << weight_exp: bounded from the int32 weights' row sums
        bound = float((pos - neg).max(initial=0)) * 2.0 ** op.weight_exp * units[k][1]
        if bound >= MAX_EXACT_SUM:
            raise ValueError(f"layer {n!r}: the worst-case sum of {k!r} ({bound:.3g}) reaches 2**53, beyond what "
                             "the simulators add exactly; use fewer --bits or a smaller weight_exp_max")
        l, h = weight_bounds((pos << op.weight_exp, neg << op.weight_exp), units[k][1], units[k][2])
        lo, hi = lo + l, hi + h
    return bias, lo, hi


def _current_range(lo, hi, bias, decay_u, steps):
    """The current register's worst-case [low, high] over ``steps`` (its memory summed:
    :func:`snn_compiler.ir.neuron.current_range`), the integer bias included."""
    lo, hi = N.current_range(lo, hi, int(decay_u), steps)
    b = np.asarray(bias).reshape(-1)
    lo, hi = np.broadcast_to(lo + b, np.broadcast(lo, b).shape), np.broadcast_to(hi + b, np.broadcast(hi, b).shape)
    return [int(lo.min()), int(hi.max())]


def _current_top(lo, hi, bias, decay_u, steps) -> int:
    cur = _current_range(lo, hi, bias, decay_u, steps)
    return max(-cur[0], cur[1])


def quantize(graph, config) -> bool:
    state = graph.graph.setdefault("snnc", {})
    if state.get("quantized"):
        return False
    if not state.get("normalized"):
        raise ValueError("quantize needs a normalised graph (run normalize first)")
    regs = config.registers
    wmax = signed_max(config.bits)
    theta_max = min(regs.threshold_max, regs.v_max)  # a threshold above the membrane could never be reached
    ranges, decays = {}, {}
    for n in neuron_layers(graph, topo_order(graph)):
        ops = incoming(graph, n)
        units = {}
        for k in ops:
            name, area = source_and_area(graph, k)
            src = op_of(graph, name)
            levels = src.levels if isinstance(src, O.Input) else 1
            gain = input_gain(config.encoding, src) if isinstance(src, O.Input) else 1  # pso: k
            units[k] = (gain / (levels * area), levels * area, isinstance(src, O.Input) and src.signed, levels)
        mk = {k: _largest_abs(op_of(graph, k).weight) * units[k][0] for k in ops}
        if not all(np.isfinite(v) for v in mk.values()):
            raise ValueError(f"layer {n!r}: its normalised weights are not finite; check --norm / --layer-scale")
        m = min((v for v in mk.values() if v > 0), default=0.0)
        layer = op_of(graph, n)
        gain = 1 << N.LEAK_FRACTION_BITS if layer.leaky else 1
        theta = int(np.clip(np.rint(wmax / m) * gain, 1, theta_max)) if m > 0 else theta_max
        big = max(mk.values())
        if big > 0:  # the largest connection must fit wmax << weight_exp_max
            theta = max(1, min(theta, int(min((wmax + 0.5) * 2.0 ** regs.weight_exp_max / big, theta_max))))
        limit = f"the largest the {regs.threshold_bits}-bit threshold register holds" if theta == theta_max else None
        bias, lo, hi = _connections(graph, n, ops, units, mk, theta, limit, regs, wmax)
        if layer.decay_u != N.DECAY_ONE:  # what the current memory sums must fit the current register
            for _ in range(CURRENT_FIT_TRIES):
                top = _current_top(lo, hi, regs.round_bias(bias, n), layer.decay_u, config.timesteps)
                if top <= regs.current_max or theta == 1:
                    break
                # a little under the proportional step: rounded weights need not shrink in proportion
                theta = max(1, min(theta - 1, int(theta * regs.current_max / top * (1 - 2.0 ** -8))))
                limit = (f"the largest at which the {regs.current_bits}-bit current register holds what its current "
                         f"memory (decay_u {int(layer.decay_u)}) sums over {config.timesteps} steps")
                bias, lo, hi = _connections(graph, n, ops, units, mk, theta, limit, regs, wmax)
        if layer.decay_u != N.DECAY_ONE and np.any(bias != 0):
            warnings.warn(f"layer {n!r}: it has current memory (decay_u {int(layer.decay_u)}) and a bias; the integer "
                          "SNN adds the bias to the membrane each step (Loihi's bias register), while the float SNN "
                          "and the trained network add it to the current, which sums it up to "
                          f"{f'{N.DECAY_ONE / layer.decay_u:.0f} times' if layer.decay_u else 'every step'}: their "
                          "spikes differ (train CUBA layers' "
                          "weighted ops without bias)", UserWarning, stacklevel=3)
        layer.threshold = theta
        layer.bias = regs.round_bias(bias, n)
        layer.v_init = theta // 2 if N.starts_half(layer, config.v_init == "half") else 0
        layer.membrane_bits = regs.membrane_bits
        if layer.spike_value is None:  # a converted layer takes --reset; a trained one keeps its own
            layer.reset = config.reset
        layer.decay_v = N.quantize_decay(layer.beta) if layer.leaky else None
        if layer.leaky:
            decays[n] = _decay_report(n, layer.beta)
        layer.step = 1.0 / theta
        cur = _current_range(lo, hi, layer.bias, layer.decay_u, config.timesteps)  # the current register's memory
        if max(-cur[0], cur[1]) + regs.v_max >= MAX_LAYER_SUM:
            raise ValueError(f"layer {n!r}: worst-case current {cur} would overflow the simulators' int64 "
                             "membrane arithmetic; use fewer --bits or a smaller weight_exp_max")
        # a leak stops accumulation at the fixed point I * 4096 / decay_v: at most `steps` currents
        steps = config.timesteps
        if layer.leaky and layer.decay_v.min() > 0:
            steps = min(steps, -(-N.DECAY_ONE // int(layer.decay_v.min())))
        v_lo = min(layer.v_init, layer.v_init + steps * cur[0])
        v_hi = max(theta - 1, layer.v_init) + max(cur[1], 0) if not O.is_readout(layer) else steps * max(cur[1], 0)
        ranges[n] = {"current": cur, "membrane": [int(v_lo), int(v_hi)],
                     "current_fits": max(-cur[0], cur[1]) <= regs.current_max,
                     "membrane_saturates": max(-v_lo, v_hi) > regs.v_max}
    state["input_gain"] = input_gain(config.encoding, op_of(graph, input_node(graph)))
    state.update(quantized=True, bits=config.bits, reset=config.reset, v_init=config.v_init,
                 membrane_bits=regs.membrane_bits, timesteps=config.timesteps, ranges=ranges,
                 registers=asdict(regs), decays=decays)
    return True
