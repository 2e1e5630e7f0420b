"""Compose a 1x1 convolution (or a Dense) that reads a linear value into the connections it sums.

A linear bottleneck (MobileNetV2: ``x + project(h)`` with no activation after the sum, read by the
next block's 1x1 expansion) or a pointwise conv right after a depthwise one leaves a weighted op
``W`` reading another weighted op or an Add: no neuron layer between them. But ``W`` is linear, so

    W(sum_k C_k(s_k) + b_k) + b_W = sum_k (W o C_k)(s_k) + (W b_k) + b_W

where the ``C_k`` are the weighted ops the value sums (through Adds, any depth) and ``s_k`` their
sources (neuron layers or the Input). For a 1x1 ``W`` with stride 1 and no padding (a pointwise
conv) and a Conv2d ``C`` of any kernel, stride, padding, dilation and groups, ``W o C`` is one
Conv2d with C's geometry, groups 1 and weight ``sum_c W[o, c] C_dense[c, i, :, :]`` (C's groups
written out as a block-diagonal dense kernel); for Dense ``W`` and ``C``, ``W @ C``. Exact at
every position, borders included (the padding belongs to C, W reads every output of C as it is).
``W``'s node then becomes an Add of the composed connections (or the one composed op, keeping the
name), so the layer after it reads what SNN form allows; the Adds and ``C_k`` stay for their
other readers (the next residual sum), and ops nobody reads any more are removed.

A Dense that reads a linear value through pools and Flatten (a residual sum with no activation,
then a global average pool, then the classifier; lower_avgpool leaves such a pool as its linear
depthwise Conv2d) becomes one Dense per source map, read through a Flatten: the whole chain is an
affine map ``A s + c``, whose matrix is read off by sending the source's unit vectors through it
(every op's own ANN reading, biases left out) and ``c`` by sending zeros with the biases (a
matrix of (features, source size): sources up to MAX_PROBE values).

A Conv2d ``W`` of any kernel, stride, padding and groups reading pointwise convs ``C`` (DenseNet's
transition: a 1x1 conv, then a 2x2 average pool, which lower_avgpool leaves as a linear depthwise
conv) composes the same way, ``W o C`` being one Conv2d with W's geometry and weight
``sum_c W_dense[o, c, :, :] C[c, i]``, provided W has no padding or C no bias (a padded W reads
zeros where C's bias would have been). A spatial ``W`` over a spatial ``C`` (a 3x3 conv after a
linear sum) is left alone: its composition is a larger kernel whose padding would have to carry
C's bias, which the IR's zero padding does not; check_snn_form then names both ops.
"""
from __future__ import annotations

import numpy as np

from ..ir import add_op, inputs_of, op_of, topo_order, unique_name, verify
from ..ir import ops as O

MAX_PROBE = 1 << 16  # source values a Dense may be composed over (the probe's batch)


def _pointwise(op) -> bool:
    if isinstance(op, O.Dense):
        return True
    return (isinstance(op, O.Conv2d) and op.weight.shape[2:] == (1, 1) and tuple(op.stride) == (1, 1)
            and tuple(op.padding) == (0, 0) and not op.dilates_input)


def _terms(g, n):
    """The weighted ops whose outputs ``n`` sums (``n`` itself, or an Add's inputs through Adds);
    None when the value involves anything else."""
    op = op_of(g, n)
    if isinstance(op, (O.Dense, O.Conv2d)):
        return [n]
    if isinstance(op, O.Add):
        out = []
        for src in inputs_of(g, n):
            t = _terms(g, src)
            if t is None:
                return None
            out += t
        return out
    return None


def _dense_kernel(op) -> np.ndarray:
    """A Conv2d's weight with its groups written out: (out, in, kh, kw), zero across groups."""
    w, groups = op.weight, op.groups
    if groups == 1:
        return w
    o, cg = w.shape[:2]
    og = o // groups
    full = np.zeros((o, cg * groups) + w.shape[2:])
    for grp in range(groups):
        full[grp * og:(grp + 1) * og, grp * cg:(grp + 1) * cg] = w[grp * og:(grp + 1) * og]
    return full


def _depthwise(op) -> bool:
    """One filter per channel (a lowered average pool): its dense kernel is diagonal in channels."""
    return op.groups == op.weight.shape[0] and op.weight.shape[1] == 1


def _over_pointwise(outer, inner) -> bool:
    """A spatial Conv2d ``outer`` reading pointwise ``inner`` with no bias its padding would drop."""
    return (isinstance(outer, O.Conv2d) and isinstance(inner, O.Conv2d) and _pointwise(inner)
            and (not (any(outer.padding) or outer.dilates_input) or inner.bias is None or not np.any(inner.bias)))


def _compose(outer, inner):
    """``outer o inner`` (no biases: see :func:`compose_linear`), or None when the kinds do not compose."""
    if isinstance(outer, O.Dense) and isinstance(inner, O.Dense):
        return O.Dense(weight=outer.weight @ inner.weight)
    if not _pointwise(outer) and _over_pointwise(outer, inner):
        if _depthwise(outer):  # w[o, i] = outer[o] * inner[o, i]: no sum over channels (DenseNet's transition pool)
            w = outer.weight[:, 0][:, None] * _dense_kernel(inner)[:, :, 0, 0][:, :, None, None]
        else:
            w = np.tensordot(_dense_kernel(outer), _dense_kernel(inner)[:, :, 0, 0], axes=(1, 0)).transpose(0, 3, 1, 2)
        return O.Conv2d(weight=w, stride=tuple(outer.stride), padding=tuple(outer.padding),
                        dilation=tuple(outer.dilation), groups=1, input_dilation=tuple(outer.input_dilation))
    if _pointwise(outer) and isinstance(inner, O.Conv2d):
        if _depthwise(outer):  # a per-channel scale (a BatchNorm as a conv): w[o] = s[o] * inner[o]
            w = outer.weight[:, 0, 0, 0][:, None, None, None] * _dense_kernel(inner)
        else:
            w_out = _dense_kernel(outer)[:, :, 0, 0]  # (o, c)
            w = np.tensordot(w_out, _dense_kernel(inner), axes=(1, 0))  # BLAS: einsum's loop took seconds on DenseNet
        return O.Conv2d(weight=w, stride=tuple(inner.stride), padding=tuple(inner.padding),
                        dilation=tuple(inner.dilation), groups=1, input_dilation=tuple(inner.input_dilation))
    return None


def _bias_through(outer, inner) -> np.ndarray:
    """What ``inner``'s bias adds to ``outer``'s output (per output channel / feature)."""
    n_out = outer.weight.shape[0]
    if inner.bias is None:
        return np.zeros(n_out)
    if isinstance(outer, O.Dense):
        return outer.weight @ inner.bias
    return _dense_kernel(outer).sum(axis=(2, 3)) @ inner.bias  # every tap reads the bias (no padding)


def compose_linear(graph, config) -> bool:
    """Compose every pointwise weighted op that reads a linear value (module docstring)."""
    changed = False
    for n in topo_order(graph):
        op = op_of(graph, n)
        if not (_pointwise(op) or isinstance(op, O.Conv2d)):
            continue
        (src,) = inputs_of(graph, n)
        if isinstance(op, O.Dense) and isinstance(op_of(graph, src), O.Flatten):
            changed = _dense_over_chain(graph, n) or changed
            continue
        if not isinstance(op_of(graph, src), (O.Dense, O.Conv2d, O.Add)):
            continue
        terms = _terms(graph, src)
        if terms is not None and not all(_is_term(graph, t) for t in terms):
            terms = None  # a term that itself reads a linear value (a pool of a sum): only a Dense composes it
        composed = None if terms is None else [_compose(op, op_of(graph, t)) for t in terms]
        if composed is None or any(c is None for c in composed):
            if isinstance(op, O.Dense):
                changed = _dense_over_chain(graph, n) or changed
            continue
        bias = np.zeros(op.weight.shape[0]) if op.bias is None else np.array(op.bias, np.float64)
        for t in terms:
            bias = bias + _bias_through(op, op_of(graph, t))
        composed[0].bias = bias
        consumers = [(d, graph.edges[n, d]["port"]) for d in graph.successors(n)]
        graph.remove_node(n)
        if len(terms) == 1:
            add_op(graph, n, composed[0], inputs_of(graph, terms[0]))
        else:
            parts = [add_op(graph, unique_name(graph, f"{n}.via.{t}"), c, inputs_of(graph, t))
                     for t, c in zip(terms, composed)]
            add_op(graph, n, O.Add(), parts)
        for d, port in consumers:
            graph.add_edge(n, d, port=port)
        _drop_unread(graph, src)
        changed = True
    if changed:
        verify(graph)
    return changed


def _drop_unread(graph, n) -> None:
    """Remove ``n`` and then its sources while nothing reads them (the composed-away chain)."""
    todo = [n]
    while todo:
        m = todo.pop()
        linear = (O.Dense, O.Conv2d, O.Add, O.Flatten, O.AvgPool2d)
        if m in graph and graph.out_degree(m) == 0 and isinstance(op_of(graph, m), linear):
            todo += inputs_of(graph, m)
            graph.remove_node(m)


def _is_term(graph, n) -> bool:
    """A weighted op reading (through Flatten and pools) a neuron layer or the Input: a connection."""
    if not isinstance(op_of(graph, n), (O.Dense, O.Conv2d)):
        return False
    (src,) = inputs_of(graph, n)
    while isinstance(op_of(graph, src), (O.Flatten, O.AvgPool2d)):
        (src,) = inputs_of(graph, src)
    return isinstance(op_of(graph, src), (O.Neuron, O.Input))


def _chain(graph, n, terms) -> bool:
    """Whether ``n``'s value is linear in connections only (collected into ``terms``)."""
    op = op_of(graph, n)
    if _is_term(graph, n):
        terms.add(n)
        return True
    if isinstance(op, (O.Add, O.Flatten, O.AvgPool2d, O.Dense, O.Conv2d)):
        return all(_chain(graph, i, terms) for i in inputs_of(graph, n))
    return False


def _unbiased(op):
    return op if getattr(op, "bias", None) is None else type(op)(**dict(vars(op), bias=None))


def _probe(graph, n, feed, batch, biases: bool):
    """``n``'s value (a batch) when the connections in ``feed`` output its arrays and all others 0."""
    if n in feed:
        return feed[n]
    op = op_of(graph, n)
    if _is_term(graph, n):
        return np.zeros((batch,) + tuple(graph.nodes[n]["shape"]))
    xs = [_probe(graph, i, feed, batch, biases) for i in inputs_of(graph, n)]
    return (op if biases else _unbiased(op)).ann(xs)


def _dense_over_chain(graph, n) -> bool:
    """Replace Dense ``n`` reading a linear chain by one Dense per source (module docstring)."""
    (src,) = inputs_of(graph, n)
    terms = set()
    if _is_term(graph, n) or not _chain(graph, src, terms) or not terms:
        return False
    verify(graph)  # the shapes of what an earlier composition added
    op = op_of(graph, n)
    per_source = {}
    for t in sorted(terms):
        (x,) = inputs_of(graph, t)
        shape = tuple(graph.nodes[x]["shape"])
        size = int(np.prod(shape))
        if size > MAX_PROBE:
            return False
        basis = np.eye(size).reshape((size,) + shape)
        out = _unbiased(op).ann([_probe(graph, src, {t: _unbiased(op_of(graph, t)).ann([basis])}, size, False)])
        per_source[x] = per_source.get(x, 0) + out.T  # (features, source size)
    feed = {t: op_of(graph, t).ann([np.zeros((1,) + tuple(graph.nodes[inputs_of(graph, t)[0]]["shape"]))])
            for t in terms}
    bias = op.ann([_probe(graph, src, feed, 1, True)])[0]
    consumers = [(d, graph.edges[n, d]["port"]) for d in graph.successors(n)]
    graph.remove_node(n)
    parts = []
    for i, (x, w) in enumerate(per_source.items()):
        read = x
        if len(graph.nodes[x]["shape"]) == 3:
            read = add_op(graph, unique_name(graph, f"{n}.flat.{x}"), O.Flatten(), [x])
            graph.nodes[read]["shape"] = (w.shape[1],)
        name = n if len(per_source) == 1 else unique_name(graph, f"{n}.via.{x}")
        parts.append(add_op(graph, name, O.Dense(weight=w, bias=bias if i == 0 else None), [read]))
    if len(parts) > 1:
        add_op(graph, n, O.Add(), parts)
    for d, port in consumers:
        graph.add_edge(n, d, port=port)
    _drop_unread(graph, src)
    return True
