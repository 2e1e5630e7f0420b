"""The scatter kernel of Dense layers (synapse_kernels.dense_events) equals numpy's integer product on
every kind of row it has a path for: spikes (weight rows added unmultiplied), rows whose nonzero
values share one value (an event frame's input levels: rows summed, then multiplied once), graded
rows (each row multiplied), empty rows; int32 and int64 sums; any row length (the four-row blocks'
remainders)."""
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
    K.dense_events(x, wt, out)
    np.testing.assert_array_equal(out, x.astype(np.int64) @ wt.astype(np.int64))
    serial = np.empty_like(out)
    K.dense_events_serial(x, wt, serial)
    np.testing.assert_array_equal(serial, out)
