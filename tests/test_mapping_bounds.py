"""The lower bound's output-axon demand (mapping/bounds.py): a neuron whose targets sit in a conv layer
reaches at least ceil(targets / m) cores, m the most of that layer's neurons one core can hold, which
the synapse memory caps at memory / (smallest fan-in x lowest bits per synapse). The smallest fan-in
is checked against enumerated synapses, and every partitioner map stays at or above the bound."""
import numpy as np

from snn_compiler.mapping import check_core_map, lower_bound, partition_graph
from snn_compiler.mapping import synthetic as S
from snn_compiler.mapping.bounds import layer_bounds, target_fan_in
from snn_compiler.mapping.network import best_bits_per_synapse, build_net, gather_sources
from snn_compiler.mapping.profile import load_profile

from mapping_helpers import small_profile


def _enumerated_fan_in(net, name):
    n = net.size(name)
    counts = np.zeros(n, np.int64)
    for conn in net.conns[name]:
        _, pos = gather_sources(conn, np.arange(n))
        counts += np.bincount(pos, minlength=n)
    return int(counts.min())


def test_smallest_target_fan_in_is_the_enumerated_minimum():
    g = S.build((3, 9, 9), [("conv", 8, 3, 1, 1), ("conv", 6, 3, 2, 1), ("conv", 5, 2, 1, 0), ("flatten",),
                            ("dense", 7)], seed=0)
    net = build_net(g)
    for name in net.layers:
        assert int(np.min(target_fan_in(net, name))) == _enumerated_fan_in(net, name), name


def test_a_big_fan_in_conv_caps_how_many_targets_a_core_holds():
    """32 channels into a 3x3 conv of 64 channels: each corner target stores 32 x 4 synapses, so a core of
    65,536 bits holds at most 65536 / (128 x bits per synapse) of them, and a source's 64 x 9 targets reach
    at least 576 / that many cores, however the consumer is tiled."""
    g = S.build((8, 6, 6), [("conv", 32, 1, 1, 0), ("conv", 64, 3, 1, 1), ("conv", 1, 1, 1, 0), ("flatten",),
                            ("dense", 4)], seed=1)
    prof = small_profile(neurons=256, input_axons=4096, output_axons=4096, synapse_bits=65536, cores=512)
    net = build_net(g)
    first, conv = net.layers[0], net.layers[1]
    density = best_bits_per_synapse(load_profile(prof).encoding, 8)
    cap = min(256, int(65536 // (density * int(np.min(target_fan_in(net, conv))))))
    assert cap < 100  # the memory, not the neuron limit, caps it
    bounds = layer_bounds(net, prof, 8)
    targets = 64 * 9  # an inner source pixel's targets in the 3x3 conv
    assert bounds[first]["demand"]["output_axons"] >= 4 * 4 * 32 * -(-targets // cap)  # the inner 4 x 4 pixels
    cm = partition_graph(g, prof, 8)
    assert check_core_map(g, cm, prof)["ok"]
    assert len(cm["cores"]) >= lower_bound(g, prof, 8)


def test_a_dense_layers_bound_counts_whole_runs_per_core():
    """A core holding n targets of an all-to-all Dense stores one run of n synapses per source: at a run
    length that is no good group size the memory per synapse exceeds the best group's, and the bound
    counts it (3,000 hidden neurons on Loihi 1: 20 cores for the hidden layer, where the best group's bits
    per synapse gave 19; 21 in all, what the partitioner maps)."""
    from snn_compiler.mapping import load_profile_dict
    g = S.wide_mlp(hidden=3000)
    spec = load_profile_dict("loihi1")
    assert lower_bound(g, spec, 8) == 21 == len(partition_graph(g, spec, 8)["cores"])


def test_each_sources_smallest_target_fan_in_is_the_enumerated_one():
    """bounds._source_fan_in (per source neuron, the fewest synapses among the targets it reaches) equals
    the enumeration, for strided, padded and sparse-Dense connections alike."""
    from snn_compiler.mapping.bounds import NO_TARGET, _source_fan_in, target_fan_in
    g = S.build((3, 9, 9), [("conv", 8, 3, 1, 1), ("conv", 6, 3, 2, 1), ("conv", 5, 2, 1, 0), ("flatten",),
                            ("dense", 7)], seed=4)
    net = build_net(g)
    for name in net.layers:
        n = net.size(name)
        per_target = np.zeros(n, np.int64)
        for conn in net.conns[name]:
            per_target += np.bincount(gather_sources(conn, np.arange(n))[1], minlength=n)
        for conn in net.conns[name]:
            if type(conn.op).__name__ == "Dense":
                continue  # all-to-all: every source reaches every target (counted as every core instead)
            src, pos = gather_sources(conn, np.arange(n))
            want = np.full(conn.src_shape if len(conn.src_shape) == 1 else int(np.prod(conn.src_shape)), NO_TARGET)
            np.minimum.at(want, src, per_target[pos])
            np.testing.assert_array_equal(_source_fan_in(conn, target_fan_in(net, name)), want)
