"""NIR import: IF, LIF, CubaLIF (and LI, I, CubaLI as the read-out) -> the IR's Neuron, their input
gain folded into the weighted ops that feed them (see :mod:`.lower` for the equations)."""
from __future__ import annotations

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
    beta, decay_u = None, N.DECAY_ONE
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
        d = ks * N.DECAY_ONE
        du = int(np.rint(d.flat[0]))
        if np.any(np.abs(d - du) > DECAY_TOL) or not 1 <= du <= N.DECAY_ONE:
            near = imp.dt * N.DECAY_ONE / max(1, min(N.DECAY_ONE, du))
            imp.fail(name, f"its synaptic decay 1 - dt/tau_syn = {1 - float(ks.flat[0]):.6g} is not a multiple of "
                      f"1/4096 (snnc's current decay_u is an integer k, alpha = 1 - k/4096); the nearest "
                      f"tau_syn at dt {imp.dt:g} is {near:.6g}")
        decay_u = du
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
