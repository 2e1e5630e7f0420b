"""TrueNorth-style corelet export: structure, refusals, and spikes equal to the reference simulator's."""
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snn_compiler.backends.truenorth import (HELP, TARGET, TrueNorthError, check_corelet, export_corelet,
                                             run_corelet, corelet_bytes, corelet_path)
from snn_compiler.config import CompileConfig
from snn_compiler.ir import op_of
from snn_compiler.mapping import synthetic as S
from snn_compiler.sim.emulator import simulate
from snn_compiler.sim.encode import input_steps


def assert_matches_reference(g, x, timesteps, encoding="constant", seed=0):
    corelet = export_corelet(g)
    assert check_corelet(corelet) == []
    ref = simulate(g, x, mode="int", timesteps=timesteps, encoding=encoding, seed=seed, readout="count", record=True)
    inp = op_of(g, "input")
    steps = list(input_steps(inp, x, timesteps, encoding, seed))
    assert all(np.isin(s, [0, inp.levels]).all() for s in steps), "input must be spikes of 0 or levels"
    res = run_corelet(corelet, np.stack([s != 0 for s in steps]))
    np.testing.assert_array_equal(res["output"], ref.counts["output"].reshape(len(x), -1))
    for layer, counts in res["layers"].items():
        np.testing.assert_array_equal(counts, ref.counts[layer].reshape(len(x), -1), err_msg=layer)
    assert ref.counts["output"].sum() > 0     # the comparison is not vacuous
    return corelet


def binary(rng, shape, n=8):
    return rng.integers(0, 2, (n,) + shape).astype(float)


def test_mlp_with_four_weight_values_maps_exactly():
    g = S.build((20,), [("dense", 24), ("dense", 6)], bits=2, seed=1, threshold=3, input_bits=1)
    corelet = assert_matches_reference(g, binary(np.random.default_rng(0), (20,), 16), 20)
    assert set(corelet["weight_modes"].values()) == {"values"}
    assert any(c["role"] == "copy" for c in corelet["cores"])    # fan-out through copy neurons


def test_four_bit_weights_use_bit_planes_with_poisson_input_and_reset_zero():
    g = S.build((30,), [("dense", 40), ("dense", 5)], bits=4, seed=2, threshold=20, input_bits=8, reset="zero")
    corelet = assert_matches_reference(g, np.random.default_rng(1).random((8, 30)), 25, encoding="poisson", seed=3)
    assert corelet["weight_modes"]["if2"] == "bit-planes"
    assert corelet["input"]["levels"] == 255


def test_conv_pool_and_residual_map_exactly():
    rng = np.random.default_rng(2)
    g = S.build((2, 8, 8), [("conv", 4, 3, 1, 1), ("pool", 2), ("flatten",), ("dense", 5)], bits=3, seed=3,
                threshold=10, input_bits=1)
    assert_matches_reference(g, binary(rng, (2, 8, 8)), 20)
    g = S.build((2, 6, 6), [("conv", 3, 3, 1, 1), ("res",), ("flatten",), ("dense", 4)], bits=3, seed=4,
                threshold=8, input_bits=1)
    assert_matches_reference(g, binary(rng, (2, 6, 6)), 20)


def test_core_model_limits_hold_and_every_neuron_has_one_target():
    g = S.build((3, 12, 12), [("conv", 8, 3, 1, 1), ("pool", 4), ("flatten",), ("dense", 10)], bits=2, seed=5,
                input_bits=1)
    corelet = export_corelet(g)
    assert check_corelet(corelet) == []
    for c in corelet["cores"]:
        assert c["axons"] <= 256 and len(c["neurons"]) <= 256 and len(c["axon_types"]) == c["axons"]
        assert set(c["axon_types"]) <= {0, 1, 2, 3}
        for row in c["crossbar"]:
            assert len(set(row)) == len(row)
        for n in c["neurons"]:
            assert len(n["weights"]) == 4 and {"threshold", "leak", "reset", "v_init", "target"} <= set(n)
    assert len(corelet["layers"]["if2"]) >= 5        # 1152 neurons need at least 5 cores of 256
    outs = [n["target"]["output"] for c in corelet["cores"] for n in c["neurons"] if n["target"] and "output" in n["target"]]
    assert sorted(outs) == list(range(10))


def test_refusals_name_the_layer():
    with pytest.raises(TrueNorthError, match=r"layer 'if2': neuron 0 needs \d+ axons.*> 256.*partial-sum"):
        export_corelet(S.build((600,), [("dense", 10), ("dense", 2)], bits=2, input_bits=1))
    with pytest.raises(TrueNorthError, match=r"layer 'if2'.*distinct values.*--bits 4"):
        export_corelet(S.build((10,), [("dense", 10), ("dense", 2)], bits=8, input_bits=1))
    g = S.build((10,), [("dense", 4), ("dense", 2)], bits=2, input_bits=1)
    op_of(g, "input").signed = True
    with pytest.raises(TrueNorthError, match="signed"):
        export_corelet(g)


def test_target_check_raises_target_error():
    from snn_compiler.backends import TargetError
    cfg = TARGET.prepare(CompileConfig(bits=8))
    assert cfg.profile["name"] == "truenorth" and cfg.registers.membrane_bits == 20
    with pytest.raises(TargetError, match="layer 'if2'"):
        TARGET.check(S.build((10,), [("dense", 10), ("dense", 2)], bits=8, input_bits=1), cfg)
    TARGET.check(S.build((10,), [("dense", 10), ("dense", 2)], bits=2, input_bits=1), cfg)
    assert "copy neurons" in HELP and "refused" in HELP


def test_the_corelet_is_named_after_the_artifact(tmp_path):
    g = S.build((8,), [("dense", 6), ("dense", 3)], bits=2, input_bits=1)
    assert corelet_path(tmp_path / "net.snnc") == str(tmp_path / "net.corelet.json")
    assert corelet_path(str(tmp_path / "x.json")) == str(tmp_path / "x.json")
    data = json.loads(corelet_bytes(g, None))
    assert data["format"] == "snnc-corelet" and "cores" in data
    assert TARGET.extra_outputs(g, None, str(tmp_path / "y.snnc")) == {str(tmp_path / "y.corelet.json"):
                                                                        corelet_bytes(g, None)}
    assert os.listdir(tmp_path) == []   # nothing is written until the command commits


@settings(max_examples=15, deadline=None)
@given(n_in=st.integers(2, 40), hidden=st.integers(1, 30), n_out=st.integers(1, 6), bits=st.integers(2, 4),
       th=st.integers(1, 30), reset=st.sampled_from(["subtract", "zero"]), seed=st.integers(0, 1000))
def test_generated_mlps_match_the_reference(n_in, hidden, n_out, bits, th, reset, seed):
    g = S.build((n_in,), [("dense", hidden), ("dense", n_out)], bits=bits, seed=seed, threshold=th, input_bits=1,
                reset=reset)
    x = binary(np.random.default_rng(seed), (n_in,), 4)
    corelet = export_corelet(g)
    assert check_corelet(corelet) == []
    ref = simulate(g, x, mode="int", timesteps=12, encoding="constant", readout="count", record=True)
    res = run_corelet(corelet, np.broadcast_to(x.astype(bool), (12,) + x.shape))
    for layer, counts in res["layers"].items():
        np.testing.assert_array_equal(counts, ref.counts[layer].reshape(len(x), -1), err_msg=layer)


def test_compile_pipeline_for_truenorth_then_corelet_matches():
    """A float graph through compile_model with the truenorth target (no torch), then the corelet."""
    from snn_compiler.compile import compile_model
    from snn_compiler.ir import add_op, new_graph, verify
    from snn_compiler.ir import ops as O
    rng = np.random.default_rng(0)
    g = new_graph()
    add_op(g, "in", O.Input((16,)))
    add_op(g, "fc1", O.Dense(rng.normal(size=(20, 16)) * 0.5, rng.normal(size=20) * 0.1), ["in"])
    add_op(g, "r1", O.IF(), ["fc1"])
    add_op(g, "fc2", O.Dense(rng.normal(size=(4, 20)) * 0.5), ["r1"])
    add_op(g, "out", O.Output(), ["fc2"])
    verify(g)
    x = rng.integers(0, 2, (32, 16)).astype(float)
    q = compile_model(g, CompileConfig(bits=3, input_bits=1, calibration=x, target="truenorth"), target=TARGET)
    assert q.graph["snnc"]["corelet"]["cores"] >= 2
    corelet = export_corelet(q)
    ref = simulate(q, x, mode="int", timesteps=20, readout="count", record=True)
    res = run_corelet(corelet, np.broadcast_to(x.astype(bool), (20,) + x.shape))
    np.testing.assert_array_equal(res["output"], ref.counts["out"])
    np.testing.assert_array_equal(res["layers"]["r1"], ref.counts["r1"])
    assert ref.counts["out"].sum() > 0


@st.composite
def conv_nets(draw):
    c, h = draw(st.integers(1, 2)), draw(st.integers(4, 7))
    spec, size = [], h
    for _ in range(draw(st.integers(1, 2))):
        spec.append(draw(st.sampled_from([("conv", 3, 3, 1, 1), ("conv", 2, 3, 2, 1), ("conv", 4, 1, 1, 0), ("res",)])))
        if spec[-1][0] == "conv":
            size = (size + 2 * spec[-1][4] - spec[-1][2]) // spec[-1][3] + 1
    if size >= 2 and draw(st.booleans()):  # a 2x2 pool needs a map of at least 2x2
        spec.append(("pool", 2))
    return (c, h, h), spec + [("flatten",), ("dense", draw(st.integers(1, 5)))]


@settings(max_examples=12, deadline=None)
@given(net=conv_nets(), bits=st.integers(2, 4), th=st.integers(2, 12), seed=st.integers(0, 1000))
def test_generated_conv_nets_match_the_reference(net, bits, th, seed):
    shape, spec = net
    g = S.build(shape, spec, bits=bits, seed=seed, threshold=th, input_bits=1)
    try:
        corelet = export_corelet(g)
    except TrueNorthError as e:       # only fan-in may be refused at <= 4 bits
        assert "axons" in str(e) and "layer '" in str(e)
        return
    assert check_corelet(corelet) == []
    x = binary(np.random.default_rng(seed), shape, 3)
    ref = simulate(g, x, mode="int", timesteps=10, encoding="constant", readout="count", record=True)
    res = run_corelet(corelet, np.broadcast_to(x.astype(bool), (10,) + x.shape))
    for layer, counts in res["layers"].items():
        np.testing.assert_array_equal(counts, ref.counts[layer].reshape(len(x), -1), err_msg=layer)


@pytest.mark.parametrize("decay", ["decay_u", "decay_v"])
def test_a_layer_with_any_decay_is_refused_leaky_or_not(decay):
    """An IF layer (no beta) whose current decays (decay_u < 4096) or whose membrane decays runs
    differently from a TrueNorth neuron: compile and export both refuse it, naming the layer."""
    from snn_compiler.backends import TargetError
    from snn_compiler.targets import check_supported
    g = S.build((10,), [("dense", 4), ("dense", 2)], bits=2, input_bits=1)
    op = op_of(g, "if2")
    assert not op.leaky
    if decay == "decay_u":
        op.decay_u = 41
    else:
        op.decay_v = np.array([100])
    with pytest.raises(TargetError, match="layer 'if2'.*(decay_u is 41|decay)"):
        check_supported(g, TARGET)
    with pytest.raises(TrueNorthError, match="layer 'if2'.*use --target reference or lava"):
        export_corelet(g)
