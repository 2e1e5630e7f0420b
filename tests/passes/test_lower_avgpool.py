import numpy as np
import pytest

from snn_compiler.ir import add_op, inputs_of, new_graph, op_of, verify
from snn_compiler.ir import ops as O
from snn_compiler.passes.lower_avgpool import lower_avgpool


@pytest.mark.parametrize("k,s,p", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 2), (0, 1)),
                                   ((3, 3), (1, 1), (1, 1))])
def test_pool_becomes_depthwise_conv_and_if(chain, layers, check_same, k, s, p):
    g = chain((2, 7, 8), layers.conv(3, 2, padding=(1, 1)), O.IF(), O.AvgPool2d(k, s, p), O.Flatten(),
              names=["conv", "relu", "pool", "flat"])
    shape = g.nodes["pool"]["shape"]
    assert check_same(lower_avgpool, g)
    conv = op_of(g, "pool")
    assert isinstance(conv, O.Conv2d) and conv.groups == 3 and conv.bias is None
    assert conv.weight.shape == (3, 1) + k and np.allclose(conv.weight, 1 / (k[0] * k[1]))
    assert conv.stride == s and conv.padding == p
    assert inputs_of(g, "pool.if") == ["pool"] and inputs_of(g, "flat") == ["pool.if"]
    assert O.is_hidden_neuron(op_of(g, "pool.if"))
    assert g.nodes["pool"]["shape"] == g.nodes["pool.if"]["shape"] == shape


def test_matches_avg_pool_on_nonnegative_input(chain, check_same):
    g = chain((3, 6, 6), O.IF(), O.AvgPool2d((3, 3), (2, 2), (1, 1)), names=["relu", "pool"])
    assert check_same(lower_avgpool, g, nonneg=True)


def test_pool_after_pool(chain, check_same):
    g = chain((2, 8, 8), O.IF(), O.AvgPool2d((2, 2), (2, 2)), O.AvgPool2d((2, 2), (2, 2)),
              names=["relu", "p1", "p2"])
    assert check_same(lower_avgpool, g)
    assert inputs_of(g, "p2") == ["p1.if"] and inputs_of(g, "output") == ["p2.if"]


def test_if_name_is_made_unique(layers, check_same):
    g = new_graph()
    add_op(g, "input", O.Input((2, 4, 4)))
    add_op(g, "pool.if", O.IF(), ["input"])  # an unfortunate existing name
    add_op(g, "pool", O.AvgPool2d((2, 2), (2, 2)), ["pool.if"])
    add_op(g, "output", O.Output(), ["pool"])
    verify(g)
    assert check_same(lower_avgpool, g)
    assert inputs_of(g, "output") == ["pool.if_1"]


def test_pool_of_the_input_is_an_error(chain, layers):
    g = chain((2, 4, 4), O.AvgPool2d((2, 2), (2, 2)), names=["pool"])
    with pytest.raises(ValueError, match="AvgPool2d pool follows Input input, not a ReLU: snnc pools spikes; "
                                         "put the pool after the activation"):
        lower_avgpool(g, None)


def test_pool_of_a_linear_value_becomes_its_depthwise_conv_alone(chain, layers, check_same):
    """After a conv with no activation (a linear bottleneck) the pool stays linear: no IF, which would
    clip negative values; compose_linear folds it into the Dense that reads it."""
    g = chain((2, 4, 4), layers.conv(2, 2, padding=(1, 1)), O.AvgPool2d((2, 2), (2, 2)), names=["conv", "pool"])
    assert check_same(lower_avgpool, g)
    assert isinstance(g.nodes["pool"]["op"], O.Conv2d) and inputs_of(g, "output") == ["pool"]


def test_no_pool_no_change(chain, layers):
    g = chain((2, 4, 4), layers.conv(2, 2), O.IF())
    nodes = set(g)
    assert lower_avgpool(g, None) is False and set(g) == nodes


def test_synaptic_pools_stay_and_others_spike():
    from snn_compiler.ir import add_op, new_graph, verify
    rng = np.random.default_rng(0)

    def net(pool, h):
        g = new_graph()
        add_op(g, "in", O.Input((2, h, h)))
        add_op(g, "c", O.Conv2d(rng.normal(size=(3, 2, 1, 1))), ["in"])
        add_op(g, "r", O.IF(), ["c"])
        add_op(g, "p", pool, ["r"])
        add_op(g, "f", O.Flatten(), ["p"])
        n = int(np.prod(O.infer_shape(pool, [(3, h, h)])))
        add_op(g, "d", O.Dense(rng.normal(size=(2, n))), ["f"])
        add_op(g, "out", O.Output(), ["d"])
        verify(g)
        return g

    g = net(O.AvgPool2d((2, 2), (2, 2)), 6)  # non-overlapping, divides 6: summed inside the connection
    assert lower_avgpool(g, None) is False and isinstance(g.nodes["p"]["op"], O.AvgPool2d)
    from snn_compiler.config import CompileConfig
    assert lower_avgpool(g, CompileConfig(pool="spike")) is True and "p.if" in g  # asked for a spiking pool
    for pool, h in [(O.AvgPool2d((2, 2), (2, 2)), 5),      # 5 rows: the pool drops one
                    (O.AvgPool2d((3, 3), (1, 1)), 6),      # overlapping windows
                    (O.AvgPool2d((2, 2), (2, 2), (1, 1)), 6)]:  # padding
        g = net(pool, h)
        assert lower_avgpool(g, None) is True and "p.if" in g
