"""``--target lava``: Loihi 2 register widths, and a check that every value reaches Lava exactly.

Lava 0.10.0's fixed-point models wrap or truncate silently (docs: ../shared/notes/lava.md), so
the compiler refuses, naming the layer and the register, whatever would not arrive intact:

- weights: Dense keeps [-256, 255] exactly with sign_mode MIXED and num_weight_bits 9
  (``weight_bits`` of the profile); Conv does not clip, but Loihi's synapses are as wide, so
  the same range is required. The weight exponent must fit Loihi's (0..``weight_exp_max``).
- per-connection current: Conv's output wraps in 24 bits, Loihi's dendritic accumulators are
  24 bits: every op's worst-case sum, and every layer's total current (from the quantize pass's
  ``ranges``, bias included), must fit ``current_bits``.
- threshold: one scalar per layer (one Lava process), 1 .. 2**threshold_bits - 1 (17-bit mantissa).
- bias: ``mantissa << exponent`` with a ``bias_mantissa_bits`` signed mantissa and a
  ``bias_exponent_bits`` exponent (13 and 3; the quantize pass rounds to this, we re-check).
- membrane: the graph's membrane width must be the profile's (24); the snnc neuron saturates
  exactly as the reference does, so saturation is semantics, not an error.
- Conv geometry is no limit: a conv whose groups, kernel size, stride, padding or dilation would
  wrap Lava Conv's int8 Vars (a 1x1 depthwise skip on 128+ channels) runs as a ``Sparse`` matrix
  (``plan.why_sparse``), which holds any geometry.
- recurrent and delayed connections (the IR's Delay): every Lava connection takes one hardware
  step, so a loop of connections must carry at least as many steps of Delay as it has
  connections (a layer's own recurrence: one; a feedback from a deeper layer: 1 + the layers it
  spans); a shorter loop is refused naming its layers and both counts (``plan.lava_depths``).
  Longer Delays, and Delays on feed-forward paths, become relays of extra hardware steps.
"""
from __future__ import annotations


from dataclasses import replace

import numpy as np

from snn_compiler.ir.registers import registers_of, signed_max
from snn_compiler.ir import op_of, topo_order, verify
from snn_compiler.ir import ops as O
from snn_compiler.ir.layers import input_range, signed_row_sums, weight_bounds
from snn_compiler.passes.partition import partition
from snn_compiler.targets import Target, TargetError

DEFAULT_PROFILE = "loihi2"


def load_profile(profile=None) -> dict:
    """A hardware profile (a dict, a YAML path, or a name in configs/; default loihi2), validated by
    the loader the partition pass uses."""
    from snn_compiler.mapping import load_profile_dict
    return load_profile_dict(DEFAULT_PROFILE if profile is None else profile)  # "" or {} is refused, not replaced


def prepare(config):
    """The config with Loihi's register widths (from the profile, default configs/loihi2.yaml) for
    the quantize pass; ``config`` itself is not changed."""
    profile = load_profile(config.profile)
    wbits = int(profile.get("registers", {}).get("weight_bits", 9))
    if config.bits > wbits:
        raise TargetError(f"--bits {config.bits}: {profile.get('name')}'s weight register keeps {wbits}-bit signed "
                            f"weights (Lava Dense, sign_mode MIXED); use --bits {wbits} or fewer")
    return replace(config, profile=profile, registers=registers_of(profile))


def op_current_bounds(graph, name) -> tuple:
    """Worst-case (low, high) per-step sum of weighted op ``name`` over its output neurons."""
    lo, hi = weight_bounds(signed_row_sums(O.effective_weights(op_of(graph, name))), *input_range(graph, name))
    return int(lo.min(initial=0)), int(hi.max(initial=0))


def check(graph, config) -> None:
    """Raise TargetError naming the layer and the register when a value does not fit Loihi/Lava."""
    from snn_compiler.passes.compose_pools import without_pools
    graph = without_pools(graph)  # what Lava runs: pools composed into the next connection
    profile = load_profile(config.profile)
    regs = registers_of(profile)
    state = graph.graph.get("snnc", {})
    if not state.get("quantized"):
        raise TargetError("lava target: the graph is not quantized")
    verify(graph)
    from .plan import DelayError, lava_depths
    try:
        lava_depths(graph)  # every recurrent or delayed connection arrives on time
    except DelayError as e:
        raise TargetError(f"lava target: {e}") from None
    mb = int(state.get("membrane_bits", regs.membrane_bits))
    if mb != regs.membrane_bits:
        raise TargetError(f"graph: membrane register is {mb} bits, {profile.get('name')} has {regs.membrane_bits}")
    wbits = int(profile.get("registers", {}).get("weight_bits", 9))
    wlo, whi = -signed_max(wbits) - 1, signed_max(wbits)  # two's complement: one more below
    cmax = regs.current_max
    for n in topo_order(graph):
        op = op_of(graph, n)
        if isinstance(op, O.WEIGHTED):
            w = np.asarray(op.weight_int)
            if w.size and (w.min() < wlo or w.max() > whi):
                raise TargetError(f"layer {n!r}: weight register holds [{wlo}, {whi}] ({wbits}-bit signed, "
                                    f"Lava Dense sign_mode MIXED), got [{int(w.min())}, {int(w.max())}]")
            e = int(op.weight_exp)
            emax = int(profile.get("registers", {}).get("weight_exp_max", 7))
            if not 0 <= e <= emax:
                raise TargetError(f"layer {n!r}: weight exponent {e} does not fit Loihi's weight exponent "
                                    f"register (0..{emax})")
            lo, hi = op_current_bounds(graph, n)
            if max(-lo, hi) > cmax:
                raise TargetError(f"layer {n!r}: worst-case synaptic current [{lo}, {hi}] exceeds the "
                                    f"{regs.current_bits}-bit current register (Lava Conv wraps it)")
        elif isinstance(op, O.NEURONS):
            th = op.threshold
            if not isinstance(th, (int, np.integer)):
                raise TargetError(f"layer {n!r}: threshold must be one scalar per layer (one Lava process)")
            if not 1 <= int(th) <= regs.threshold_max:
                raise TargetError(f"layer {n!r}: threshold {int(th)} does not fit the {regs.threshold_bits}-bit "
                                    f"threshold mantissa (1..{regs.threshold_max})")
            if regs.bias_mantissa_bits is not None:
                ok = regs.bias_fits(op.bias)
                if not ok.all():
                    bad = int(np.asarray(op.bias).reshape(-1)[np.argmin(ok.reshape(-1))])
                    raise TargetError(f"layer {n!r}: bias {bad} is not a {regs.bias_mantissa_bits}-bit mantissa "
                                        f"shifted by a {regs.bias_exponent_bits}-bit exponent")
            if not 0 <= int(op.v_init) <= regs.v_max:
                raise TargetError(f"layer {n!r}: v_init {int(op.v_init)} does not fit the "
                                    f"{regs.membrane_bits}-bit membrane")
            r = state.get("ranges", {}).get(n)
            if r is not None:
                lo, hi = r["current"]
                if max(-lo, hi) > cmax:
                    raise TargetError(f"layer {n!r}: worst-case current [{lo}, {hi}] (bias included) exceeds the "
                                        f"{regs.current_bits}-bit current register")


TARGET = Target("lava", "Intel Loihi 2 through Lava 0.10.0 (bit-accurate fixed-point simulator; checks Loihi's "
                "register widths)", prepare=prepare, check=check, passes=(partition,),  # cores of --profile
                extra={"profile": DEFAULT_PROFILE, "backend": "lava"})
