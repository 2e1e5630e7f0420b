"""Synaptic operations of the SNN against multiply-accumulates of the ANN, and what they cost.

An SNN pays per *event*: every spike (or, for the graded input, every nonzero input value per
step) is delivered to each synapse it drives, one synaptic operation (SOP) each. An ANN pays one
multiply-accumulate (MAC) per synapse per inference, whatever the values. So

    SOPs per inference = sum over sources s of events(s) * fanout(s)
    MACs per inference = sum over weighted ops of their synapses (weights x output positions)

``fanout(s)`` is the number of nonzero integer synapses per neuron of ``s`` (their total over the
connections ``s`` feeds divided by its neuron count: exact for Dense, the mean for Conv2d).
The energy figures are published per-operation energies, not measurements of this machine.
"""
from __future__ import annotations

import numpy as np

from ..ir import inputs_of, op_of
from ..ir import ops as O
from ..ir.layers import source_and_area

PJ_PER_SOP = 23.6         # Loihi, energy per synaptic spike operation (Davies et al., IEEE Micro 2018)
PJ_PER_MAC_FP32 = 4.6     # 45 nm, 32-bit float multiply (3.7 pJ) + add (0.9 pJ) (Horowitz, ISSCC 2014)
PJ_PER_MAC_INT8 = 0.23    # 45 nm, 8-bit integer multiply (0.2 pJ) + add (0.03 pJ) (Horowitz, ISSCC 2014)
SOURCES = ("Loihi synaptic op 23.6 pJ: Davies et al., \"Loihi: A Neuromorphic Manycore Processor with On-Chip "
           "Learning\", IEEE Micro 38(1), 2018. 45 nm MAC 4.6 pJ (fp32) and 0.23 pJ (int8): Horowitz, "
           "\"Computing's energy problem (and what we can do about it)\", ISSCC 2014.")


def synapses(graph, name) -> int:
    """Synapses (= MACs per inference in the ANN) of a weighted op."""
    op = op_of(graph, name)
    if isinstance(op, O.Conv2d):
        return int(op.weight.shape[0] * op.weight.shape[1]) * _taps(graph, name, op)
    return int(op.weight.size)


def _taps(graph, name, op) -> int:
    src = inputs_of(graph, name)[0]
    return O.conv_taps(op, graph.nodes[src]["shape"][1:], graph.nodes[name]["shape"][1:])


def _nonzero_synapses(graph, name) -> int:
    op = op_of(graph, name)
    w = op.weight_int if op.weight_int is not None else op.weight
    if isinstance(op, O.Conv2d):
        return int(np.count_nonzero(w) * _taps(graph, name, op) // int(np.prod(w.shape[2:])))
    return int(np.count_nonzero(w))


def fanouts(graph) -> dict:
    """{source (neuron layer or Input): mean nonzero synapses driven per source neuron}."""
    total = {}
    for n in graph:
        if isinstance(op_of(graph, n), O.WEIGHTED):
            src, _ = source_and_area(graph, n)
            total[src] = total.get(src, 0) + _nonzero_synapses(graph, n)
    return {s: t / int(np.prod(graph.nodes[s]["shape"])) for s, t in total.items()}


def energy(graph, events: dict) -> dict:
    """``events``: {source: mean events per inference} (spikes for neuron layers, nonzero input
    values summed over the steps for the input). Returns SOPs, MACs and energies in nJ."""
    fo = fanouts(graph)
    sops = {s: float(events.get(s, 0.0)) * fo[s] for s in fo}
    macs = sum(synapses(graph, n) for n in graph if isinstance(op_of(graph, n), O.WEIGHTED))
    total = sum(sops.values())
    return {"sops": total, "sops_per_source": sops, "macs": macs,
            "snn_nJ": total * PJ_PER_SOP / 1e3, "ann_fp32_nJ": macs * PJ_PER_MAC_FP32 / 1e3,
            "ann_int8_nJ": macs * PJ_PER_MAC_INT8 / 1e3,
            "pj_per_sop": PJ_PER_SOP, "pj_per_mac_fp32": PJ_PER_MAC_FP32, "pj_per_mac_int8": PJ_PER_MAC_INT8,
            "sources": SOURCES}


def balance(energies: list, timesteps: list, ann_nJ: float) -> str:
    """One plain sentence: at which T of the grid the SNN's estimated energy is at most the ANN's
    (``ann_nJ``), or that it is not at any T, and by how much."""
    ratios = [e / ann_nJ if ann_nJ > 0 else float("inf") for e in energies]
    cheaper = [t for t, r in zip(timesteps, ratios) if r <= 1.0]
    best = int(np.argmin(ratios))
    if cheaper:
        return (f"The SNN uses no more energy than the fp32 ANN at T <= {max(cheaper)} of the grid "
                f"(at T = {timesteps[best]}: {ratios[best]:.2g}x the ANN's {ann_nJ:.3g} nJ).")
    return (f"The SNN costs more energy than the fp32 ANN at every T of the grid: at best "
            f"{ratios[best]:.2g}x the ANN's {ann_nJ:.3g} nJ (T = {timesteps[best]}). Fewer events would close "
            f"the gap: fewer timesteps with QCFS fine-tuning, a latency read-out (first-spike, k-spikes) "
            f"that stops a sample once decided, or sparser layers.")
