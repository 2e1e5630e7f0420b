"""Silent and saturated neuron layers: the one rule that compile (estimated rates), simulate
(measured rates) and report (measured rates) apply.

A layer's rate is its mean number of spikes per neuron per step. Over a run of T steps a layer is

- **silent** when its neurons fire fewer than ``SILENT_SPIKES`` times each on average
  (rate * T < 0.1, one spike per ten neurons over the run; rate 0 included): it passes
  (almost) nothing to the layers after it, which is how a too-large activation scale shows (the
  weight-bound normalisation at usual T). The bar is low on purpose: a sparse but working layer
  (a calibrated layer of a random net can average 0.25 spikes per run) is not reported;
- **saturated** when its rate is at least ``SATURATED_RATE`` (a spike nearly every step): its
  activations are clipped at the threshold, a too-small scale.

The read-out layer counts only when it spikes (any read-out but ``membrane``).
"""
from __future__ import annotations

SILENT_SPIKES = 0.1     # spikes per neuron over the whole run
SATURATED_RATE = 0.95   # spikes per neuron per step


def inactive_layers(rates: dict, timesteps: int) -> dict:
    """``{layer: "silent" | "saturated"}`` for the layers of ``rates`` ({layer: spikes per neuron
    per step}) that are either over ``timesteps`` steps, in the order of ``rates``."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps!r}")
    found = {}
    for layer, rate in rates.items():
        if rate is None:
            continue
        if rate * timesteps < SILENT_SPIKES:
            found[layer] = "silent"
        elif rate >= SATURATED_RATE:
            found[layer] = "saturated"
    return found


def checked_rates(graph, rates: dict, readout: str = "membrane") -> dict:
    """The entries of ``rates`` the rule applies to: hidden neuron layers, and the read-out layer
    when the read-out counts its spikes."""
    from .ir import op_of
    from .ir import ops as O
    keep = {}
    for layer, rate in rates.items():
        op = op_of(graph, layer) if layer in graph else None
        if isinstance(op, O.Neuron) and (not op.readout or readout != "membrane"):
            keep[layer] = rate
    return keep


def activity_warnings(rates: dict, timesteps: int, measured: str) -> list:
    """One line per silent or saturated layer; ``measured`` says where the rates come from
    (e.g. "measured on the data", "estimated without data")."""
    lines = []
    for layer, state in inactive_layers(rates, timesteps).items():
        rate = rates[layer]
        if state == "silent":
            lines.append(f"layer {layer!r} is silent at T={timesteps}: {rate * timesteps:.3g} spikes per neuron per "
                         f"run ({measured}), so the layers after it get (almost) no input; its activation scale is "
                         f"too large: compile with --calibration (or another --norm), or lower it with --layer-factor {layer}=F (F < 1)")
        else:
            lines.append(f"layer {layer!r} is saturated at T={timesteps}: rate {rate:.3f} spikes per neuron per step "
                         f"({measured}), so its activations are clipped at the threshold; its activation scale is "
                         f"too small: compile with --calibration (or another --norm), or raise it with --layer-factor {layer}=F (F > 1)")
    return lines
