"""Structurally sparse Dense connections (mapping/network.py: at most SPARSE_DENSE of the weights
nonzero, e.g. a pool or an identity composed into a read-out) are mapped as their nonzero pairs: the
partitioner, the lower bound and the independent checker count the same synapses, so a read-out whose
every target reads a few of thousands of sources (SqueezeNet's) maps where counted dense it could not.
Depthwise layers are cut into channel-major runs where their sparse fan-in makes those cheaper."""
import numpy as np
import pytest

from snn_compiler.mapping import MappingError, lower_bound, partition_graph
from snn_compiler.mapping import synthetic as S
from snn_compiler.mapping.bounds import _fanouts, _fanouts_enumerated, _offsets
from snn_compiler.mapping.network import SPARSE_DENSE, build_net

from mapping_helpers import assert_map_ok, small_profile


def _with_first_dense(weights):
    """S.build's 300-input MLP with the first Dense's weights replaced (float and integer alike)."""
    g = S.build((300,), [("dense", 100), ("dense", 5)], seed=0)
    first = next(n for n in g if type(g.nodes[n]["op"]).__name__ == "Dense")
    op = g.nodes[first]["op"]
    op.weight, op.weight_int = weights.astype(float), weights.astype(np.int32)
    return g


def _blocks(rng, per_target=3):
    """Target i reads sources 3i .. 3i + 2: a pool of 3 composed into an identity (1% nonzero)."""
    w = np.zeros((100, 300), np.int64)
    for i in range(100):
        w[i, per_target * i:per_target * (i + 1)] = rng.integers(1, 100, per_target)
    return w


def test_a_sparse_dense_maps_by_its_nonzero_synapses():
    rng = np.random.default_rng(0)
    prof = small_profile(neurons=64, input_axons=256, synapse_bits=1 << 20)
    with pytest.raises(MappingError, match="input_axons"):  # counted dense: 300 axons per core, limit 256
        partition_graph(_with_first_dense(rng.integers(1, 100, (100, 300))), prof, 8)
    g = _with_first_dense(_blocks(rng))
    cm = partition_graph(g, prof, 8)
    chk = assert_map_ok(g, cm, prof)  # the checker's recount equals the partitioner's, every core fits
    first = [row for row in chk["cores"] if row["layer"] == "if2"]
    assert sum(row["input_axons"] for row in first) == 300  # each source read by the one core of its target
    assert len(cm["cores"]) >= lower_bound(g, prof, 8)


def test_the_bounds_closed_form_counts_the_sparse_synapses_as_enumerated():
    g = _with_first_dense(_blocks(np.random.default_rng(1)))
    net = build_net(g)
    offsets = _offsets(net)
    for name in net.layers:
        np.testing.assert_array_equal(np.sort(_fanouts(net, name, offsets)),
                                      np.sort(_fanouts_enumerated(net, name, offsets)))
    assert net.conns["if2"][0].pattern is not None


def test_a_dense_layer_with_a_few_zero_weights_stays_all_to_all():
    rng = np.random.default_rng(2)
    w = rng.integers(1, 100, (100, 300))
    w[rng.random(w.shape) < SPARSE_DENSE / 2] = 0  # zeros, but most weights nonzero: structurally dense
    g = _with_first_dense(w)
    assert build_net(g).conns["if2"][0].pattern is None
    prof = small_profile(neurons=64, input_axons=512, synapse_bits=1 << 20)
    cm = partition_graph(g, prof, 8)
    chk = assert_map_ok(g, cm, prof)
    assert all(row["input_axons"] == 300 for row in chk["cores"] if row["layer"] == "if2")


def test_a_depthwise_layer_is_cut_into_channel_major_runs():
    """A 3x3 depthwise layer: in the C, H, W order a source's 9 targets form 3 runs of 3 (one word each
    here), in a pixel-major order 9 runs of 1, so the channel-major cut needs a third of the memory."""
    g = S.build((16, 32, 32), [("conv", 16, 1, 1, 0), ("dwconv", 3, 1, 1), ("conv", 1, 1, 1, 0), ("flatten",),
                               ("dense", 4)], seed=3)
    prof = small_profile(neurons=4096, input_axons=4096, output_axons=8192, synapse_bits=1 << 17, cores=256)
    cm = partition_graph(g, prof, 8)
    assert_map_ok(g, cm, prof)
    dw = [n for n in cm["layers"] if cm["tilings"].get(n) == "channel-major runs"]
    assert dw == ["if4"]
    per_core = [c["synapse_bits"] for c in cm["cores"] if c["layer"] == "if4"]
    assert max(per_core) <= 1 << 17 and len(per_core) <= -(-16 * 32 * 32 * 3 * 64 // (1 << 17)) + 1
