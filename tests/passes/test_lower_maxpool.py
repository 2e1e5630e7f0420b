import math

import numpy as np
import pytest

from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, inputs_of, new_graph, op_of, verify
from snn_compiler.ir import ops as O
from snn_compiler.passes import STRUCTURAL, check_snn_form, lower_avgpool, materialize_skips
from snn_compiler.passes.lower_maxpool import _tree, lower_maxpool

GEOMETRIES = [  # kernel, stride, padding, dilation
    ((2, 2), (2, 2), (0, 0), (1, 1)),
    ((3, 3), (2, 2), (1, 1), (1, 1)),
    ((3, 3), (3, 3), (0, 0), (1, 1)),
    ((2, 2), (1, 1), (1, 1), (1, 1)),   # overlapping, padded
    ((3, 2), (1, 2), (1, 0), (2, 1)),   # rectangular, dilated
    ((1, 1), (2, 2), (0, 0), (1, 1)),   # a subsampling: one relay layer
    ((4, 4), (4, 4), (0, 0), (1, 1)),
]


def _tree_max(n, v):
    levels, out = _tree(n)
    val = {("x", j): v[j] for j in range(n)}
    for lvl, units in enumerate(levels, start=1):
        for u, form in enumerate(units):
            val[("d", lvl, u)] = max(0.0, sum(c * val[t] for t, c in form.items()))
    return sum(c * val[t] for t, c in out.items()), len(levels)


@pytest.mark.parametrize("n", range(1, 17))
def test_tree_computes_the_max_of_non_negative_values(rng, n):
    for _ in range(20):
        v = rng.random(n) * rng.integers(0, 2, n)  # zeros and ties included
        got, depth = _tree_max(n, v)
        assert got == pytest.approx(v.max(), abs=1e-12)
        assert depth == math.ceil(math.log2(n))


def _pool_net(layers, geo, shape=(2, 9, 8)):
    k, s, p, d = geo
    return [layers.conv(3, shape[0], padding=(1, 1)), O.IF(), O.MaxPool2d(k, s, p, d)], ["conv", "relu", "pool"]


@pytest.mark.parametrize("geo", GEOMETRIES)
def test_pool_becomes_if_layers_with_the_same_ann(chain, layers, check_same, geo):
    ops, names = _pool_net(layers, geo)
    g = chain((2, 9, 8), *ops, O.Flatten(), layers.dense(4, 3 * int(np.prod(
        O.MaxPool2d(*geo).infer_shape([(3, 9, 8)])[1:]))), names=names + ["flat", "fc"])
    shape = g.nodes["pool"]["shape"]
    assert check_same(lower_maxpool, g, nonneg=True)
    n = geo[0][0] * geo[0][1]
    levels = math.ceil(math.log2(n))
    new_if = sorted(m for m in g if m.startswith("pool") and O.is_hidden_neuron(op_of(g, m)))
    assert new_if == sorted([f"pool.max{l}" for l in range(1, levels + 1)] + ["pool.if"])
    assert inputs_of(g, "flat") == ["pool.if"] and g.nodes["pool.if"]["shape"] == shape
    for l in range(1, levels + 1):  # ceil(n / 2^l) pairs... per channel, all on the output grid
        c, h, w = g.nodes[f"pool.max{l}"]["shape"]
        assert (h, w) == shape[1:] and c % 3 == 0
    assert sum(g.nodes[f"pool.max{l}"]["shape"][0] for l in range(1, levels + 1)) == 3 * (n - 1)
    for m in g:  # selection weights only, no biases
        op = op_of(g, m)
        if m.startswith("pool") and isinstance(op, O.Conv2d):
            assert op.bias is None and set(np.unique(op.weight)) <= {-1.0, 0.0, 1.0} and op.groups == 3
    for fn in (lower_avgpool, materialize_skips, check_snn_form):
        fn(g, None)


@pytest.mark.parametrize("geo", GEOMETRIES[:3])
def test_exact_on_random_non_negative_input_and_ties(chain, layers, evaluate, geo):
    """The pool reads the input's ReLU directly: inputs with exact ties and zeros."""
    g = chain((3, 8, 8), layers.conv(3, 3, k=1, bias=False), O.IF(), O.MaxPool2d(*geo),
              names=["conv", "relu", "pool"])
    op_of(g, "conv").weight = np.eye(3).reshape(3, 3, 1, 1)  # relu(x) = x on non-negative x
    rng = np.random.default_rng(1)
    x = np.round(rng.random((6, 3, 8, 8)) * 3) / 3
    want = evaluate(g, x)
    assert lower_maxpool(g, None)
    verify(g)
    np.testing.assert_allclose(evaluate(g, x), want, rtol=0, atol=1e-12)


def test_relu_after_the_pool_moves_in_front(chain, layers, check_same):
    """maxpool(conv) -> relu == relu(conv) -> maxpool: exact for any input sign."""
    g = chain((2, 8, 8), layers.conv(3, 2, padding=(1, 1)), O.MaxPool2d((2, 2), (2, 2)), O.IF(),
              names=["conv", "pool", "relu"])
    assert check_same(lower_maxpool, g)  # random normal input: negative values included
    assert inputs_of(g, "relu") == ["conv"]
    assert inputs_of(g, "pool.max1") == ["pool.max1.in_x"] and inputs_of(g, "pool.max1.in_x") == ["relu"]
    assert inputs_of(g, "output") == ["pool.if"]


def test_relu_after_a_relu_pool_is_the_pool_layer(chain, layers, check_same):
    g = chain((2, 8, 8), layers.conv(3, 2, padding=(1, 1)), O.IF(), O.MaxPool2d((2, 2), (2, 2)), O.IF(),
              names=["conv", "relu", "pool", "relu2"])
    assert check_same(lower_maxpool, g)
    assert "pool.if" not in g and inputs_of(g, "relu2") == ["pool"]
    assert isinstance(op_of(g, "pool"), O.Add) and inputs_of(g, "output") == ["relu2"]


def test_pool_after_pool_and_several_consumers(layers, check_same):
    rng = np.random.default_rng(2)
    g = new_graph()
    add_op(g, "input", O.Input((2, 8, 8)))
    add_op(g, "conv", layers.conv(2, 2, padding=(1, 1)), ["input"])
    add_op(g, "relu", O.IF(), ["conv"])
    add_op(g, "p1", O.MaxPool2d((2, 2), (2, 2)), ["relu"])
    add_op(g, "p2", O.MaxPool2d((2, 2), (2, 2)), ["p1"])
    add_op(g, "c1", O.Conv2d(rng.normal(size=(2, 2, 1, 1))), ["p2"])
    add_op(g, "c2", O.Conv2d(rng.normal(size=(2, 2, 1, 1))), ["p2"])
    add_op(g, "sum", O.Add(), ["c1", "c2"])
    add_op(g, "output", O.Output(), ["sum"])
    verify(g)
    assert check_same(lower_maxpool, g)
    assert inputs_of(g, "p2.max1.in_x") == ["p1.if"]
    assert inputs_of(g, "c1") == inputs_of(g, "c2") == ["p2.if"]
    for fn in (lower_avgpool, materialize_skips, check_snn_form):
        fn(g, None)


def _refused(g, match):
    with pytest.raises(ValueError, match=match):
        lower_maxpool(g, None)


def test_pool_on_the_input_is_refused(chain):
    _refused(chain((2, 4, 4), O.MaxPool2d((2, 2), (2, 2)), names=["features.0"]),
             r"MaxPool2d features\.0 follows Input input, not a ReLU: its input may be negative; .*relu\(a - b\) \+ b"
             r".*put the pool after the activation")


def test_pool_between_weighted_layers_is_refused(chain, layers):
    g = chain((2, 4, 4), layers.conv(2, 2, padding=(1, 1)), O.MaxPool2d((2, 2), (2, 2)), O.Flatten(),
              names=["features.0", "features.1", "flat"])
    _refused(g, r"MaxPool2d features\.1 follows Conv2d features\.0, not a ReLU")


def test_pool_after_a_trained_lif_layer_is_refused(chain, layers):
    g = chain((2, 4, 4), layers.conv(2, 2, padding=(1, 1)), O.LIF(0.9), O.MaxPool2d((2, 2), (2, 2)),
              names=["conv", "lif", "pool"])
    _refused(g, r"MaxPool2d pool follows LIF lif, not a ReLU: a trained spiking layer has no ANN reading")


def test_window_entirely_in_padding_is_refused(chain, layers):
    g = chain((2, 2, 2), layers.conv(2, 2, padding=(1, 1)), O.IF(), O.MaxPool2d((2, 2), (1, 1), (1, 1), (3, 3)),
              names=["conv", "relu", "pool"])
    _refused(g, r"MaxPool2d pool: some windows lie entirely in the padding")


def test_no_pool_no_change(chain, layers):
    g = chain((2, 4, 4), layers.conv(2, 2), O.IF())
    nodes = set(g)
    assert lower_maxpool(g, None) is False and set(g) == nodes


def test_left_over_pool_is_named_by_check_snn_form(chain, layers):
    g = chain((2, 4, 4), layers.conv(2, 2, padding=(1, 1)), O.IF(), O.MaxPool2d((2, 2), (2, 2)), O.Flatten(),
              layers.dense(3, 8), names=["conv", "relu", "pool", "flat", "fc"])
    with pytest.raises(ValueError, match="MaxPool2d pool was not lowered to IF layers"):
        check_snn_form(g, None)


def test_runs_in_the_pipeline_before_the_other_lowerings():
    names = [f.__name__ for f in STRUCTURAL]
    assert names.index("fold_batchnorm") < names.index("lower_maxpool") < names.index("lower_avgpool")


def test_compiled_pool_layers_get_scales_and_selection_weights(chain, layers):
    from snn_compiler.compile import compile_model
    g = chain((2, 8, 8), layers.conv(3, 2, padding=(1, 1)), O.IF(), O.MaxPool2d((2, 2), (2, 2)), O.Flatten(),
              layers.dense(4, 48), names=["conv", "relu", "pool", "flat", "fc"])
    x = np.random.default_rng(3).random((40, 2, 8, 8))
    q = compile_model(g, CompileConfig(bits=8, calibration=x))
    for n in ("pool.max1", "pool.max2", "pool.if"):
        op = op_of(q, n)
        assert op.scale > 0 and op.threshold >= 1
    w = op_of(q, "pool.max1.in_x").weight_int
    assert set(np.unique(np.sign(w))) == {-1, 0, 1} and len(np.unique(np.abs(w[w != 0]))) == 1
