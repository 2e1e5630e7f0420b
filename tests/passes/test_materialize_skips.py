import numpy as np

from snn_compiler.ir import add_op, inputs_of, new_graph, op_of, verify
from snn_compiler.ir import ops as O
from snn_compiler.passes.materialize_skips import materialize_skips


def residual(shape, block, skip_first=False, flatten=False):
    """input -> fc/conv -> relu -> [flat] -> block -> add(relu, block) -> relu2 -> output"""
    g = new_graph()
    add_op(g, "input", O.Input(shape))
    add_op(g, "relu", O.IF(), ["input"])
    src = add_op(g, "flat", O.Flatten(), ["relu"]) if flatten else "relu"
    add_op(g, "block", block, [src])
    add_op(g, "add", O.Add(), [src, "block"] if skip_first else ["block", src])
    add_op(g, "relu2", O.IF(), ["add"])
    add_op(g, "output", O.Output(), ["relu2"])
    verify(g)
    return g


def test_conv_skip(layers, check_same):
    g = residual((3, 5, 5), layers.conv(3, 3, padding=(1, 1)))
    assert check_same(materialize_skips, g)
    assert inputs_of(g, "add") == ["block", "add.skip1"] and inputs_of(g, "add.skip1") == ["relu"]
    op = op_of(g, "add.skip1")
    assert isinstance(op, O.Conv2d) and op.groups == 3 and op.bias is None
    assert op.weight.shape == (3, 1, 1, 1) and np.all(op.weight == 1)
    assert g.nodes["add.skip1"]["shape"] == (3, 5, 5)


def test_dense_skip_on_port0(layers, check_same):
    g = residual((4,), layers.dense(4, 4), skip_first=True)
    assert check_same(materialize_skips, g)
    assert inputs_of(g, "add") == ["add.skip0", "block"]
    op = op_of(g, "add.skip0")
    assert isinstance(op, O.Dense) and op.bias is None and np.array_equal(op.weight, np.eye(4))


def test_skip_through_flatten(layers, check_same):
    g = residual((2, 3, 2), layers.dense(12, 12), flatten=True)
    assert check_same(materialize_skips, g)
    assert inputs_of(g, "add.skip1") == ["flat"] and op_of(g, "add.skip1").weight.shape == (12, 12)


def test_skip_from_input(layers, check_same):
    g = new_graph()
    add_op(g, "input", O.Input((2, 4, 4)))
    add_op(g, "conv", layers.conv(2, 2, k=1), ["input"])
    add_op(g, "add", O.Add(), ["input", "conv"])
    add_op(g, "output", O.Output(), ["add"])
    verify(g)
    assert check_same(materialize_skips, g)
    assert inputs_of(g, "add") == ["add.skip0", "conv"]


def test_two_adds_and_add_of_add(layers, check_same):
    # add1 = relu + c1 ; add2 = add1 + relu + c2: add1 -> add2 stays, relu gets two skips
    g = new_graph()
    add_op(g, "input", O.Input((3,)))
    add_op(g, "relu", O.IF(), ["input"])
    add_op(g, "c1", layers.dense(3, 3), ["relu"])
    add_op(g, "c2", layers.dense(3, 3), ["relu"])
    add_op(g, "add1", O.Add(), ["relu", "c1"])
    add_op(g, "add2", O.Add(), ["add1", "relu", "c2"])
    add_op(g, "output", O.Output(), ["add2"])
    verify(g)
    assert check_same(materialize_skips, g)
    assert inputs_of(g, "add1") == ["add1.skip0", "c1"]
    assert inputs_of(g, "add2") == ["add1", "add2.skip1", "c2"]


def test_no_skips_no_change(layers):
    g = new_graph()
    add_op(g, "input", O.Input((3,)))
    add_op(g, "relu", O.IF(), ["input"])
    add_op(g, "c1", layers.dense(3, 3), ["relu"])
    add_op(g, "c2", layers.dense(3, 3), ["relu"])
    add_op(g, "add", O.Add(), ["c1", "c2"])
    add_op(g, "output", O.Output(), ["add"])
    verify(g)
    edges = set(g.edges(data="port"))
    assert materialize_skips(g, None) is False
    assert set(g.edges(data="port")) == edges
