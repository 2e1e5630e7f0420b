"""Lower every AvgPool2d that cannot stay synaptic into a depthwise Conv2d plus a new IF layer.

With ``config.pool == "sum"`` (the default) a *synaptic* pool (``_layers.is_synaptic_pool``:
kernel == stride, no padding, between an IF layer or the Input and Dense/Conv2d ops) is kept: the integer SNN sums the window and the next
op's weights absorb the average, so no extra neuron layer re-quantizes the pooled rate (on
MNIST this is worth 0.2-0.4 points at T = 16..32 against a spiking pool). With ``"spike"``, and
for every pool that cannot stay synaptic, the pool becomes a spiking layer, as follows; it costs
neurons but sends ~k^2 times fewer synaptic events into the next layer.

An average pool with kernel (kh, kw), stride s and padding p (zeros counted in the mean, torch's
``count_include_pad=True``) over C channels is exactly the depthwise convolution

    avgpool(x)[c] = conv2d(x, w, stride=s, padding=p, groups=C)[c],   w = ones(C, 1, kh, kw) / (kh*kw)

with no bias. The Conv2d keeps the pool's node name (so users recognise it in reports) and a new
IF node ``"<pool>.if"`` (made unique with ``ir.unique_name``) is inserted after it: the pool
becomes a neuron layer of its own, as Loihi runs it (synapses only connect neuron layers; after
quantization the conv's weights are the unit integer 1 and the IF's threshold does the division).

Why the ANN reading is unchanged: the pool must read an IF layer, i.e. a ReLU output x >= 0, so
avgpool(x) >= 0 and ReLU(avgpool(x)) == avgpool(x); adding the IF (= ReLU in the ANN) changes
nothing. If the pool reads anything else (a Conv2d, an Add, the Input, whose data may be
negative; non-negativity cannot be known at compile time) the extra ReLU would change the network,
so the pass raises ``ValueError`` asking to put the pool after the activation; except after a sum
with no activation (an Add, Conv2d or Dense: MobileNetV2's linear bottleneck), where the pool becomes
the depthwise Conv2d alone, still linear, which ``compose_linear`` folds into the Dense reading it.
"""
from __future__ import annotations

import numpy as np

from ..ir import insert_after, inputs_of, op_of, topo_order, unique_name, verify
from ..ir import ops as O
from ..ir.layers import is_synaptic_pool


def lower_avgpool(graph, config) -> bool:
    """Replace each AvgPool2d reading an IF by depthwise Conv2d (weight 1/(kh*kw)) + a new IF."""
    verify(graph)  # input shapes give the channel count
    keep = getattr(config, "pool", "sum") == "sum"
    pools = [n for n in topo_order(graph)
             if isinstance(op_of(graph, n), O.AvgPool2d) and not (keep and is_synaptic_pool(graph, n))]
    if not pools:
        return False
    for n in pools:  # topological: a pool after a pool reads the IF made for the first one
        op = op_of(graph, n)
        (src,) = inputs_of(graph, n)
        src_op = op_of(graph, src)
        linear = isinstance(src_op, (O.Dense, O.Conv2d, O.Add))
        if not (O.is_hidden_neuron(src_op) or linear):
            raise ValueError(f"AvgPool2d {n} follows {O.kind(src_op)} {src}, not a ReLU: snnc pools spikes; "
                             "put the pool after the activation")
        c = graph.nodes[src]["shape"][0]
        kh, kw = op.kernel_size
        weight = np.full((c, 1, kh, kw), 1.0 / (kh * kw))
        graph.nodes[n]["op"] = O.Conv2d(weight=weight, bias=None, stride=tuple(op.stride),
                                        padding=tuple(op.padding), groups=c)
        if linear:  # a pool of a sum with no activation (a linear bottleneck): stays linear, compose_linear
            continue  # folds it into the Dense that reads it
        neuron = insert_after(graph, n, unique_name(graph, f"{n}.if"), O.IF())
        graph.nodes[neuron]["shape"] = graph.nodes[n]["shape"]
    return True
