"""Hand-built quantized SNN-form graphs with random integer weights (tests and benchmarks/cores.py).

They need no torch and no pipeline: the shape of the network is what mapping reads. ``spec`` for
:func:`build` is a list of layers applied in order: ``("dense", n)``, ``("conv", c, k, stride,
pad)``, ``("dwconv", k, stride, pad)`` (a depthwise k x k conv), ``("pool", k)`` (a depthwise k x k
conv with unit weights, as lower_avgpool makes),
``("res", c)`` (a 3x3 conv block whose output joins an identity skip through Add, as
materialize_skips makes: depthwise 1x1 conv), ``("flatten",)``. The last layer is the Output.
"""
from __future__ import annotations

import numpy as np

from ..ir import add_op, new_graph, verify
from ..ir import ops as O
from ..ir.registers import signed_max


def build(input_shape, spec, bits=8, seed=0, threshold=None, reset="subtract", input_bits=8):
    rng = np.random.default_rng(seed)
    q = signed_max(bits)
    g = new_graph()
    g.graph["snnc"] = {"normalized": True, "quantized": True, "bits": bits, "reset": reset, "membrane_bits": 24,
                       "v_init": "half"}
    prev = add_op(g, "input", O.Input(tuple(input_shape), scale=1.0, bits=input_bits))
    shape = tuple(input_shape)
    count = [0]

    def name(base):
        count[0] += 1
        return f"{base}{count[0]}"

    def neuron(src_ops, shape, last):
        th = int(threshold or rng.integers(32, 256))
        cls = O.Output if last else O.IF
        n = "output" if last else name("if")
        bias = rng.integers(-4, 5, size=shape[0]).astype(np.int64)
        if len(shape) == 3:
            bias = bias[:, None, None]
        return add_op(g, n, cls(scale=1.0, threshold=th, bias=bias, v_init=th // 2, step=1.0 / th, reset=reset), src_ops)

    def conv(src, cin, cout, k, stride, pad, groups=1, unit=False):
        if unit:
            w = np.ones((cout, cin // groups, k, k), np.int64)
        else:
            w = rng.integers(-q, q + 1, size=(cout, cin // groups, k, k)).astype(np.int64)
        return add_op(g, name("conv"), O.Conv2d(w.astype(float), stride=(stride, stride), padding=(pad, pad),
                                                groups=groups, weight_int=w.astype(np.int32)), [src])

    for i, layer in enumerate(spec):
        last = i == len(spec) - 1
        kind = layer[0]
        if kind == "flatten":
            prev = add_op(g, name("flatten"), O.Flatten(), [prev])
            shape = (int(np.prod(shape)),)
            continue
        if kind == "dense":
            w = rng.integers(-q, q + 1, size=(layer[1], shape[0])).astype(np.int64)
            d = add_op(g, name("fc"), O.Dense(w.astype(float), weight_int=w.astype(np.int32)), [prev])
            shape = (layer[1],)
            prev = neuron([d], shape, last)
        elif kind == "conv":
            _, c, k, s, p = layer
            d = conv(prev, shape[0], c, k, s, p)
            shape = (c,) + O.conv_out_hw(shape[1:], (k, k), (s, s), (p, p))
            prev = neuron([d], shape, last)
        elif kind == "dwconv":  # depthwise: ("dwconv", kernel, stride, padding)
            _, k, s, p = layer
            d = conv(prev, shape[0], shape[0], k, s, p, groups=shape[0])
            shape = (shape[0],) + O.conv_out_hw(shape[1:], (k, k), (s, s), (p, p))
            prev = neuron([d], shape, last)
        elif kind == "pool":
            k = layer[1]
            d = conv(prev, shape[0], shape[0], k, k, 0, groups=shape[0], unit=True)
            shape = (shape[0],) + O.conv_out_hw(shape[1:], (k, k), (k, k), (0, 0))
            prev = neuron([d], shape, last)
        elif kind == "res":
            c = shape[0]
            a = conv(prev, c, c, 3, 1, 1)
            mid = neuron([a], shape, False)
            b = conv(mid, c, c, 3, 1, 1)
            skip = conv(prev, c, c, 1, 1, 0, groups=c, unit=True)
            add = add_op(g, name("add"), O.Add(), [b, skip])
            prev = neuron([add], shape, last)
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    verify(g)
    return g


def mnist_cnn(bits=8, seed=0):
    """Conv16-AvgPool-Conv32-AvgPool-Linear128-Linear10 on 1x28x28 (3x3 convs, padding 1)."""
    return build((1, 28, 28), [("conv", 16, 3, 1, 1), ("pool", 2), ("conv", 32, 3, 1, 1), ("pool", 2),
                               ("flatten",), ("dense", 128), ("dense", 10)], bits=bits, seed=seed)


def wide_mlp(hidden=3000, bits=8, seed=0, inputs=784, outputs=10):
    return build((inputs,), [("dense", hidden), ("dense", outputs)], bits=bits, seed=seed)


def resnet(bits=8, seed=0):
    """A small CIFAR-style residual net on 3x32x32: conv16 stride 2, two residual blocks, conv32
    stride 2, a residual block, 2x2 pool, linear 10 (it fits one Loihi 1 chip)."""
    return build((3, 32, 32), [("conv", 16, 3, 2, 1), ("res",), ("res",), ("conv", 32, 3, 2, 1), ("res",),
                               ("pool", 2), ("flatten",), ("dense", 10)], bits=bits, seed=seed)
