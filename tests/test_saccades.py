"""snn_compiler.saccades: N-MNIST-style events from still images (three saccades before a simulated
event camera). Checked against what the model implies: the path closes, so every pixel's ON and
OFF levels balance; a pixel that never sees an edge stays silent; events follow the motion's
direction and timing; the output is seeded, batch-independent and binned by `snnc bin-events`."""
import numpy as np
import pytest

from snn_compiler import events, saccades
from snn_compiler.cli import main as cli_main

QUIET = dict(noise_hz=0.0, mismatch=0.0)  # the deterministic pixel model alone


def _dot(row=14, col=14, value=255):
    img = np.zeros((1, 28, 28), np.uint8)
    img[0, row, col] = value
    return img


def test_the_path_is_three_saccades_of_a_triangle_that_closes():
    pos = saccades.position([0, 50_000, 100_000, 200_000, 300_000])
    assert np.allclose(pos, [(3, 0), (4.5, 3), (6, 6), (0, 6), (3, 0)])
    # each saccade starts and ends at rest (cosine profile): tiny moves near the corners
    assert np.allclose(saccades.position(100_500) - saccades.position(100_000), 0, atol=2e-3)


def test_a_blank_image_gives_no_events_and_noise_only_its_rate():
    assert len(saccades.nmnist_events(np.zeros((1, 28, 28)), **QUIET)[0]) == 0
    noisy = saccades.nmnist_events(np.zeros((20, 28, 28)), noise_hz=2.0, mismatch=0.0)
    per_sample = np.mean([len(e) for e in noisy])
    assert abs(per_sample - 2.0 * 34 * 34 * 0.3) < 0.15 * 2.0 * 34 * 34 * 0.3  # Poisson mean 694


def test_on_and_off_balance_at_every_pixel_because_the_path_closes():
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    for ev in saccades.nmnist_events(x, **QUIET):
        on = np.zeros((34, 34), int)
        off = np.zeros((34, 34), int)
        np.add.at(on, (ev["y"][ev["p"] == 1], ev["x"][ev["p"] == 1]), 1)
        np.add.at(off, (ev["y"][ev["p"] == 0], ev["x"][ev["p"] == 0]), 1)
        assert on.sum() > 1000
        assert np.abs(on - off).max() <= 1  # the log intensity ends where it began, within one level


def test_a_bright_dot_fires_only_where_it_passes_and_with_the_expected_count():
    ev = saccades.nmnist_events(_dot(), **QUIET)[0]
    assert set(np.unique(ev["p"])) == {0, 1}
    # the dot at image (14, 14) sweeps sensor x, y in 14 + [0, 6]
    assert ev["x"].min() >= 14 and ev["x"].max() <= 20 and ev["y"].min() >= 14 and ev["y"].max() <= 20
    # the dot's centre pixels go from black to white and back: log(1 / floor) / threshold levels each way
    levels = int(np.log(1 / 0.15) / 0.3)
    at_start = (ev["x"] == 17) & (ev["y"] == 14)  # the dot's pixel before the first saccade
    assert np.sum(at_start & (ev["p"] == 0)) == levels  # it fades out once, returns, fades in on the way back
    assert np.sum(at_start & (ev["p"] == 1)) == levels


def test_events_follow_the_saccades_timing_and_direction():
    ev = saccades.nmnist_events(_dot(), **QUIET)[0]
    t = ev["t"]
    assert t.dtype == np.int64 and np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() <= 300_000
    legs = np.clip((t - 1) // 100_000, 0, 2)  # a saccade's last crossing can round to its end, t = 100 ms
    assert np.bincount(legs, minlength=3).min() > 0  # every saccade moves the dot over pixels
    # the second saccade runs left along row 6 + 14 (no vertical motion): one row only, ON leading (left)
    second = ev[legs == 1]
    assert set(np.unique(second["y"])) == {20}
    assert second["x"][second["p"] == 1].mean() < second["x"][second["p"] == 0].mean()
    # the first moves down and right: ON events lead, below-right of the OFF events
    first = ev[legs == 0]
    assert first["y"][first["p"] == 1].mean() > first["y"][first["p"] == 0].mean()
    # no events in the first ms: the pixels adapted to the still image and the motion starts at rest
    assert t.min() > 1000


def test_seeded_deterministic_and_independent_of_batching(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    a, b = saccades.nmnist_events(x, seed=3), saccades.nmnist_events(x, seed=3)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    c = saccades.nmnist_events(x, seed=4)  # another camera: other thresholds and noise
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))
    saccades.write_events(tmp_path / "one.npz", x, batch=1, seed=3)
    saccades.write_events(tmp_path / "all.npz", x, batch=5, seed=3)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "all.npz").read_bytes()
    streams, sensor, labels = events.read_events(tmp_path / "all.npz")
    assert sensor == (34, 34) and labels is None
    assert all(np.array_equal(s[f], e[f]) for s, e in zip(streams, a) for f in "xytp")


def test_written_events_bin_with_snnc_bin_events(tmp_path):
    x = np.random.default_rng(2).integers(0, 256, (4, 28, 28)).astype(np.uint8)
    n = saccades.write_events(tmp_path / "ev.npz", x, labels=np.arange(4))
    assert cli_main(["bin-events", str(tmp_path / "ev.npz"), "--bins", "15", "--window", "0,300000",
                     "-o", str(tmp_path / "frames.npz")]) == 0
    with np.load(tmp_path / "frames.npz") as f:
        frames, y = f["x"], f["y"]
    assert frames.shape == (4, 15, 2, 34, 34) and list(y) == [0, 1, 2, 3]
    assert frames.sum() == n  # every event lands in one bin
    assert frames[:, :, 1].sum() > 0 and frames[:, :, 0].sum() > 0


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 32, 32)), r"images must be \(N, 28, 28\)"),
    (np.full((1, 28, 28), 2.0), r"float images must lie in \[0, 1\]"),
])
def test_bad_images_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        saccades.nmnist_events(bad)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="threshold must be > 0"):
        saccades.nmnist_events(np.zeros((1, 28, 28)), threshold=0)
    with pytest.raises(ValueError, match="first_index must be a whole number"):
        saccades.nmnist_events(np.zeros((1, 28, 28)), first_index=-1)
