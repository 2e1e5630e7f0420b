"""normalize with ``channel_wise``: one activation scale per channel of each hidden layer, held in the
weights (W'[o, i] = W[o, i] lambda_S[i] / lambda_N[o]), so that channels of very different range all
spike at their own rate (SpikingJelly's channel-wise mode; MobileNet's depthwise layers need it)."""
import numpy as np
import pytest

from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import ops as O
from snn_compiler.passes import normalize
from snn_compiler.passes.normalize import channel_spread
from snn_compiler.sim.emulator import run_ann, simulate


def uneven_cnn(rng, clip=None):
    """A conv whose 4 channels span 50x in range, a grouped conv reading them, then a pooled classifier."""
    g = new_graph()
    add_op(g, "in", O.Input((2, 6, 6)))
    w = rng.normal(size=(4, 2, 3, 3)) * np.array([1.0, 0.3, 0.1, 0.02])[:, None, None, None]
    add_op(g, "c1", O.Conv2d(w, np.zeros(4), padding=(1, 1)), ["in"])
    add_op(g, "r1", O.IF(clip=clip), ["c1"])
    add_op(g, "c2", O.Conv2d(rng.normal(size=(6, 2, 3, 3)), rng.normal(size=6) * 0.01, padding=(1, 1), groups=2), ["r1"])
    add_op(g, "r2", O.IF(), ["c2"])
    add_op(g, "pool", O.AvgPool2d((2, 2), (2, 2)), ["r2"])
    add_op(g, "flat", O.Flatten(), ["pool"])
    add_op(g, "fc", O.Dense(rng.normal(size=(3, 54))), ["flat"])
    add_op(g, "out", O.Output(), ["fc"])
    verify(g)
    return g


@pytest.mark.parametrize("clip", [None, 0.05])
def test_each_channel_gets_its_own_scale_and_the_ann_reading_is_unchanged(clip):
    rng = np.random.default_rng(0)
    g = uneven_cnn(rng, clip)
    x = rng.uniform(0, 1, (64, 2, 6, 6))
    before = run_ann(g, x)
    acts = {}
    for name in ("c1", "c2"):  # each channel's max activation, what norm max takes
        from snn_compiler.sim.emulator import iter_ann
        acts[name] = np.maximum(next(iter_ann(g, x, keep=[name.replace("c", "r")]))[name.replace("c", "r")], 0)
    assert normalize(g, CompileConfig(norm="max", calibration=x, channel_wise=True))
    r1 = g.nodes["r1"]["op"]
    per_channel = acts["c1"].max(axis=(0, 2, 3))
    # no channel's scale below the layer's largest / channel_spread (the integer weights share one threshold)
    per_channel = np.maximum(per_channel, per_channel.max() / channel_spread(8))
    if clip is not None:
        per_channel = np.minimum(per_channel, clip)
        np.testing.assert_allclose(r1.clip, clip / per_channel, rtol=1e-5)  # the clip in each channel's own units
    assert r1.scale == pytest.approx(per_channel.max(), rel=1e-5)
    w1 = g.nodes["c1"]["op"].weight  # row o in units of channel o's scale: its largest activation is 1
    np.testing.assert_allclose(np.maximum(next(iter_ann(g, x, keep=["r1"]))["r1"], 0).max(axis=(0, 2, 3)),
                               np.minimum(acts["c1"].max(axis=(0, 2, 3)) / per_channel, np.inf if clip is None else
                                          clip / per_channel), rtol=1e-5)
    assert w1.shape == (4, 2, 3, 3)
    np.testing.assert_allclose(run_ann(g, x), before, rtol=1e-9, atol=1e-12)


def test_channel_wise_spikes_more_where_channels_differ_and_every_engine_agrees():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (32, 2, 6, 6))
    rates = {}
    for cw in (False, True):
        q = compile_model(uneven_cnn(np.random.default_rng(1)), CompileConfig(bits=8, calibration=x, channel_wise=cw))
        runs = [simulate(q, x[:8], timesteps=32, engine=e, record=True) for e in ("numpy", "numba", "torch")]
        assert all(np.array_equal(r.scores, runs[0].scores) for r in runs)
        rates[cw] = runs[0].counts["r1"].reshape(8, 4, -1).sum(axis=(0, 2))
    # the weak channels fire more channel-wise, each at a rate of its own
    assert (rates[True][1:] > rates[False][1:]).all() and (rates[True] > 0).all()


def test_channel_wise_needs_calibration_data():
    g = uneven_cnn(np.random.default_rng(2))
    with pytest.raises(ValueError, match="--channel-wise.*calibration"):
        normalize(g, CompileConfig(norm="model", channel_wise=True))
    with pytest.raises(ValueError, match="--channel-wise must be true or false"):
        CompileConfig(channel_wise="yes")


def test_a_per_channel_clip_survives_the_artifact(tmp_path):
    from snn_compiler import artifact
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (16, 2, 6, 6))
    q = compile_model(uneven_cnn(rng, clip=0.05), CompileConfig(bits=8, calibration=x, channel_wise=True))
    assert isinstance(q.nodes["r1"]["op"].clip, np.ndarray)
    artifact.save(q, tmp_path / "cw.snnc")
    back = artifact.load(tmp_path / "cw.snnc")
    np.testing.assert_array_equal(back.nodes["r1"]["op"].clip, q.nodes["r1"]["op"].clip)
    assert np.array_equal(simulate(back, x, timesteps=16).scores, simulate(q, x, timesteps=16).scores)
