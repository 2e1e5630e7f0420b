"""The scatter kernel of Dense layers (synapse_kernels.dense_events) equals numpy's integer product on
every kind of row it has a path for: spikes (weight rows added unmultiplied), rows whose nonzero
values share one value (an event frame's input levels: rows summed, then multiplied once), graded
rows (each row multiplied), empty rows; int32 and int64 sums; any row length (the four-row blocks'
remainders). Also the parallel element-wise kernels beside them (add_steps, scale_channels)."""
import numpy as np
import pytest

pytest.importorskip("numba")

from snn_compiler.sim import numba_kernels as K  # noqa: E402


def _rows(kind, rng, n_f, n_in):
    events = rng.random((n_f, n_in)) < rng.choice([0.0, 0.02, 0.1, 0.5, 1.0], (n_f, 1))
    if kind == "spikes":
        return events.astype(np.uint8)
    if kind == "one level":  # per row one value: positive, negative, or 1
        return (events * rng.choice([255, -7, 1, 3], (n_f, 1))).astype(np.int16)
    return (events * rng.integers(-300, 300, (n_f, n_in))).astype(np.int16)


@pytest.mark.parametrize("kind", ["spikes", "one level", "graded"])
@pytest.mark.parametrize("n_in", [1, 3, 5, 64, 301])
@pytest.mark.parametrize("out_dtype", [np.int32, np.int64])
def test_dense_events_equals_the_integer_product(kind, n_in, out_dtype):
    rng = np.random.default_rng(n_in)
    x = _rows(kind, rng, 200, n_in)
    wt = rng.integers(-128, 128, (n_in, 37)).astype(np.int8 if n_in % 2 else np.int16)
    out = np.full((200, 37), 12345, out_dtype)  # written, not accumulated: the fill must not survive
    K.dense_events(x, wt, 1, out)
    np.testing.assert_array_equal(out, x.astype(np.int64) @ wt.astype(np.int64))
    serial = np.empty_like(out)
    K.dense_events_serial(x, wt, 1, serial)
    np.testing.assert_array_equal(serial, out)


@pytest.mark.parametrize("kind", ["spikes", "one level", "graded"])
@pytest.mark.parametrize("n_in", [5, 301, 700])
def test_mantissas_with_a_gain_equal_the_integer_product(kind, n_in):
    """Weights sharing a factor (8-bit mantissas times 4, as a recurrent layer's beside a wider input
    projection) run as int8 rows times the gain; int8 rows sum in int16 lanes 256 at a time, exact at
    int8's ends (700 rows of -128: -89,600, past int16 unless the blocks flush)."""
    rng = np.random.default_rng(n_in)
    x = _rows(kind, rng, 120, n_in)
    x[0] = 1
    wt = rng.integers(-128, 128, (n_in, 29)) * 4
    wt[:, 0] = -128 * 4
    wt[:, 1] = 127 * 4
    m, gain = K.mantissas(wt.astype(np.int16))
    assert m.dtype == np.int8 and gain == 4 and np.array_equal(m.astype(np.int64) * gain, wt)
    for out_dtype in (np.int32, np.int64):
        out = np.empty((120, 29), out_dtype)
        K.dense_events(x, m, gain, out)
        np.testing.assert_array_equal(out, x.astype(np.int64) @ wt)


def test_mantissas_keep_weights_without_a_common_factor():
    w = np.array([[3, 200], [0, -6]], np.int16)
    assert K.mantissas(w)[1] == 1 and K.mantissas(w)[0] is w
    odd = np.array([[6, 510], [0, -6]], np.int16)  # a factor 6, but 510 / 6 = 85: int8
    m, gain = K.mantissas(odd)
    assert gain == 6 and np.array_equal(m.astype(np.int64) * 6, odd)
    assert K.mantissas(np.array([[2, 1024]], np.int16))[1] == 1  # 1024 / 2 is past int8: kept whole


@pytest.mark.parametrize("steps_a,steps_b", [(5, 5), (1, 5), (5, 1), (1, 1)])
def test_add_steps_and_scale_channels_equal_numpy(steps_a, steps_b):
    """The engine's parallel element-wise kernels: a two-term Add (a static term, one step, broadcasts
    over the other's steps) and a per-channel scale, equal to numpy's add and multiply."""
    rng = np.random.default_rng(steps_a * 10 + steps_b)
    a = rng.integers(-2**20, 2**20, (steps_a, 70001)).astype(np.int32)
    b = rng.integers(-2**20, 2**20, (steps_b, 70001)).astype(np.int32)
    for dtype in (np.int32, np.int64):
        out = np.empty((max(steps_a, steps_b), 70001), dtype)
        K.add_steps(a, b, out)
        np.testing.assert_array_equal(out, a.astype(np.int64) + b)
    x = rng.integers(0, 2, (3001, 37)).astype(np.uint8)
    scale = rng.integers(-500, 500, 37).astype(np.int32)
    out = np.empty(x.shape, np.int32)
    K.scale_channels(x, scale, out)
    np.testing.assert_array_equal(out, x.astype(np.int64) * scale)
