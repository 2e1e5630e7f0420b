"""split_concat on hand-built graphs: every reader of a Concat is rewritten to read its parts, and the
graph's ANN reading (numpy, float64) is unchanged to 1e-12 of its largest value (the rewrites only
regroup sums); with it the passes a DenseNet needs: affine_as_conv, readout_connection and
compose_linear's spatial conv over pointwise ones."""
from __future__ import annotations

import numpy as np
import pytest

from snn_compiler import ir
from snn_compiler.config import CompileConfig
from snn_compiler.ir import ops as O
from snn_compiler.ir.routing import Concat
from snn_compiler.passes import STRUCTURAL, affine_as_conv, compose_linear, readout_connection, run_pass, \
    run_pipeline, split_concat
from snn_compiler.sim.emulator import run_ann

RNG = np.random.default_rng(0)


def _w(*shape):
    return RNG.normal(size=shape)


def _graph(build, shape=(3, 6, 6)):
    """Input (shape) -> conv3x3 -> IF 'a' and conv1x1 -> IF 'b' (two parts), then ``build(g)`` adds the
    rest and returns the node the read-out reads."""
    g = ir.new_graph()
    ir.add_op(g, "input", O.Input(shape=shape))
    ir.add_op(g, "ca", O.Conv2d(weight=_w(4, shape[0], 3, 3), bias=_w(4), padding=(1, 1)), ["input"])
    ir.add_op(g, "a", O.IF(), ["ca"])
    ir.add_op(g, "cb", O.Conv2d(weight=_w(2, shape[0], 1, 1), bias=_w(2)), ["input"])
    ir.add_op(g, "b", O.IF(), ["cb"])
    ir.add_readout(g, build(g))
    for n in ("b", "cb", "a", "ca"):  # the parts a test does not read
        if g.out_degree(n) == 0:
            g.remove_node(n)
    ir.verify(g)
    return g


def _same_reading(g, passes):
    x = RNG.random((5,) + g.nodes["input"]["shape"])
    before = run_ann(g, x)
    for fn in passes:
        run_pass(fn, g, CompileConfig())
    after = run_ann(g, x)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-12 * np.abs(before).max())
    assert not any(isinstance(ir.op_of(g, n), Concat) for n in g)
    return g


def _cat(g, name="cat", parts=("a", "b")):
    return ir.add_op(g, name, Concat(), list(parts))


def test_a_convolution_over_a_concat_becomes_one_per_part_summed():
    def build(g):
        ir.add_op(g, "conv", O.Conv2d(weight=_w(5, 6, 3, 3), bias=_w(5), stride=(2, 2), padding=(1, 1)), [_cat(g)])
        return ir.add_op(g, "relu", O.IF(), ["conv"])
    g = _same_reading(_graph(build), [split_concat])
    assert isinstance(ir.op_of(g, "conv"), O.Add) and ir.inputs_of(g, "conv") == ["conv.part0", "conv.part1"]
    assert ir.op_of(g, "conv.part0").weight.shape == (5, 4, 3, 3) and ir.op_of(g, "conv.part1").bias is None
    run_pipeline(g, CompileConfig(), STRUCTURAL)  # SNN form


def test_per_channel_ops_are_applied_per_part_and_flatten_feeds_a_split_dense():
    def build(g):
        c = _cat(g)
        ir.add_op(g, "bn", O.BatchNorm(mean=_w(6), var=RNG.random(6) + 0.5, weight=_w(6), bias=_w(6)), [c])
        ir.add_op(g, "relu", O.IF(), ["bn"])
        ir.add_op(g, "max", O.MaxPool2d(kernel_size=(2, 2), stride=(2, 2)), ["relu"])
        ir.add_op(g, "avg", O.AvgPool2d(kernel_size=(3, 3), stride=(3, 3)), ["max"])
        ir.add_op(g, "flat", O.Flatten(), ["avg"])
        return ir.add_op(g, "fc", O.Dense(weight=_w(3, 6), bias=_w(3)), ["flat"])
    g = _same_reading(_graph(build), [split_concat])
    for n in ("bn", "relu", "max", "avg", "flat"):
        assert f"{n}.part0" in g and f"{n}.part1" in g and n not in g
    assert ir.op_of(g, "bn.part1").mean.shape == (2,) and ir.op_of(g, "fc.part1").weight.shape == (3, 2)
    run_pipeline(g, CompileConfig(), STRUCTURAL)


def test_a_concat_of_a_concat_and_a_concat_read_by_add_and_by_the_read_out():
    def build(g):
        inner = _cat(g, "inner")
        ir.add_op(g, "cc", O.Conv2d(weight=_w(6, 3, 1, 1)), ["input"])
        ir.add_op(g, "c", O.IF(), ["cc"])
        outer = ir.add_op(g, "outer", Concat(), [inner, "c"])  # 12 channels
        ir.add_op(g, "conv12", O.Conv2d(weight=_w(12, 6, 1, 1)), ["c"])  # a residual sum of the concat
        return ir.add_op(g, "sum", O.Add(), ["conv12", outer])
    g = _same_reading(_graph(build), [split_concat])
    assert isinstance(ir.op_of(g, "outer.sum"), O.Add) and len(ir.inputs_of(g, "outer.sum")) == 2
    g2 = _same_reading(_graph(lambda g: _cat(g)), [split_concat])  # the read-out reads the concat
    assert ir.inputs_of(g2, ir.output_node(g2)) == ["cat.sum"]
    run_pipeline(g, CompileConfig(), STRUCTURAL)
    run_pipeline(g2, CompileConfig(), STRUCTURAL)


def test_a_grouped_conv_splits_where_parts_hold_whole_groups_and_composes_embeddings_otherwise():
    def build(groups):
        def fn(g):
            ir.add_op(g, "dw", O.Conv2d(weight=_w(12, 6 // groups, 3, 3), bias=_w(12), padding=(1, 1),
                                        groups=groups), [_cat(g)])
            return ir.add_op(g, "relu", O.IF(), ["dw"])
        return fn
    for groups in (6, 3):  # depthwise; and groups of two channels (parts of 4 and 2 hold whole groups)
        g = _same_reading(_graph(build(groups)), [split_concat])
        assert ir.op_of(g, "dw.part0").groups == 4 // (6 // groups)
    g = _same_reading(_graph(build(2)), [split_concat])  # groups of 3 straddle the parts (4 + 2 channels)
    assert ir.inputs_of(g, "dw") == ["cat.sum"]
    _same_reading(g, STRUCTURAL)  # compose_linear composes the grouped conv with the 0/1 embeddings
    assert isinstance(ir.op_of(g, "dw"), O.Add)  # one groups=1 conv per part, reading the part's spikes
    assert [ir.inputs_of(g, t) for t in ir.inputs_of(g, "dw")] == [["a"], ["b"]]


def test_concat_of_vectors_read_by_a_dense():
    def build(g):
        ir.add_op(g, "fa", O.Flatten(), ["a"])
        ir.add_op(g, "da", O.Dense(weight=_w(5, 144)), ["fa"])
        ir.add_op(g, "ra", O.IF(), ["da"])
        ir.add_op(g, "fb", O.Flatten(), ["b"])
        cat = ir.add_op(g, "cat", Concat(), ["ra", "fb"])
        return ir.add_op(g, "fc", O.Dense(weight=_w(4, 5 + 72), bias=_w(4)), [cat])
    g = _same_reading(_graph(build), [split_concat])
    assert ir.op_of(g, "fc.part1").weight.shape == (4, 72)
    run_pipeline(g, CompileConfig(), STRUCTURAL)


def test_concat_shapes_are_checked():
    with pytest.raises(ValueError, match="differ beyond their first"):
        Concat().infer_shape([(2, 4, 4), (3, 4, 5)])
    assert Concat().infer_shape([(2, 4, 4), (3, 4, 4)]) == (5, 4, 4)


def test_an_unfoldable_affine_becomes_a_depthwise_connection_and_composes_into_a_shared_conv():
    """DenseNet's pre-activation BN: on spikes (a connection of its own) and on a conv other layers read
    (composed into a copy of that conv by compose_linear)."""
    def build(g):
        ir.add_op(g, "aff_a", O.Affine(scale=_w(4), shift=_w(4)), ["a"])
        ir.add_op(g, "ra", O.IF(), ["aff_a"])
        ir.add_op(g, "aff_c", O.Affine(scale=_w(2), shift=_w(2)), ["cb"])  # cb also feeds IF b
        ir.add_op(g, "rc", O.IF(), ["aff_c"])
        ir.add_op(g, "ca2", O.Conv2d(weight=_w(2, 4, 1, 1)), ["ra"])
        ir.add_op(g, "cc2", O.Conv2d(weight=_w(2, 2, 1, 1)), ["rc"])
        ir.add_op(g, "cb2", O.Conv2d(weight=_w(2, 2, 1, 1)), ["b"])
        return ir.add_op(g, "sum", O.Add(), ["ca2", "cc2", "cb2"])
    g = _same_reading(_graph(build), [affine_as_conv])
    assert ir.op_of(g, "aff_a").groups == 4 and ir.op_of(g, "aff_a").bias.shape == (4,)
    _same_reading(g, [compose_linear])
    assert ir.inputs_of(g, "aff_c") == ["input"]  # cb's copy, scaled
    run_pipeline(g, CompileConfig(), STRUCTURAL)


def test_a_read_out_of_pooled_spikes_gets_an_identity_connection():
    def build(g):
        ir.add_op(g, "pool", O.AvgPool2d(kernel_size=(6, 6), stride=(6, 6)), ["a"])
        return ir.add_op(g, "flat", O.Flatten(), ["pool"])
    g = _same_reading(_graph(build), [readout_connection])
    (conn,) = ir.inputs_of(g, ir.output_node(g))
    assert isinstance(ir.op_of(g, conn), O.Dense) and np.array_equal(ir.op_of(g, conn).weight, np.eye(4))
    run_pipeline(g, CompileConfig(), STRUCTURAL)  # the pool stays synaptic


def test_a_spatial_conv_over_a_pointwise_one_composes_unless_its_padding_drops_a_bias():
    def build(pad, bias):
        def fn(g):
            ir.add_op(g, "pw", O.Conv2d(weight=_w(3, 4, 1, 1), bias=_w(3) if bias else None), ["a"])
            ir.add_op(g, "pool", O.Conv2d(weight=np.full((3, 1, 2, 2), 0.25), stride=(2, 2), padding=pad,
                                          groups=3), ["pw"])
            return ir.add_op(g, "relu", O.IF(), ["pool"])
        return fn
    for pad, bias in (((0, 0), True), ((1, 1), False)):
        g = _same_reading(_graph(build(pad, bias)), [compose_linear])
        assert ir.inputs_of(g, "pool") == ["a"] and ir.op_of(g, "pool").weight.shape == (3, 4, 2, 2)
    g = _graph(build((1, 1), True))
    assert not compose_linear(g, CompileConfig()) and ir.inputs_of(g, "pool") == ["pw"]
