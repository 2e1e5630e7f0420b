import pytest

from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import ops as O
from snn_compiler.passes.check_snn_form import check_snn_form


def test_valid_chain(chain, layers):
    g = chain((2, 6, 6), layers.conv(3, 2), O.IF(), O.Flatten(), layers.dense(4, 48), O.IF(), layers.dense(2, 4))
    assert check_snn_form(g, None) is False


def test_valid_residual(layers):
    g = new_graph()
    add_op(g, "input", O.Input((2, 4, 4)))
    add_op(g, "conv", layers.conv(2, 2, padding=(1, 1)), ["input"])
    add_op(g, "relu", O.IF(), ["conv"])
    add_op(g, "c1", layers.conv(2, 2, padding=(1, 1)), ["relu"])
    add_op(g, "skip", O.Conv2d(layers.conv(2, 1, k=1).weight, groups=2), ["relu"])
    add_op(g, "skip2", layers.conv(2, 2, k=1), ["input"])
    add_op(g, "add", O.Add(), ["c1", "skip"])
    add_op(g, "add2", O.Add(), ["add", "skip2"])
    add_op(g, "relu2", O.IF(), ["add2"])
    add_op(g, "flat", O.Flatten(), ["relu2"])
    add_op(g, "fc", layers.dense(3, 32), ["flat"])
    add_op(g, "output", O.Output(), ["fc"])
    verify(g)
    assert check_snn_form(g, None) is False


def test_leftover_affine(chain, layers, rng):
    aff = O.Affine(scale=rng.normal(size=3), shift=rng.normal(size=3))
    g = chain((3, 4, 4), layers.conv(3, 3, padding=(1, 1)), O.IF(), aff, layers.conv(3, 3, padding=(1, 1)),
              names=["conv", "relu", "bn1", "conv2"])
    with pytest.raises(ValueError, match=r"BatchNorm bn1 could not be folded into a neighbouring Dense/Conv2d "
                                         r"\(it follows IF relu and feeds Conv2d conv2\)") as e:
        check_snn_form(g, None)
    assert "problems" not in str(e.value)  # only the root cause is reported


def test_leftover_batchnorm_and_avgpool(chain, layers):
    g = chain((3, 4, 4), O.IF(), layers.bn(3), O.AvgPool2d((2, 2), (2, 2)), names=["relu", "bn", "pool"])
    with pytest.raises(ValueError, match="2 problems") as e:
        check_snn_form(g, None)
    assert "BatchNorm bn could not be folded" in str(e.value) and "AvgPool2d pool was not lowered" in str(e.value)


def test_two_dense_in_a_row(chain, layers):
    g = chain((4,), layers.dense(4, 4), layers.dense(2, 4), names=["fc1", "fc2"])
    with pytest.raises(ValueError, match="fc1 feeds fc2 without an activation between them; snnc needs a ReLU "
                                         "between weighted layers"):
        check_snn_form(g, None)


def test_conv_flatten_dense(chain, layers):
    g = chain((2, 3, 3), layers.conv(2, 2, k=1), O.Flatten(), layers.dense(2, 18), names=["conv", "flat", "fc"])
    with pytest.raises(ValueError, match="conv feeds fc without an activation"):
        check_snn_form(g, None)


def test_add_then_weighted_without_relu(layers):
    g = new_graph()
    add_op(g, "input", O.Input((3,)))
    add_op(g, "a", layers.dense(3, 3), ["input"])
    add_op(g, "b", layers.dense(3, 3), ["input"])
    add_op(g, "add", O.Add(), ["a", "b"])
    add_op(g, "fc", layers.dense(2, 3), ["add"])
    add_op(g, "output", O.Output(), ["fc"])
    verify(g)
    with pytest.raises(ValueError, match="add feeds fc without an activation"):
        check_snn_form(g, None)


def test_identity_skip_into_add(layers):
    g = new_graph()
    add_op(g, "input", O.Input((3,)))
    add_op(g, "relu", O.IF(), ["input"])
    add_op(g, "fc", layers.dense(3, 3), ["relu"])
    add_op(g, "add", O.Add(), ["fc", "relu"])
    add_op(g, "output", O.Output(), ["add"])
    verify(g)
    with pytest.raises(ValueError, match="Add add reads IF relu; every input of an Add must be a Dense/Conv2d"):
        check_snn_form(g, None)


def test_neuron_not_fed_by_weighted_op(chain, layers):
    g = chain((3,), O.IF(), layers.dense(3, 3), names=["relu", "fc"])
    with pytest.raises(ValueError, match="IF relu reads Input input directly"):
        check_snn_form(g, None)
    g = chain((3,), layers.dense(3, 3), O.IF(), O.IF(), layers.dense(3, 3), names=["fc", "r1", "r2", "fc2"])
    with pytest.raises(ValueError, match="IF r2 reads IF r1 directly"):
        check_snn_form(g, None)


def test_flatten_not_before_dense(chain, layers):
    g = chain((2, 2, 2), layers.conv(2, 2, k=1), O.IF(), O.Flatten(), names=["conv", "relu", "flat"])
    with pytest.raises(ValueError, match="2 problems") as e:
        check_snn_form(g, None)
    msg = str(e.value)
    assert "Flatten flat feeds Output output; a Flatten must sit between an IF layer (or the Input) and a Dense" in msg
    assert "Output output reads Flatten flat directly" in msg


def test_does_not_change_graph(chain, layers):
    g = chain((4,), layers.dense(4, 4), O.IF(), layers.dense(2, 4))
    edges, ops = set(g.edges(data="port")), {n: g.nodes[n]["op"] for n in g}
    check_snn_form(g, None)
    assert set(g.edges(data="port")) == edges and all(g.nodes[n]["op"] is ops[n] for n in g)


def test_first_four_passes_bring_a_resnet_block_into_snn_form(layers, check_same):
    from snn_compiler.passes.fold_batchnorm import fold_batchnorm
    from snn_compiler.passes.lower_avgpool import lower_avgpool
    from snn_compiler.passes.materialize_skips import materialize_skips

    g = new_graph()
    add_op(g, "input", O.Input((2, 6, 6)))
    add_op(g, "bn0", layers.bn(2), ["input"])
    add_op(g, "conv1", layers.conv(3, 2), ["bn0"])
    add_op(g, "bn1", layers.bn(3), ["conv1"])
    add_op(g, "relu1", O.IF(), ["bn1"])
    add_op(g, "conv2", layers.conv(3, 3, padding=(1, 1)), ["relu1"])
    add_op(g, "bn2", layers.bn(3), ["conv2"])
    add_op(g, "add", O.Add(), ["bn2", "relu1"])
    add_op(g, "relu2", O.IF(), ["add"])
    add_op(g, "pool", O.AvgPool2d((2, 2), (2, 2)), ["relu2"])
    add_op(g, "flat", O.Flatten(), ["pool"])
    add_op(g, "fc", layers.dense(4, 12), ["flat"])
    add_op(g, "output", O.Output(), ["fc"])
    verify(g)
    for p in (fold_batchnorm, materialize_skips):
        assert check_same(p, g)
    assert lower_avgpool(g, None) is False  # IF -> pool -> Flatten -> Dense: a synaptic pool stays
    assert check_snn_form(g, None) is False
    assert {"bn0", "bn1", "bn2"}.isdisjoint(g) and {"pool", "add.skip1"} <= set(g)
