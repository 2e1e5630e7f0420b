"""Small float networks for the Lava conformance tests, compiled by the real snnc pipeline.

MLP, CNN (conv + average pool + dense) and a residual net, with non-zero biases so the
pipeline hold-off is exercised. Deterministic (seeded numpy), no torch.
"""
from __future__ import annotations

import numpy as np

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import ops as O


def _w(rng, *shape, scale=None):
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0, scale or 1.5 / np.sqrt(fan_in), shape)


def _b(rng, n):
    return rng.normal(0.05, 0.1, n)


def mlp(rng, sizes=(20, 16, 12, 5)):
    g = new_graph()
    prev = add_op(g, "input", O.Input((sizes[0],)))
    for i in range(1, len(sizes)):
        d = add_op(g, f"fc{i}", O.Dense(_w(rng, sizes[i], sizes[i - 1]), bias=_b(rng, sizes[i])), [prev])
        last = i == len(sizes) - 1
        prev = add_op(g, "output" if last else f"relu{i}", O.Output() if last else O.IF(), [d])
    verify(g)
    return g, (sizes[0],)


def cnn(rng, c_in=2, hw=8):
    """conv3x3(pad 1) -> relu -> avgpool 2 -> conv3x3 stride 2 -> relu -> flatten -> dense."""
    g = new_graph()
    x = add_op(g, "input", O.Input((c_in, hw, hw)))
    c1 = add_op(g, "conv1", O.Conv2d(_w(rng, 4, c_in, 3, 3), bias=_b(rng, 4), padding=(1, 1)), [x])
    r1 = add_op(g, "relu1", O.IF(), [c1])
    p1 = add_op(g, "pool1", O.AvgPool2d((2, 2), (2, 2)), [r1])
    c2 = add_op(g, "conv2", O.Conv2d(_w(rng, 6, 4, 3, 2), bias=_b(rng, 6), stride=(2, 1), padding=(1, 0)), [p1])
    r2 = add_op(g, "relu2", O.IF(), [c2])
    f = add_op(g, "flat", O.Flatten(), [r2])
    hw2 = O.conv_out_hw((hw // 2, hw // 2), (3, 2), (2, 1), (1, 0))
    d = add_op(g, "fc", O.Dense(_w(rng, 5, 6 * hw2[0] * hw2[1]), bias=_b(rng, 5)), [f])
    add_op(g, "output", O.Output(), [d])
    verify(g)
    return g, (c_in, hw, hw)


def resnet(rng, n=12):
    """fc -> relu -> [fc -> relu -> fc] + identity skip -> relu -> fc -> out, plus a long skip
    from the input into the last hidden layer (two branches of different depth)."""
    g = new_graph()
    x = add_op(g, "input", O.Input((n,)))
    a = add_op(g, "relu0", O.IF(), [add_op(g, "fc0", O.Dense(_w(rng, n, n), bias=_b(rng, n)), [x])])
    h = add_op(g, "relu1", O.IF(), [add_op(g, "fc1", O.Dense(_w(rng, n, n), bias=_b(rng, n)), [a])])
    y = add_op(g, "fc2", O.Dense(_w(rng, n, n), bias=_b(rng, n)), [h])
    j = add_op(g, "add", O.Add(), [y, a])
    r = add_op(g, "relu2", O.IF(), [j])
    # large weights on the graded skip keep its weight exponent within Loihi's (<= 7)
    s = add_op(g, "fc_skip", O.Dense(_w(rng, n, n, scale=4.0)), [x])
    z = add_op(g, "fc3", O.Dense(_w(rng, n, n), bias=_b(rng, n)), [r])
    r3 = add_op(g, "relu3", O.IF(), [add_op(g, "add2", O.Add(), [z, s])])
    add_op(g, "output", O.Output(), [add_op(g, "fc4", O.Dense(_w(rng, 4, n), bias=_b(rng, 4)), [r3])])
    verify(g)
    return g, (n,)


def rescnn(rng, c=3, hw=6):
    """conv -> relu -> conv -> (+ identity skip) -> relu -> avgpool -> flatten -> dense: a
    convolutional residual join (the skip becomes a depthwise 1x1 conv, often with a weight exponent)."""
    g = new_graph()
    x = add_op(g, "input", O.Input((c, hw, hw)))
    r1 = add_op(g, "relu1", O.IF(), [add_op(g, "conv1", O.Conv2d(_w(rng, c, c, 3, 3), bias=_b(rng, c), padding=(1, 1)), [x])])
    c2 = add_op(g, "conv2", O.Conv2d(_w(rng, c, c, 3, 3, scale=0.1), bias=_b(rng, c), padding=(1, 1)), [r1])
    r2 = add_op(g, "relu2", O.IF(), [add_op(g, "add", O.Add(), [c2, r1])])
    p = add_op(g, "pool", O.AvgPool2d((2, 2), (2, 2)), [r2])
    f = add_op(g, "flat", O.Flatten(), [p])
    add_op(g, "output", O.Output(), [add_op(g, "fc", O.Dense(_w(rng, 4, c * (hw // 2) ** 2), bias=_b(rng, 4)), [f])])
    verify(g)
    return g, (c, hw, hw)


def wide_rescnn(rng, c=128, hw=2, groups=16):
    """conv (2 -> c) -> relu -> grouped conv -> (+ identity skip) -> relu -> avgpool -> dense: the
    identity skip snnc makes is a 1x1 depthwise conv with c = 128 groups, beyond Lava Conv's int8
    groups register (issue 12: every ResNet stage >= 128 wide). The branch's conv is grouped only
    because Lava's Conv model costs one scipy correlation per (input, output) channel pair per step."""
    g = new_graph()
    x = add_op(g, "input", O.Input((2, hw, hw)))
    c1 = add_op(g, "conv1", O.Conv2d(_w(rng, c, 2, 3, 3), bias=_b(rng, c), padding=(1, 1)), [x])
    r1 = add_op(g, "relu1", O.IF(), [c1])
    c2 = add_op(g, "conv2", O.Conv2d(_w(rng, c, c // groups, 3, 3, scale=0.3), bias=_b(rng, c), padding=(1, 1),
                                     groups=groups), [r1])
    r2 = add_op(g, "relu2", O.IF(), [add_op(g, "add", O.Add(), [c2, r1])])
    f = add_op(g, "flat", O.Flatten(), [add_op(g, "pool", O.AvgPool2d((2, 2), (2, 2)), [r2])])
    add_op(g, "output", O.Output(), [add_op(g, "fc", O.Dense(_w(rng, 4, c * (hw // 2) ** 2), bias=_b(rng, 4)), [f])])
    verify(g)
    return g, (2, hw, hw)


def depthwise(rng, c=130, hw=4):
    """conv1x1 (2 -> c) -> relu -> depthwise 3x3 (pad 1, c groups) + identity skip -> relu ->
    avgpool 2 -> flatten -> dense: a trained depthwise conv and a skip, both beyond Lava Conv's int8 groups."""
    g = new_graph()
    x = add_op(g, "input", O.Input((2, hw, hw)))
    r1 = add_op(g, "relu1", O.IF(), [add_op(g, "conv1", O.Conv2d(_w(rng, c, 2, 1, 1), bias=_b(rng, c)), [x])])
    dw = add_op(g, "dw", O.Conv2d(_w(rng, c, 1, 3, 3), bias=_b(rng, c), padding=(1, 1), groups=c), [r1])
    r2 = add_op(g, "relu2", O.IF(), [add_op(g, "add", O.Add(), [dw, r1])])
    f = add_op(g, "flat", O.Flatten(), [add_op(g, "pool", O.AvgPool2d((2, 2), (2, 2)), [r2])])
    add_op(g, "output", O.Output(), [add_op(g, "fc", O.Dense(_w(rng, 4, c * (hw // 2) ** 2), bias=_b(rng, 4)), [f])])
    verify(g)
    return g, (2, hw, hw)


def leaky(build, reset):
    """``build`` with every neuron layer a trained LIF (random per-channel beta and threshold)."""
    def make(rng):
        g, shape = build(rng)
        for n in g:
            op = g.nodes[n]["op"]
            if isinstance(op, O.Neuron):
                c = g.nodes[n]["shape"][0]
                lif = O.LIF(rng.uniform(0.6, 0.98, c if rng.random() < 0.5 else 1), threshold=rng.uniform(0.5, 1.5),
                            reset=reset, readout=op.readout)
                g.nodes[n]["op"] = lif
        verify(g)
        return g, shape
    return make


def with_current_memory(build, decay_u):
    """``build`` with every neuron layer's current register keeping ``1 - decay_u/4096`` of itself
    each step (a CUBA neuron; ``decay_u`` 4096: none)."""
    def make(rng):
        g, shape = build(rng)
        for n in g:
            if isinstance(g.nodes[n]["op"], O.Neuron):
                g.nodes[n]["op"].decay_u = decay_u
        return g, shape
    return make


NETS = {"mlp": mlp, "cnn": cnn, "resnet": resnet, "rescnn": rescnn, "wide_rescnn": wide_rescnn,
        "depthwise": depthwise}
NETS.update({f"lif_{k}_{r}": leaky(NETS[k], r) for k in ("mlp", "cnn", "resnet") for r in ("subtract", "zero")})


def compiled(net, bits=8, reset="subtract", v_init="half", timesteps=12, seed=0, n_calib=64, target=None,
             signed=True):
    """(compiled graph, sample data) for ``net``, a name in NETS or a builder; ``signed``: inputs (and so the Input's
    graded values) may be negative."""
    rng = np.random.default_rng(seed)
    g, shape = (NETS[net] if isinstance(net, str) else net)(rng)
    lo = -0.2 if signed else 0.0
    calib = rng.uniform(lo, 1.0, (n_calib,) + shape)
    config = CompileConfig(bits=bits, reset=reset, v_init=v_init, timesteps=timesteps, calibration=calib,
                           target="lava" if target is not None else "reference")
    q = compile_model(g, config, target=target)
    return q, rng.uniform(lo, 1.0, (6,) + shape)
