"""Hardware mapping at real sizes: closed-form tile costs, chip placement and traffic."""
import pytest

from snn_compiler.mapping import load_profile, load_profile_dict, partition_graph
from snn_compiler.mapping import synthetic as S
from snn_compiler.mapping.network import build_net, slice_neurons

from mapping_helpers import assert_map_ok, small_profile

from snn_compiler.mapping.checker import _pairs
from snn_compiler.mapping.partitioner import _Layer
from snn_compiler.mapping.placement import _cut_chips, place
from snn_compiler.mapping.tiles import ConvTiles, applies, slice_spans


def test_pixel_major_runs_slice():
    # positions 2..6 of a 3-channel 2x2 map in pixel-major order: pixel 0 channel 2, pixel 1, pixel 2 channel 0
    assert slice_neurons((3, 2, 2), {"q": [2, 7]}).tolist() == [8, 1, 5, 9, 2]
    pix, lo, hi = slice_spans((3, 2, 2), {"q": [2, 7]})
    assert pix.tolist() == [0, 1, 2] and lo.tolist() == [2, 0, 0] and hi.tolist() == [3, 3, 1]


@pytest.mark.parametrize("spec", [
    [("conv", 6, 3, 1, 1), ("res",), ("conv", 5, 3, 2, 1), ("pool", 2), ("flatten",), ("dense", 4)],
    [("conv", 7, 3, 2, 0), ("pool", 2), ("flatten",), ("dense", 3)]])
def test_closed_form_tiles_equal_enumeration(spec):
    """Tile costs without enumerating synapses (runs merged across pixels, grouped and depthwise
    convs, partial first and last pixels) equal the enumeration, gids included."""
    import numpy as np
    g = S.build((3, 9, 9), spec, seed=2)
    net, prof = build_net(g), load_profile("loihi1")
    offsets, off = {}, 0
    for n in [net.input] + net.layers:
        offsets[n], off = off, off + net.size(n)
    dest = {n: np.zeros(net.size(n), np.int64) for n in net.layers}
    rng = np.random.default_rng(0)
    for name in [n for n in net.layers if applies(net, n)]:
        layer = _Layer(net, name, offsets, prof, 8, dest)
        tiles = ConvTiles(net, name, offsets, prof.encoding, 8, offsets[net.layers[0]])
        c, h, w = layer.shape
        for _ in range(60):
            a = int(rng.integers(0, c * h * w))
            c0 = int(rng.integers(0, c))
            r0, q0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            slc = [{"q": [a, int(rng.integers(a + 1, c * h * w + 1))]},
                   {"c": [c0, int(rng.integers(c0 + 1, c + 1))], "h": [r0, int(rng.integers(r0 + 1, h + 1))],
                    "w": [q0, int(rng.integers(q0 + 1, w + 1))], "order": str(rng.choice(["whc", "hwc"]))}][_ % 2]
            ref, ref_gids = layer.evaluate(slice_neurons(layer.shape, slc))
            spans = slice_spans(layer.shape, slc)
            n, axons, bits, _links = tiles.use(*spans)
            assert (n, axons, bits) == (ref["neurons"], ref["input_axons"], ref["synapse_bits"]), slc
            assert tiles.gids(*spans).tolist() == ref_gids.tolist()


def _links_by_enumeration(g, cm):
    """(links, inter-chip links) recounted from the graph: distinct (source neuron, destination core)
    pairs over every synapse whose source is a neuron layer."""
    import numpy as np
    net = build_net(g)
    owner = {n: np.full(net.size(n), -1) for n in net.layers}
    for c in cm["cores"]:
        owner[c["layer"]][slice_neurons(net.shapes[c["layer"]], c["slice"])] = c["id"]
    pairs = set()
    for name in net.layers:
        for conn in net.conns[name]:
            if conn.src in owner:
                s, d = _pairs(conn)
                pairs |= set(zip([conn.src] * len(s), s.tolist(), owner[name][d].tolist()))
    per_chip = cm["cores_per_chip"]
    cross = sum(owner[src][s] // per_chip != core // per_chip for src, s, core in pairs)
    return len(pairs), int(cross)


def test_traffic_counts_links_and_chip_crossings():
    g = S.build((2, 12, 12), [("conv", 8, 3, 1, 1), ("res",), ("pool", 2), ("flatten",), ("dense", 10)], seed=4)
    prof = small_profile(neurons=96, input_axons=400, output_axons=600, synapse_bits=3000 * 64, cores=8, chips=6)
    cm = partition_graph(g, prof, 8)
    assert_map_ok(g, cm, prof)
    t = cm["traffic"]
    assert len(cm["cores"]) > 8 and t["chips_used"] > 1
    assert (t["links"], t["inter_chip_links"]) == _links_by_enumeration(g, cm)
    assert t["inter_chip_links"] <= t["inter_chip_links_layer_order"]
    assert sum(t["cores_per_chip_used"]) == len(cm["cores"]) and max(t["cores_per_chip_used"]) <= 8


def test_a_network_that_fits_one_chip_stays_on_one():
    g = S.build((3, 16, 16), [("conv", 8, 3, 1, 1), ("res",), ("pool", 2), ("flatten",), ("dense", 10)], seed=3)
    cm = partition_graph(g, dict(load_profile_dict("loihi1"), chips=4), 8)
    assert cm["traffic"]["chips_used"] == 1 and cm["traffic"]["inter_chip_links"] == 0
    assert {c["chip"] for c in cm["cores"]} == {0}


def test_chip_cut_never_splits_a_layer_that_fits():
    import numpy as np
    units = np.repeat([0, 1, 2, 3], [100, 60, 128, 30])
    chip = _cut_chips(np.arange(len(units)), units, 128, 4)
    for u in range(4):
        assert len(set(chip[units == u].tolist())) == 1, u          # every layer on one chip
    assert chip.max() <= 3
    # 66 spare cores on 3 chips: layer 1 still moves (28 cores left empty), layer 2 then cannot
    # (68 would be) and straddles rather than overflow
    chip = _cut_chips(np.arange(len(units)), units, 128, 3)
    assert chip.max() == 2 and len(set(chip[units == 1].tolist())) == 1 and len(set(chip[units == 2].tolist())) == 2


def test_placement_keeps_linked_cores_on_a_chip():
    """Two chains of 4 cores each, linked only inside each chain: a chip per chain, nothing crosses
    (layer order interleaves them: every link would cross)."""
    edges = {(i, i + 2): 10 for i in range(6)}        # cores 0,2,4,6 and 1,3,5,7
    ids, stats = place(edges, ["a", "a", "b", "b", "c", "c", "d", "d"], 4, 3)
    assert stats["inter_chip_links"] == 0 and stats["inter_chip_links_layer_order"] > 0
    assert len(set(ids.tolist())) == 8 and stats["chips_used"] == 2


def test_deep_conv_layers_map_within_1_1x_of_the_bound():
    """Layers whose cores each hold part of one pixel's channels (512-channel ResNet stages) are
    cut along the pixel-major order, so cores fill up whatever a pixel's size."""
    g = S.build((256, 4, 4), [("conv", 256, 3, 1, 1), ("res",), ("flatten",), ("dense", 10)], seed=5)
    prof = dict(load_profile_dict("loihi2"), chips=4)
    cm = partition_graph(g, prof, 8)
    assert_map_ok(g, cm, prof)
    assert len(cm["cores"]) <= 1.1 * cm["lower_bound"] and cm["lower_bound"] >= 100
