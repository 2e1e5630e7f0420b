"""NIR import: weighted ops, pools, Flatten and Scale -> IR ops, and the synapses and input gains
that neurons need (each function takes the importer, :class:`.lower._Importer`)."""
from __future__ import annotations

import numpy as np

from ... import ir
from ...ir import ops as O
from .common import READOUT_ONLY, SPIKING, WEIGHTED_NIR, NIRError, _is_str, _pair, _text


def linear(imp, name, x):
    node = imp.ng.nodes[name]
    w = np.asarray(node.weight, np.float64)
    shape = imp.shape(x)
    if w.ndim != 2:
        imp.fail(name, f"weight must be 2-D (out, in), got shape {w.shape}")
    if shape != (w.shape[1],):
        imp.fail(name, f"weight {w.shape} does not take input {shape}"
                  + (" (a map needs a Flatten first)" if len(shape) == 3 else ""))
    b = None
    if imp.kind(name) == "Affine" and node.bias is not None:
        b = np.array(np.broadcast_to(np.asarray(node.bias, np.float64), (w.shape[0],)))
    w = w * imp.input_gain(x)
    imp.set(name, imp.emit(name, O.Dense(weight=w, bias=b), [x]))


def conv(imp, name, x):
    node = imp.ng.nodes[name]
    w = np.asarray(node.weight, np.float64)
    shape = imp.shape(x)
    if w.ndim != 4:
        imp.fail(name, f"weight must be 4-D (out, in / groups, kH, kW), got shape {w.shape}")
    groups = int(np.asarray(node.groups).reshape(-1)[0])
    if len(shape) != 3 or groups < 1 or w.shape[1] * groups != shape[0]:
        imp.fail(name, f"weight {w.shape} (groups {groups}) does not take input {shape}")
    stride, dilation = _pair(node.stride, "stride", name), _pair(node.dilation, "dilation", name)
    if _is_str(node.padding):
        pad = _text(node.padding)
        if pad == "valid":
            padding = (0, 0)
        elif pad == "same":
            total = [dilation[i] * (w.shape[2 + i] - 1) for i in range(2)]
            if stride != (1, 1) or any(t % 2 for t in total):
                imp.fail(name, "padding 'same' needs stride 1 and an odd kernel (symmetric padding)")
            padding = (total[0] // 2, total[1] // 2)
        else:
            imp.fail(name, f"padding {pad!r} is not 'same', 'valid' or a number")
    else:
        padding = _pair(node.padding, "padding", name)
    b = None if node.bias is None else np.array(np.broadcast_to(np.asarray(node.bias, np.float64), (w.shape[0],)))
    w = w * imp.input_gain(x)
    op = O.Conv2d(weight=w, bias=b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    imp.set(name, imp.emit(name, op, [x]))


def pool(imp, name, x):
    node = imp.ng.nodes[name]
    k, s = _pair(node.kernel_size, "kernel_size", name), _pair(node.stride, "stride", name)
    p = _pair(node.padding, "padding", name)
    shape = imp.shape(x)
    if len(shape) != 3:
        imp.fail(name, f"needs a (C, H, W) input, got {shape}")
    area, is_sum = k[0] * k[1], imp.kind(name) == "SumPool2d"
    xop = ir.op_of(imp.g, x)
    succ = [imp.kind(s_) for s_ in imp.d.successors(name)]
    if isinstance(xop, O.Conv2d) and len(list(imp.d.successors(imp.nir_of[x]))) == 1 and not any(p):
        # conv then pool (before the neuron): one conv with a wider kernel and a larger stride
        imp.g.nodes[x]["op"] = _conv_then_pool(xop, k, s, 1.0 if is_sum else 1.0 / area)
        imp.g.nodes[x]["shape"] = O.infer_shape(imp.g.nodes[x]["op"], [imp.shape(ir.inputs_of(imp.g, x)[0])])
        imp.set(name, x)
        return
    if not (O.is_hidden_neuron(xop) or isinstance(xop, O.Input)):
        imp.fail(name, "a pool reads a neuron layer, the Input, or a Conv2d with no other consumer "
                  f"(here {O.kind(xop)})")
    if succ and all(t in SPIKING + READOUT_ONLY for t in succ):
        c = shape[0]  # pooled currents into a neuron: a depthwise conv
        op = O.Conv2d(weight=np.full((c, 1) + k, 1.0 if is_sum else 1.0 / area), bias=None, stride=s, padding=p,
                      groups=c)
        imp.set(name, imp.emit(name, op, [x]))
        return
    if not all(t in WEIGHTED_NIR + ("Flatten",) for t in succ):
        imp.fail(name, "a pool must feed neurons, or weighted ops (through Flatten); it feeds " + ", ".join(succ))
    if s != k or any(p) or shape[1] % k[0] or shape[2] % k[1]:
        imp.fail(name, f"a pool between a neuron layer and weighted ops must tile its input exactly (kernel = "
                  f"stride, no padding, {shape[1]}x{shape[2]} divisible by the kernel); got kernel {k}, stride "
                  f"{s}, padding {p}")
    n = imp.emit(name, O.AvgPool2d(kernel_size=k, stride=s, padding=p), [x])
    if is_sum:
        imp.sum_area[n] = area
    imp.set(name, n)


def flatten(imp, name, x):
    node = imp.ng.nodes[name]
    shape = imp.shape(x)
    nd = len(shape)
    start, end = int(np.asarray(node.start_dim).reshape(-1)[0]), int(np.asarray(node.end_dim).reshape(-1)[0])
    lo, hi = start + nd if start < 0 else start, end + nd if end < 0 else end
    whole = (lo, hi) == (0, nd - 1) or (start == 1 and end in (-1, nd))  # start_dim 1: counted with a batch axis
    if nd == 1 and (lo <= 0 or start == 1):
        imp.set(name, x)  # already flat
        return
    if not whole:
        imp.fail(name, f"flattens dims {start}..{end} of {shape}; snnc flattens whole samples only")
    imp.set(name, imp.emit(name, O.Flatten(), [x]))


def scale(imp, name, x):
    shape = imp.shape(x)
    s = imp.per_neuron(name, "scale", shape)
    c = s.reshape(shape[0], -1)
    if np.any(c != c[:, :1]):
        imp.fail(name, "scales must be the same over a channel's positions (per channel) to fold into a conv")
    op = ir.op_of(imp.g, x)
    if isinstance(op, (O.Dense, O.Conv2d)) and len(list(imp.d.successors(imp.nir_of[x]))) == 1:
        _scale_rows(op, c[:, 0])  # into the weighted op before it
        imp.set(name, x)
        return
    # else fold_batchnorm folds it forward into the Dense/Conv2d after it (or a neuron's identity synapse takes it)
    imp.set(name, imp.emit(name, O.Affine(scale=c[:, 0].copy(), shift=np.zeros(shape[0])), [x]))


def synapse(imp, x):
    """``x`` as a weighted op or Add (SNN form); a neuron or the Input gets an identity synapse."""
    op = ir.op_of(imp.g, x)
    if isinstance(op, (O.Dense, O.Conv2d, O.Add)):
        return x
    shape = imp.shape(x)
    if isinstance(op, O.Affine):  # a Scale straight into the neuron: the identity synapse carries it
        (src,) = ir.inputs_of(imp.g, x)
        idn = synapse(imp, src)
        if idn == src:
            imp.fail(imp.nir_of[x], "a Scale between a weighted op with other consumers and a neuron cannot fold")
        _scale_rows(ir.op_of(imp.g, idn), op.scale)
        return idn
    if isinstance(op, O.Flatten) or len(shape) == 1:
        f = int(np.prod(shape))
        idn = O.Dense(weight=np.eye(f) * imp.input_gain(x), bias=None)
    else:
        src, _ = imp.through(x)
        if src != x:
            raise NIRError(f"IR node {x!r} ({O.kind(op)}) feeds a neuron directly; snnc needs a weighted op there")
        idn = O.Conv2d(weight=np.full((shape[0], 1, 1, 1), imp.input_gain(x)), bias=None, groups=shape[0])
    n = imp.emit(f"{x}.identity", idn, [x])
    imp.nir_of[n] = None
    return n


def weighted_behind(imp, x) -> list:
    out, todo = [], [x]
    while todo:
        n = todo.pop()
        if isinstance(ir.op_of(imp.g, n), O.Add):
            todo.extend(ir.inputs_of(imp.g, n))
        else:
            out.append(n)
    return out


def fold(imp, name, x, gain):
    """Multiply the currents into neuron ``name`` (IR node ``x`` sums them) by ``gain`` (its shape)."""
    for w in weighted_behind(imp, x):
        op = ir.op_of(imp.g, w)
        owner = imp.nir_of.get(w)
        if owner is not None and len(list(imp.d.successors(owner))) > 1:
            imp.fail(name, f"its input gain (r, dt/tau, w_in, threshold) cannot fold into {owner!r}, which "
                      "also feeds other nodes")
        c = gain.reshape(gain.shape[0], -1)
        if isinstance(op, O.Conv2d) and np.any(c != c[:, :1]):
            imp.fail(name, "its input gain varies within a channel of the conv feeding it; snnc folds it "
                      "into the conv per output channel")
        _scale_rows(op, c[:, 0] if isinstance(op, O.Conv2d) else gain.reshape(-1))


def _scale_rows(op, g):
    """Multiply a Dense/Conv2d's output channels (rows) and bias by ``g`` (per channel)."""
    g = np.asarray(g, np.float64).reshape(-1)
    op.weight = op.weight * g.reshape((-1,) + (1,) * (op.weight.ndim - 1))
    if op.bias is not None:
        op.bias = op.bias * g


def _conv_then_pool(op, k, s, factor):
    """One Conv2d computing ``pool(conv(x))`` (pool kernel ``k``, stride ``s``, no padding; window sum
    times ``factor``): kernel offsets ``m * stride + a * dilation`` add up, stride ``s * stride``."""
    o, cg, kh, kw = op.weight.shape
    (sh, sw), (dh, dw) = op.stride, op.dilation
    size = ((k[0] - 1) * sh + (kh - 1) * dh + 1, (k[1] - 1) * sw + (kw - 1) * dw + 1)
    w = np.zeros((o, cg) + size)
    for m in range(k[0]):
        for n in range(k[1]):
            w[:, :, m * sh:m * sh + (kh - 1) * dh + 1:dh, n * sw:n * sw + (kw - 1) * dw + 1:dw] += op.weight
    bias = None if op.bias is None else op.bias * (factor * k[0] * k[1])
    return O.Conv2d(weight=w * factor, bias=bias, stride=(s[0] * sh, s[1] * sw), padding=tuple(op.padding),
                    dilation=(1, 1), groups=op.groups)
