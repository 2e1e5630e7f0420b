import numpy as np
import pytest

from snn_compiler.ir import add_op, inputs_of, new_graph, op_of, verify
from snn_compiler.ir import ops as O
from snn_compiler.passes.fold_batchnorm import fold_batchnorm

from .conftest import kinds


def no_norm_left(g):
    return not any(isinstance(op_of(g, n), (O.BatchNorm, O.Affine)) for n in g)


def test_dense_then_bn_folds_backward(chain, layers, check_same):
    g = chain((5,), layers.dense(4, 5), layers.bn(4), O.IF(), layers.dense(3, 4),
              names=["fc1", "bn", "relu", "fc2"])
    assert check_same(fold_batchnorm, g)
    assert "bn" not in g and inputs_of(g, "relu") == ["fc1"]
    assert no_norm_left(g)


@pytest.mark.parametrize("kw", [dict(), dict(stride=(2, 2), padding=(1, 1)), dict(groups=2, padding=(1, 1))])
def test_conv_then_bn_folds_backward(chain, layers, check_same, kw):
    g = chain((4, 7, 7), layers.conv(6, 4, **kw), layers.bn(6), O.IF(), names=["conv", "bn", "relu"])
    assert check_same(fold_batchnorm, g)
    assert set(g) == {"input", "conv", "relu", "output"}


def test_backward_fold_without_bias(chain, layers, check_same):
    g = chain((3, 5, 5), layers.conv(2, 3, bias=False), layers.bn(2), O.IF(), names=["conv", "bn", "relu"])
    assert check_same(fold_batchnorm, g)
    assert op_of(g, "conv").bias.shape == (2,)


def test_no_backward_fold_when_weighted_op_has_two_consumers(layers, check_same, rng):
    # input -> conv -> bn -> relu1 -> c1 \
    #             \-> relu2 -----> c2 ---> add -> output
    g = new_graph()
    add_op(g, "input", O.Input((2, 6, 6)))
    add_op(g, "conv", layers.conv(3, 2, padding=(1, 1)), ["input"])
    add_op(g, "bn", layers.bn(3), ["conv"])
    add_op(g, "relu1", O.IF(), ["bn"])
    add_op(g, "relu2", O.IF(), ["conv"])
    add_op(g, "c1", layers.conv(2, 3), ["relu1"])
    add_op(g, "c2", layers.conv(2, 3), ["relu2"])
    add_op(g, "add", O.Add(), ["c1", "c2"])
    add_op(g, "output", O.Output(), ["add"])
    verify(g)
    w_conv = op_of(g, "conv").weight.copy()
    assert check_same(fold_batchnorm, g)
    assert isinstance(op_of(g, "bn"), O.Affine)  # relu1 is not weighted: nothing to fold into
    np.testing.assert_array_equal(op_of(g, "conv").weight, w_conv)


def test_two_consumers_but_forward_fold_possible(layers, check_same):
    # conv has two consumers, so the BN cannot fold backward; its only consumer is an unpadded conv
    g = new_graph()
    add_op(g, "input", O.Input((2, 6, 6)))
    add_op(g, "conv", layers.conv(3, 2, padding=(1, 1)), ["input"])
    add_op(g, "bn", layers.bn(3), ["conv"])
    add_op(g, "c1", layers.conv(2, 3, k=1), ["bn"])
    add_op(g, "c2", layers.conv(2, 3, k=1), ["conv"])
    add_op(g, "add", O.Add(), ["c1", "c2"])
    add_op(g, "output", O.Output(), ["add"])
    verify(g)
    assert check_same(fold_batchnorm, g)
    assert "bn" not in g and inputs_of(g, "c1") == ["conv"]


def test_bn_after_relu_folds_forward_into_dense(chain, layers, check_same):
    g = chain((5,), layers.dense(4, 5), O.IF(), layers.bn(4), layers.dense(3, 4),
              names=["fc1", "relu", "bn", "fc2"])
    assert check_same(fold_batchnorm, g)
    assert inputs_of(g, "fc2") == ["relu"] and no_norm_left(g)


def test_bn_on_input_folds_forward_into_dense_without_bias(chain, layers, check_same):
    g = chain((6,), layers.bn(6), layers.dense(3, 6, bias=False), names=["bn", "fc"])
    assert check_same(fold_batchnorm, g)
    assert kinds(g) == {"input": "Input", "fc": "Dense", "output": "Output"}


def test_bn_folds_forward_into_dense_through_flatten(chain, layers, check_same):
    # per-channel scale over C=3 channels of a 3x4x2 map, expanded in C,H,W flatten order
    g = chain((3, 4, 2), O.IF(), layers.bn(3), O.Flatten(), layers.dense(5, 24),
              names=["relu", "bn", "flat", "fc"])
    assert check_same(fold_batchnorm, g)
    assert no_norm_left(g) and inputs_of(g, "flat") == ["relu"]


@pytest.mark.parametrize("kw", [dict(), dict(stride=(2, 2)), dict(dilation=(2, 2))])
def test_bn_folds_forward_into_unpadded_conv(chain, layers, check_same, kw):
    g = chain((3, 7, 7), O.IF(), layers.bn(3), layers.conv(4, 3, **kw), names=["relu", "bn", "conv"])
    assert check_same(fold_batchnorm, g)
    assert no_norm_left(g)


@pytest.mark.parametrize("kw", [dict(padding=(1, 1)), dict(padding=(0, 1)), dict(groups=3)])
def test_bn_before_padded_or_grouped_conv_becomes_affine(chain, layers, check_same, kw):
    g = chain((3, 6, 6), O.IF(), layers.bn(3), layers.conv(3, 3, **kw), names=["relu", "bn", "conv"])
    assert check_same(fold_batchnorm, g)
    op = op_of(g, "bn")
    assert isinstance(op, O.Affine) and op.scale.shape == (3,) and op.shift.shape == (3,)


def test_bn_with_two_consumers_becomes_affine(layers, check_same):
    g = new_graph()
    add_op(g, "input", O.Input((4,)))
    add_op(g, "relu", O.IF(), ["input"])
    add_op(g, "bn", layers.bn(4), ["relu"])
    add_op(g, "fc1", layers.dense(2, 4), ["bn"])
    add_op(g, "fc2", layers.dense(2, 4), ["bn"])
    add_op(g, "add", O.Add(), ["fc1", "fc2"])
    add_op(g, "output", O.Output(), ["add"])
    verify(g)
    assert check_same(fold_batchnorm, g)
    assert isinstance(op_of(g, "bn"), O.Affine)


def test_bn_chain_folds_to_fixed_point(chain, layers, check_same):
    g = chain((4,), O.IF(), layers.bn(4), layers.bn(4), layers.dense(2, 4), names=["relu", "bn1", "bn2", "fc"])
    assert check_same(fold_batchnorm, g)
    assert no_norm_left(g)


def test_leftover_affine_folds_when_possible(chain, layers, check_same, rng):
    aff = O.Affine(scale=rng.normal(size=3), shift=rng.normal(size=3))
    g = chain((3,), layers.dense(3, 3), aff, O.IF(), names=["fc", "aff", "relu"])
    assert check_same(fold_batchnorm, g)
    assert no_norm_left(g)


def test_float32_weights_keep_their_dtype(chain, layers):
    fc = layers.dense(3, 4)
    fc = O.Dense(fc.weight.astype(np.float32), fc.bias.astype(np.float32))
    g = chain((4,), fc, layers.bn(3), names=["fc", "bn"])
    fold_batchnorm(g, None)
    assert op_of(g, "fc").weight.dtype == np.float32 and op_of(g, "fc").bias.dtype == np.float32


def test_original_ops_are_not_mutated(chain, layers):
    g = chain((5,), layers.dense(4, 5), layers.bn(4), names=["fc", "bn"])
    shallow = g.copy()
    w = op_of(g, "fc").weight.copy()
    fold_batchnorm(g, None)
    np.testing.assert_array_equal(op_of(shallow, "fc").weight, w)


def test_no_batchnorm_no_change(chain, layers):
    g = chain((5,), layers.dense(4, 5), O.IF(), layers.dense(2, 4))
    before = {n: op_of(g, n) for n in g}
    assert fold_batchnorm(g, None) is False
    assert set(g) == set(before) and all(op_of(g, n) is before[n] for n in g)
