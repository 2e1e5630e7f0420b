"""Event streams binned into frames (snn_compiler.events): the rule worked by hand, exact bin edges,
EVENTS.npz without pickle, and binned frames run as a sequence."""
import io

import numpy as np
import pytest

from snn_compiler.events import EventError, bin_events, bin_file, read_events, save_events
from snn_compiler.sim import fast
from snn_compiler.sim.emulator import simulate

from lava_nets import compiled

TONIC = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])  # tonic's record layout


def events(*rows, dtype=TONIC):
    return np.array(list(rows), dtype)


def test_binning_by_hand():
    # window [0, 8] of the events themselves, 4 bins of length 2: bin = t * 4 // 8, t = 8 in the last
    ev = events((0, 0, 0, 1), (2, 1, 1, 0), (2, 1, 2, 1), (1, 0, 7, -1), (1, 0, 8, 1), (1, 0, 8, 1))
    frames, dropped = bin_events(ev, (3, 2), 4)
    assert frames.shape == (4, 2, 2, 3) and dropped == 0
    want = np.zeros((4, 2, 2, 3), np.int64)
    want[0, 1, 0, 0] = 1      # t=0, ON at (x 0, y 0)
    want[0, 0, 1, 2] = 1      # t=1, OFF (p 0) at (x 2, y 1)
    want[1, 1, 1, 2] = 1      # t=2 starts bin 1
    want[3, 0, 0, 1] = 1      # t=7, OFF (p -1)
    want[3, 1, 0, 1] = 2      # t=8 = t_max closes the last bin; counts add up
    assert np.array_equal(frames, want)


def test_a_given_window_drops_and_counts_events_outside_it():
    ev = events((0, 0, -5, 1), (0, 0, 10, 1), (0, 0, 19, 1), (0, 0, 20, 1), (0, 0, 21, 0))
    frames, dropped = bin_events(ev, (1, 1), 2, window=(10, 20))
    assert dropped == 2 and frames[:, 1, 0, 0].tolist() == [1, 2] and frames[:, 0].sum() == 0


def test_integer_timestamps_bin_exactly_at_the_edges():
    """A bin edge float64 cannot represent: integer arithmetic puts the event in the right bin."""
    edge = 2**53 + 1
    ev = events((0, 0, 0, 1), (0, 0, edge - 1, 1), (0, 0, edge, 1), (0, 0, 3 * edge, 1))
    frames, _ = bin_events(ev, (1, 1), 3)
    assert frames[:, 1, 0, 0].tolist() == [2, 1, 1]
    floats = events(*ev.tolist(), dtype=[("x", "f8"), ("y", "f8"), ("t", "f8"), ("p", "f8")])
    assert bin_events(floats, (1, 1), 3)[0].sum() == 4  # float timestamps: the same rule in float64


def test_no_events_and_one_timestamp():
    assert bin_events(events(), (4, 3), 5)[0].shape == (5, 2, 3, 4) and not bin_events(events(), (4, 3), 5)[0].any()
    frames, _ = bin_events(events((1, 1, 7, 1), (1, 1, 7, 1)), (2, 2), 3)
    assert frames[0, 1, 1, 1] == 2 and frames.sum() == 2


@pytest.mark.parametrize("call,msg", [
    (lambda: bin_events(np.zeros(3, [("x", "i8"), ("y", "i8"), ("t", "i8")]), (2, 2), 2), "missing p"),
    (lambda: bin_events(events((2, 0, 0, 1)), (2, 2), 2), r"event \(2, 0\) lies outside the 2x2 sensor"),
    (lambda: bin_events(events((0, 0, 0, 1)), (2, 2), 0), "bins must be a whole number >= 1, got 0"),
    (lambda: bin_events(events((0, 0, 0, 1)), (2, 2), 2, window=(5, 1)), "window must have t0 <= t1"),
    (lambda: bin_events(events((0, 0, 0, 1)), (2,), 2), r"sensor_size must be \(W, H\)"),
])
def test_bad_events_are_refused_in_one_line(call, msg):
    with pytest.raises(EventError, match=msg) as e:
        call()
    assert "\n" not in str(e.value)


def test_events_file_round_trip_without_pickle(tmp_path):
    rng = np.random.default_rng(0)
    streams = []
    for n in (30, 0, 12):
        ev = np.zeros(n, TONIC)
        ev["x"], ev["y"] = rng.integers(0, 5, n), rng.integers(0, 4, n)
        ev["t"], ev["p"] = np.sort(rng.integers(0, 1000, n)), rng.integers(0, 2, n)
        streams.append(ev)
    path = tmp_path / "ev.npz"
    path.write_bytes(save_events(streams, (5, 4), labels=[3, 1, 2]))
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert sorted(z.files) == ["labels", "offsets", "p", "sensor_size", "t", "x", "y"]
    got, sensor, labels = read_events(path)
    assert sensor == (5, 4) and labels.tolist() == [3, 1, 2] and [len(s["x"]) for s in got] == [30, 0, 12]
    x, y, dropped = bin_file(path, 6)
    assert x.shape == (3, 6, 2, 4, 5) and dropped == 0 and y.tolist() == [3, 1, 2]
    for i, ev in enumerate(streams):
        assert np.array_equal(x[i], bin_events(ev, (5, 4), 6)[0])
    assert x[0].sum() == 30 and x[1].sum() == 0
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros(3), y=np.zeros(3), t=np.zeros(3), p=np.zeros(3), sensor_size=np.array([2, 2]),
             offsets=np.array([0, 2, 1, 3]))
    (tmp_path / "bad.npz").write_bytes(buf.getvalue())
    with pytest.raises(EventError, match="'offsets' must be ascending integers from 0 to 3"):
        read_events(tmp_path / "bad.npz")
    (tmp_path / "text.npz").write_text("x,y,t,p\n")
    with pytest.raises(EventError, match="not a readable EVENTS.npz"):
        read_events(tmp_path / "text.npz")


@pytest.mark.skipif(not fast.available(), reason="numba is not installed")
def test_binned_events_run_as_a_sequence_on_every_engine():
    """A CNN with input (2, 8, 8) fed ON/OFF event frames: the engines agree spike for spike."""
    q, _ = compiled("cnn", timesteps=10)
    rng = np.random.default_rng(1)
    x = np.stack([bin_events(_random_stream(rng, 400), (8, 8), 10)[0] for _ in range(5)]).astype(np.float64)
    assert x.shape == (5, 10, 2, 8, 8)
    a = simulate(q, x, engine="numpy", readout="count", record=True)
    b = simulate(q, x, engine="numba", readout="count", record=True)
    assert np.array_equal(a.scores, b.scores) and a.rates == b.rates
    assert a.counts["relu1"].sum() > 0


def _random_stream(rng, n):
    ev = np.zeros(n, TONIC)
    ev["x"], ev["y"], ev["t"], ev["p"] = rng.integers(0, 8, n), rng.integers(0, 8, n), rng.integers(0, 5000, n), \
        rng.integers(0, 2, n)
    return ev


def test_cli_bin_events_then_simulate(tmp_path):
    from cli_run import run_in_process
    from snn_compiler import artifact
    q, _ = compiled("cnn", timesteps=10)
    artifact.save(q, tmp_path / "net.snnc")
    rng = np.random.default_rng(2)
    streams = [_random_stream(rng, 300) for _ in range(4)]
    (tmp_path / "ev.npz").write_bytes(save_events(streams, (8, 8), labels=[0, 1, 2, 3]))
    r = run_in_process(["bin-events", tmp_path / "ev.npz", "--bins", "10", "--window", "0,4000",
                        "-o", tmp_path / "frames.npz"])
    assert r.returncode == 0, r.stderr
    inside = sum(int(((s["t"] >= 0) & (s["t"] <= 4000)).sum()) for s in streams)
    assert f"binned 4 samples into 10 frames of (2, 8, 8) ({inside} events, {1200 - inside} outside" in r.stdout
    with np.load(tmp_path / "frames.npz", allow_pickle=False) as z:
        x, y = z["x"], z["y"]
    assert x.shape == (4, 10, 2, 8, 8) and y.tolist() == [0, 1, 2, 3] and x.dtype == np.uint8  # counts < 256
    assert np.array_equal(x[1], bin_events(streams[1], (8, 8), 10, window=(0, 4000))[0])
    r = run_in_process(["simulate", tmp_path / "net.snnc", "--data", tmp_path / "frames.npz", "--readout", "count"])
    assert r.returncode == 0, r.stderr
    assert "reference T=10: 4 samples" in r.stdout
    r = run_in_process(["bin-events", tmp_path / "ev.npz", "--bins", "10", "--window", "5", "-o", tmp_path / "f2.npz"])
    assert r.returncode == 1 and r.stderr.strip().endswith("--window must be T0,T1 like 0,100000, got '5'")
    assert not (tmp_path / "f2.npz").exists()
