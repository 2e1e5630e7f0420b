"""passes/calibration_stats.py: the streamed statistics equal numpy's on all the values at once."""
import numpy as np
import pytest

from snn_compiler.passes.calibration_stats import LayerStats


@pytest.mark.parametrize("norm", [("max", None), ("scale", 0.5), ("scale", 2.0), ("percentile", 99.9),
                                  ("percentile", 99.0), ("percentile", 50.0), ("percentile", 100.0)])
@pytest.mark.parametrize("sizes", [[1], [7, 3], [1000, 1000, 37], [5000] * 6])
def test_streamed_statistics_equal_numpys_on_every_value(norm, sizes):
    rng = np.random.default_rng(len(sizes) * 7 + sum(sizes))
    batches = [np.maximum(rng.normal(0, 1, n), 0).astype(np.float32) for n in sizes]
    everything = np.concatenate(batches).astype(np.float64)
    st = LayerStats(everything.size, norm, keep_all=norm == ("scale", 0.5))
    for b in batches:
        st.add(b)
    assert st.top.size <= max(st.k, 1) and st.count == everything.size
    name, arg = norm
    want = {"max": everything.max(), "scale": (arg or 0) * everything.max(),
            "percentile": np.percentile(everything, arg if arg is not None else 0)}[name]
    assert st.statistic(norm) == pytest.approx(want, rel=1e-12, abs=1e-12)
    lam = max(st.statistic(norm), 1e-3)
    assert st.clipped_mean(lam) == pytest.approx(np.minimum(everything, lam).mean(), rel=1e-9)


def test_a_percentile_keeps_only_the_tail_it_needs():
    st = LayerStats(1_000_000, ("percentile", 99.9))
    for _ in range(10):
        st.add(np.random.default_rng(0).random(100_000, dtype=np.float32))
    assert st.top.size <= 1002  # not a million values


def test_non_finite_values_are_seen():
    st = LayerStats(4, ("max", None))
    st.add(np.array([1.0, np.inf, 0.0, 2.0], np.float32))
    assert not st.finite


@pytest.mark.parametrize("norm", [("max", None), ("scale", 0.5), ("percentile", 99.0), ("percentile", 99.9),
                                  ("percentile", 50.0)])
def test_channel_stats_equal_one_layer_stats_per_channel(norm):
    """The vectorised per-channel statistic and rate are each channel's LayerStats."""
    from snn_compiler.passes.calibration_stats import ChannelStats
    rng = np.random.default_rng(4)
    batches = [rng.gamma(1.0, size=(8, 5, 3, 3)) * np.array([1, 10, 0.1, 3, 0])[None, :, None, None] for _ in range(3)]
    keep_all = norm[0] == "scale"  # lambda below the top: normalize keeps every value (as here)
    cs = ChannelStats(5, 3 * 8 * 9, norm, keep_all)
    for b in batches:
        cs.add(b)
    lam = cs.statistic(norm)
    for c in range(5):
        ref = LayerStats(3 * 8 * 9, norm, keep_all)
        for b in batches:
            ref.add(b[:, c])
        assert lam[c] == pytest.approx(ref.statistic(norm), rel=1e-12, abs=1e-12)
    ceil = np.where(lam > 0, lam, 1.0)
    want = np.mean([cs.channel(c).clipped_mean(ceil[c]) / ceil[c] for c in range(5)])
    assert cs.rate(ceil) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("kind", ["relu", "ties", "one_spike", "sorted", "constant"])
def test_the_sampled_threshold_keeps_the_k_largest_exactly(kind):
    """calibration_stats.largest on arrays big enough for its sampled threshold equals a full
    partition, also where the sample misses the tail (one huge value, sorted runs) or every value ties."""
    from snn_compiler.passes.calibration_stats import SAMPLE, largest
    rng = np.random.default_rng(3)
    n = 9 * SAMPLE
    a = {"relu": np.maximum(rng.normal(size=n), 0), "ties": rng.integers(0, 5, n).astype(float),
         "one_spike": np.r_[np.zeros(n - 1), 7.0], "sorted": np.sort(rng.random(n)),
         "constant": np.full(n, 2.5)}[kind].astype(np.float32)
    for k in (1, 17, n // 1000, n // 9):
        assert np.array_equal(np.sort(largest(a, k)), np.sort(a)[-k:]), k


def test_streamed_percentiles_over_big_batches_equal_numpys():
    rng = np.random.default_rng(8)
    batches = [np.maximum(rng.normal(0, 1, 600_000), 0).astype(np.float32) for _ in range(3)]
    everything = np.concatenate(batches).astype(np.float64)
    for norm in (("percentile", 99.9), ("percentile", 99.99), ("max", None)):
        st = LayerStats(everything.size, norm)
        for b in batches:
            st.add(b)
        want = everything.max() if norm[0] == "max" else np.percentile(everything, norm[1])
        assert st.statistic(norm) == pytest.approx(want, rel=1e-12, abs=1e-12)
