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


# ---- data-free normalisation (--norm model: passes/datafree.py; --norm bound: Diehl et al.) ----------

import math  # noqa: E402
import warnings  # noqa: E402

from snn_compiler.passes import datafree, fold_batchnorm  # noqa: E402


def _mixture_samples(m, s, n, rng):
    """relu of n draws from each N(m_i, s_i^2), all neurons pooled."""
    return np.maximum(rng.normal(np.ravel(m)[:, None], np.ravel(s)[:, None], (np.size(m), n)), 0.0).ravel()


def test_gaussian_helpers_against_math_and_sampling():
    xs = np.linspace(-8, 8, 161)
    np.testing.assert_allclose(datafree.gauss_cdf(xs), [0.5 * math.erfc(-x / math.sqrt(2)) for x in xs],
                               rtol=2e-7, atol=1e-15)
    rng = np.random.default_rng(0)
    m, v = np.array([-1.0, 0.0, 0.7, 2.0, 3.0]), np.array([0.25, 1.0, 2.0, 0.5, 0.0])
    z = np.maximum(rng.normal(m[:, None], np.sqrt(v)[:, None], (5, 400_000)), 0.0)
    mean, var = datafree.relu_moments(m, v)
    np.testing.assert_allclose(mean, z.mean(1), atol=5e-3)
    np.testing.assert_allclose(var, z.var(1), atol=1e-2)
    assert mean[-1] == 3.0 and var[-1] == 0.0  # no spread: relu of the mean itself
    s = np.sqrt(v)
    lam = datafree.positive_quantile(m, s, 99.0)
    assert lam == pytest.approx(np.percentile(_mixture_samples(m, s, 200_000, rng), 99.0), rel=1e-2)
    assert datafree.expected_rate(m, s, lam) == pytest.approx(np.minimum(z, lam).mean() / lam, rel=1e-2)
    assert datafree.positive_quantile(np.array([-5.0]), np.array([0.1]), 99.9) == 0.0  # (almost) no positive mass


def test_model_estimate_propagates_the_documented_moments():
    rng = np.random.default_rng(7)
    g = mlp(rng)
    w1, b1 = g.nodes["fc1"]["op"].weight, g.nodes["fc1"]["op"].bias
    pre = datafree.preactivations(g)
    m1, s1 = pre["r1"]
    # input uniform on [0, 1]: mean 1/2, variance 1/12; the spread is the geometric mean of the
    # independent (sqrt(sum w^2 v)) and the fully correlated (sum |w| s) standard deviations
    np.testing.assert_allclose(m1, w1 @ np.full(4, 0.5) + b1)
    np.testing.assert_allclose(s1 ** 2, (np.abs(w1) @ np.full(4, math.sqrt(1 / 12))) * np.sqrt(np.square(w1) @ np.full(4, 1 / 12)))
    a_mean, a_var = datafree.relu_moments(m1, s1 ** 2)
    w2, b2 = g.nodes["fc2"]["op"].weight, g.nodes["fc2"]["op"].bias
    m2, s2 = pre["out"]
    np.testing.assert_allclose(m2, w2 @ a_mean + b2)
    np.testing.assert_allclose(s2 ** 2, (np.abs(w2) @ np.sqrt(a_var)) * np.sqrt(np.square(w2) @ a_var))


def test_model_norm_is_the_default_without_data_and_takes_the_estimates_percentile():
    rng = np.random.default_rng(8)
    g = mlp(rng)
    pre = datafree.preactivations(g)
    x = rng.random((200, 4))
    before = run_ann(g, x)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert normalize(g, CompileConfig())
    assert any("no calibration data" in str(m.message) and "--norm model" in str(m.message) for m in w)
    state = g.graph["snnc"]
    assert state["norm"] == "model" and g.nodes["in"]["op"].scale == 1.0
    np.testing.assert_allclose(run_ann(g, x), before, atol=1e-10)  # only units change
    sample = _mixture_samples(*pre["r1"], 100_000, rng)
    assert g.nodes["r1"]["op"].scale == pytest.approx(np.percentile(sample, 99.9), rel=2e-2)
    lam = g.nodes["r1"]["op"].scale
    assert state["expected_rates"]["r1"] == pytest.approx(np.minimum(sample, lam).mean() / lam, rel=2e-2)


def _bn_graph(weight, gamma, beta, mean, var):
    from snn_compiler.ir import add_op, new_graph
    g = new_graph()
    add_op(g, "in", O.Input((3,)))
    add_op(g, "fc1", O.Dense(weight, np.zeros(len(weight))), ["in"])
    add_op(g, "bn", O.BatchNorm(mean=mean, var=var, weight=gamma, bias=beta), ["fc1"])
    add_op(g, "r1", O.IF(), ["bn"])
    add_op(g, "fc2", O.Dense(np.ones((2, len(weight)))), ["r1"])
    add_op(g, "out", O.Output(), ["fc2"])
    verify(g)
    return g


def test_batchnorm_statistics_replace_the_propagated_estimate():
    rng = np.random.default_rng(9)
    gamma, beta = np.array([1.0, 2.0, 0.5, 1.5]), np.array([0.5, -1.0, 2.0, 0.0])
    mean, var = rng.normal(size=4), np.array([0.5, 1.0, 2.0, 4.0])
    scales = []
    for weight in (rng.normal(size=(4, 3)), 30 * rng.normal(size=(4, 3))):  # the Dense's weights do not matter
        g = _bn_graph(weight, gamma, beta, mean, var)
        fold_batchnorm(g, CompileConfig())
        verify(g)
        m, s = g.nodes["fc1"]["bn_stats"]
        np.testing.assert_allclose(m, beta)
        np.testing.assert_allclose(s, gamma * np.sqrt(var / (var + 1e-5)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            normalize(g, CompileConfig())
        scales.append(g.nodes["r1"]["op"].scale)
    sample = _mixture_samples(beta, gamma * np.sqrt(var / (var + 1e-5)), 200_000, rng)
    assert scales[0] == scales[1] == pytest.approx(np.percentile(sample, 99.9), rel=2e-2)


def test_bound_norm_is_diehls_weight_bound():
    g = mlp(np.random.default_rng(10))
    w, b = g.nodes["fc1"]["op"].weight.copy(), g.nodes["fc1"]["op"].bias.copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        normalize(g, CompileConfig(norm="bound"))
    assert any("--norm bound" in str(m.message) for m in caught)
    assert g.nodes["r1"]["op"].scale == pytest.approx((np.maximum(w, 0).sum(1) + np.maximum(b, 0)).max())
    assert g.graph["snnc"]["norm"] == "bound" and set(g.graph["snnc"]["expected_rates"]) == {"r1", "out"}


def test_a_layer_estimated_silent_is_warned_about_by_name():
    g = mlp(np.random.default_rng(11))
    g.nodes["fc1"]["op"].bias = np.full(6, -100.0)  # no input in [0, 1] reaches zero: r1 never fires
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        normalize(g, CompileConfig(timesteps=64))
    silent = [str(m.message) for m in caught if "is silent" in str(m.message)]
    assert len(silent) == 1 and silent[0].startswith("layer 'r1' is silent at T=64") and "estimated without data" in silent[0]
    assert g.graph["snnc"]["expected_rates"]["r1"] == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(g.nodes["r1"]["op"].scale) and g.nodes["r1"]["op"].scale > 0


def test_a_layer_whose_scale_is_far_too_small_is_warned_saturated():
    rng = np.random.default_rng(12)
    g = mlp(rng)
    g.nodes["fc1"]["op"].bias = np.full(6, 10.0)  # every r1 neuron active on every input
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        normalize(g, CompileConfig(calibration=rng.random((100, 4)), layer_factors={"r1": 1e-3}))
    msgs = [str(m.message) for m in caught]
    assert any(m.startswith("layer 'r1' is saturated") and "calibration data" in m for m in msgs), msgs
