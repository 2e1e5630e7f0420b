"""Check that the graph is in SNN form; change nothing (always returns False).

SNN form (docs/DESIGN.md): every path between neuron layers is

    (IF | Input) -> [Delay] -> [Flatten] -> (Dense | Conv2d) -> [Add] -> (IF | Output)

so that each neuron layer N integrates ``I = sum_k W_k (*) s_k + b`` over its connections k, each
a weighted op reading the spikes ``s_k`` of one IF layer or of the Input. Checked locally, on
every node's inputs (every node kind is covered, so this implies the path rule):

- no BatchNorm/Affine (``fold_batchnorm`` could not fold it), no MaxPool2d (``lower_maxpool``)
  and no AvgPool2d but synaptic ones (``lower_avgpool``);
- a Dense/Conv2d reads (through Flatten and synaptic pools only) an IF or the Input; reading another weighted op or
  an Add means two weighted layers with no ReLU between them;
- an Add's inputs are weighted ops or Adds (identity skips were made explicit by
  ``materialize_skips``);
- an IF/Output reads a weighted op or an Add;
- a Flatten feeds only Dense ops (or another Flatten); its source is checked by the Dense rule;
- a Delay (a recurrent or delayed connection) reads a neuron layer's spikes or the Input and
  feeds Dense/Conv2d ops (through Flatten): it delays spikes, never currents.

Raises ``ValueError`` listing every problem, each naming its nodes.
"""
from __future__ import annotations

from ..ir import inputs_of, op_of, topo_order
from ..ir import ops as O
from ..ir.layers import is_synaptic_pool


def _is_if(op) -> bool:
    return O.is_hidden_neuron(op)


def _through_flatten(g, src):
    while isinstance(op_of(g, src), (O.Flatten, O.AvgPool2d, O.Delay)):
        (src,) = inputs_of(g, src)
    return src


def _leftovers(g, n, op, src, dsts) -> list:
    if isinstance(op, (O.BatchNorm, O.Affine)):
        around = f"it follows {O.kind(op_of(g, src))} {src}" + "".join(
            f" and feeds {O.kind(op_of(g, d))} {d}" for d in dsts)
        return [f"BatchNorm {n} could not be folded into a neighbouring Dense/Conv2d ({around}): snnc folds "
                "a BatchNorm into the Dense/Conv2d right before it when the BatchNorm is that op's only "
                "consumer, or into the Dense or unpadded, ungrouped Conv2d right after it"]
    if isinstance(op, O.MaxPool2d):
        return [f"MaxPool2d {n} was not lowered to IF layers (run the lower_maxpool pass)"]
    if isinstance(op, O.AvgPool2d) and not is_synaptic_pool(g, n):
        return [f"AvgPool2d {n} was not lowered to a Conv2d + IF layer (run the lower_avgpool pass)"]
    return []


def _problems(g, n) -> list:
    op = op_of(g, n)
    ins = inputs_of(g, n)
    kind = O.kind(op)
    if isinstance(op, O.WEIGHTED):
        src = _through_flatten(g, ins[0])
        sop = op_of(g, src)
        if _is_if(sop) or isinstance(sop, O.Input):
            return []
        if isinstance(sop, (O.Dense, O.Conv2d, O.Add)):
            return [f"{src} feeds {n} without an activation between them; snnc needs a ReLU between "
                    "weighted layers"]
        return [f"{kind} {n} reads {O.kind(sop)} {src}; a Dense/Conv2d must read an IF layer (ReLU) or the "
                "Input, through Flatten only"]
    if isinstance(op, O.Add):
        out = []
        for src in ins:
            sop = op_of(g, src)
            if not isinstance(sop, (O.Dense, O.Conv2d, O.Add)):
                out.append(f"Add {n} reads {O.kind(sop)} {src}; every input of an Add must be a Dense/Conv2d "
                           "output or another Add (identity skips are made explicit by materialize_skips)")
        return out
    if isinstance(op, O.NEURONS):
        (src,) = ins
        sop = op_of(g, src)
        if isinstance(sop, (O.Dense, O.Conv2d, O.Add)):
            return []
        return [f"{kind} {n} reads {O.kind(sop)} {src} directly; a neuron layer must be fed by Dense/Conv2d "
                "ops (summed by Add only)"]
    if isinstance(op, O.Flatten):
        return [f"Flatten {n} feeds {O.kind(op_of(g, d))} {d}; a Flatten must sit between an IF layer (or the "
                "Input) and a Dense" for d in sorted(g.successors(n))
                if not isinstance(op_of(g, d), (O.Dense, O.Flatten))]
    if isinstance(op, O.Delay):
        (src,) = ins
        sop = op_of(g, src)
        out = [] if _is_if(sop) or isinstance(sop, O.Input) else [
            f"Delay {n} reads {O.kind(sop)} {src}; a delay must carry the spikes of a neuron layer (or the Input)"]
        return out + [f"Delay {n} feeds {O.kind(op_of(g, d))} {d}; a delay must feed Dense/Conv2d ops" for d in
                      sorted(g.successors(n)) if not isinstance(op_of(g, d), (O.Dense, O.Conv2d, O.Flatten))]
    if isinstance(op, O.AvgPool2d):
        return [f"AvgPool2d {n} feeds {O.kind(op_of(g, d))} {d}; a pool must feed Dense/Conv2d ops" for d in
                sorted(g.successors(n)) if not isinstance(op_of(g, d), (O.Dense, O.Conv2d, O.Flatten))]
    return []


def _raise(problems):
    if len(problems) == 1:
        raise ValueError(f"graph is not in SNN form: {problems[0]}")
    shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
    raise ValueError(f"graph is not in SNN form ({len(problems)} problems): {shown}")


def check_snn_form(graph, config) -> bool:
    """Raise ValueError naming the nodes when the graph is not in SNN form; never changes it."""
    order = topo_order(graph)
    left = []
    for n in order:
        ins = inputs_of(graph, n)
        left += _leftovers(graph, n, op_of(graph, n), ins[0] if ins else None, sorted(graph.successors(n)))
    if left:  # the root cause; their neighbours would only add noise
        _raise(left)
    problems = []
    for n in order:
        for p in _problems(graph, n):
            if p not in problems:
                problems.append(p)
    if problems:
        _raise(problems)
    return False
