"""NIR import: IF, LIF, CubaLIF (and LI, I, CubaLI as the read-out) -> the IR's Neuron, their input
gain folded into the weighted ops that feed them (see :mod:`.lower` for the equations)."""
from __future__ import annotations

import warnings

import numpy as np

from ...ir import neuron as N
from ...ir import ops as O
from .common import DECAY_TOL, SPIKING, UNIT_TOL, _plain
from .layers import fold, synapse


def decay(imp, name, tau, what):
    if np.any(~(tau > 0)):
        imp.fail(name, f"{what} must be > 0")
    k = imp.dt / tau
    if imp.disc == "exact":
        beta = np.exp(-k)
        return beta, 1.0 - beta
    if np.any(k > 1):
        imp.fail(name, f"dt {imp.dt:g} exceeds {what} (min {float(tau.min()):g}): forward Euler's "
                  f"1 - dt/{what} is negative; check --dt")
    return 1.0 - k, k


def current_decay(imp, name, ks) -> int:
    """``(decay_u, rounding)`` from the per-step current decay ``dt/tau_syn``, rounded to 12 bits as
    Loihi does (:func:`snn_compiler.ir.neuron.round_decay`); a rounding beyond DECAY_TOL (in 1/4096)
    is warned about with the float decay, the rounded one and the relative error (``rounding``
    records them). One ``decay_u`` per layer."""
    du = N.round_decay(ks)
    if np.any(du != du.flat[0]):
        imp.fail(name, f"tau_syn varies across its neurons (decay_u {int(du.min())}..{int(du.max())} of 4096 after "
                  "rounding); snnc's current decay is one per layer")
    if du.flat[0] < 1:
        imp.fail(name, f"its synaptic decay dt/tau_syn = {float(ks.max()):.3g} rounds to 0 of 4096 (a current that "
                  f"never decays); the smallest 12-bit decay is 1/4096 (tau_syn = {imp.dt * N.DECAY_ONE:.6g} at dt "
                  f"{imp.dt:g})")
    d, r, err = N.decay_rounding(ks)
    if np.any(np.abs(ks * N.DECAY_ONE - du) > DECAY_TOL):
        warnings.warn(f"NIR node {name!r}: its current decay dt/tau_syn = {d:.6g} rounds to {int(du.flat[0])}/4096 = "
                      f"{r:.6g} (relative error {err:.2%}; Loihi's decays have 12 bits)", UserWarning, stacklevel=5)
    else:
        err = 0.0  # within DECAY_TOL: float noise of an exact k/4096 (a file's float32 tau_syn)
    return int(du.flat[0]), {"decay": d, "rounded": r, "error": err}


def neuron(imp, name, ins):
    k = imp.kind(name)
    node = imp.ng.nodes[name]
    syn = [synapse(imp, x) for x in ins]
    shapes = {imp.shape(s) for s in syn}
    if len(shapes) != 1:
        imp.fail(name, f"its inputs have different shapes {sorted(shapes)}")
    x = syn[0] if len(syn) == 1 else imp.emit(f"{name}.sum", O.Add(), syn)
    shape = imp.shape(x)
    P = lambda attr: imp.per_neuron(name, attr, shape)  # noqa: E731
    if k in ("LIF", "CubaLIF", "LI", "CubaLI") and np.any(P("v_leak") != 0):
        imp.fail(name, "v_leak != 0 (a leak toward a non-zero potential) is not mapped; snnc's neurons leak "
                  "toward 0")
    if k in SPIKING and np.any(P("v_reset") != 0):
        imp.fail(name, "v_reset != 0; snnc's neurons reset to 0 (or by subtraction)")
    md = _plain(getattr(node, "metadata", None) or {}).get("snnc", {}) if imp.meta else {}
    md = md if isinstance(md, dict) else {}
    r = P("r")
    beta, decay_u, rounding = None, N.DECAY_ONE, None
    if k in ("IF", "I"):
        gain = r
    elif k in ("LIF", "LI"):
        beta, kk = decay(imp, name, P("tau"), "tau")
        gain = r * kk
    else:
        if imp.disc != "euler":
            imp.fail(name, "a current-based neuron maps only under Euler discretization")
        beta, km = decay(imp, name, P("tau_mem"), "tau_mem")
        _, ks = decay(imp, name, P("tau_syn"), "tau_syn")
        decay_u, rounding = current_decay(imp, name, ks)
        gain = P("w_in") * ks * r * km
    if k in SPIKING:
        thr = P("v_threshold")
        if imp.form == "int" and "threshold" in md:
            thr = np.full(shape, float(md["threshold"]))  # the register (v_threshold is theta - 1/2)
        if np.any(~(thr > 0)):
            imp.fail(name, "v_threshold must be > 0")
    else:
        thr = np.ones(shape)
        imp.readout_only.add(name)
    if np.all(thr == thr.flat[0]):
        scale = float(thr.flat[0])
    else:
        scale, gain = 1.0, gain / thr  # v / threshold: threshold 1, the same spikes
    imp.gains[name] = gain  # what a recurrent input, added later (cycles.attach), is folded with too
    if np.any(np.abs(gain - 1.0) > UNIT_TOL):
        fold(imp, name, x, gain)
    if beta is not None:
        b = beta.reshape(beta.shape[0], -1) if beta.ndim > 1 else beta.reshape(-1, 1)
        if np.all(beta == beta.flat[0]):
            beta = np.array([beta.flat[0]])
        elif np.all(b == b[:, :1]):
            beta = b[:, 0].copy()
        else:
            imp.fail(name, "its time constant varies within a channel; snnc's beta is per channel")
    trained = not (imp.form == "float" and md.get("trained") is False)
    reset = md.get("reset") if md.get("reset") in N.RESETS else "zero"  # NIR resets to v_reset = 0
    if imp.form == "int" and md.get("v_init"):
        imp.lost_v_init.append(name)
    op = N.Neuron(scale=scale, spike_value=1.0 if trained else None, beta=beta, decay_u=decay_u, reset=reset)
    imp.set(name, imp.emit(name, op, [x]))
    if rounding is not None:  # what 12 bits did to the current decay, for snnc inspect
        imp.g.graph["snnc"].setdefault("current_decays", {})[imp.map[name]] = rounding
