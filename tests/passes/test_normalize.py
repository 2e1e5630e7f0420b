import numpy as np
import pytest

from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import ops as O
from snn_compiler.passes import normalize
from snn_compiler.sim.emulator import run_ann


def mlp(rng):
    g = new_graph()
    add_op(g, "in", O.Input((4,)))
    add_op(g, "fc1", O.Dense(rng.normal(size=(6, 4)), rng.normal(size=6)), ["in"])
    add_op(g, "r1", O.IF(), ["fc1"])
    add_op(g, "fc2", O.Dense(rng.normal(size=(3, 6)), rng.normal(size=3)), ["r1"])
    add_op(g, "out", O.Output(), ["fc2"])
    verify(g)
    return g


def residual(rng):
    g = new_graph()
    add_op(g, "in", O.Input((5,)))
    add_op(g, "fc1", O.Dense(rng.normal(size=(5, 5))), ["in"])
    add_op(g, "r1", O.IF(), ["fc1"])
    add_op(g, "fc2", O.Dense(rng.normal(size=(5, 5)), rng.normal(size=5)), ["r1"])
    add_op(g, "skip", O.Dense(np.eye(5)), ["r1"])
    add_op(g, "add", O.Add(), ["fc2", "skip"])
    add_op(g, "r2", O.IF(), ["add"])
    add_op(g, "fc3", O.Dense(rng.normal(size=(2, 5))), ["r2"])
    add_op(g, "out", O.Output(), ["fc3"])
    verify(g)
    return g


@pytest.mark.parametrize("build", [mlp, residual])
@pytest.mark.parametrize("norm", ["max", "percentile:99", "scale:0.5"])
def test_ann_reading_is_unchanged_and_scales_match_statistic(build, norm):
    rng = np.random.default_rng(1)
    g = build(rng)
    x = rng.random((300,) + g.nodes["in"]["op"].shape)
    before = run_ann(g, x)
    from snn_compiler.sim.emulator import iter_ann
    (acts,) = iter_ann(g, x, keep=["r1"], batch_size=len(x))
    assert normalize(g, CompileConfig(norm=norm, calibration=x)) is True
    verify(g)
    np.testing.assert_allclose(run_ann(g, x), before, atol=1e-10)  # output rescaled by Output.scale
    r1 = acts["r1"].ravel()
    expect = {"max": r1.max(), "percentile:99": np.percentile(r1, 99), "scale:0.5": 0.5 * r1.max()}[norm]
    assert g.nodes["r1"]["op"].scale == pytest.approx(expect, rel=1e-5)
    assert g.nodes["in"]["op"].scale == pytest.approx(np.abs(x).max())


def test_residual_branches_share_the_target_scale():
    rng = np.random.default_rng(2)
    g = residual(rng)
    w2, ws = g.nodes["fc2"]["op"].weight.copy(), g.nodes["skip"]["op"].weight.copy()
    normalize(g, CompileConfig(norm="max", calibration=rng.random((100, 5))))
    lam1, lam2 = g.nodes["r1"]["op"].scale, g.nodes["r2"]["op"].scale
    np.testing.assert_allclose(g.nodes["fc2"]["op"].weight, w2 * lam1 / lam2)
    np.testing.assert_allclose(g.nodes["skip"]["op"].weight, ws * lam1 / lam2)


def test_manual_layer_scales_need_no_calibration_for_those_layers():
    g = mlp(np.random.default_rng(3))
    g.nodes["in"]["op"].scale = 1.0
    normalize(g, CompileConfig(layer_scales={"r1": 2.0, "out": 4.0}))
    assert g.nodes["r1"]["op"].scale == 2.0 and g.nodes["out"]["op"].scale == 4.0


def test_errors_name_what_is_missing():
    g = mlp(np.random.default_rng(3))
    with pytest.raises(ValueError, match="calibration"):  # a data-based norm asked for by name needs data
        normalize(g, CompileConfig(norm="max"))
    with pytest.raises(ValueError, match="nope"):
        normalize(mlp(np.random.default_rng(3)), CompileConfig(layer_scales={"nope": 1.0}, calibration=np.ones((2, 4))))


def test_second_run_changes_nothing():
    g = mlp(np.random.default_rng(4))
    cfg = CompileConfig(calibration=np.random.default_rng(4).random((50, 4)))
    assert normalize(g, cfg) and not normalize(g, cfg)


@pytest.mark.parametrize("norm", ["scale:1e-300", "scale:inf", "scale:nan", "scale:0", "scale:1e7", "percentile:nan"])
def test_out_of_range_norm_is_refused(norm):
    with pytest.raises(ValueError, match="--norm must be"):
        CompileConfig(norm=norm)


@pytest.mark.parametrize("value", [1e-300, 0.0, -1.0, float("inf"), float("nan"), 1e31])
def test_out_of_range_layer_scale_is_refused_naming_the_layer(value):
    with pytest.raises(ValueError, match="--layer-scale r1="):
        CompileConfig(layer_scales={"r1": value})


def test_scales_that_overflow_the_weights_are_refused_naming_the_layer():
    rng = np.random.default_rng(2)
    g = mlp(rng)
    config = CompileConfig(calibration=rng.random((50, 4)))
    config.layer_scales = {"r1": 1e-310}  # past the CLI's range check: normalize must not make inf weights
    with pytest.raises(ValueError, match="layer 'r1': activation scale .* makes the weights of 'fc1' overflow"):
        normalize(g, config)



def test_signed_input_needs_two_bits():
    rng = np.random.default_rng(4)
    g = mlp(rng)
    with pytest.raises(ValueError, match="--input-bits 1 cannot hold signed input"):
        normalize(g, CompileConfig(calibration=rng.normal(size=(50, 4)), input_bits=1))
