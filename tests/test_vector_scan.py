"""The nonzero scan (synapse_kernels._nonzeros) with and without its vector step (sim/vector_scan.py):
the positions and values of every nonzero value, in order, as numpy finds them, for each value type,
row length (whole vectors, a tail, shorter than one), NaN and -0.0, and rows that are not contiguous."""
import numba as nb
import numpy as np
import pytest

from snn_compiler.sim import synapse_kernels, vector_scan


@nb.njit
def _scan(row):
    idx, vals = np.empty(row.shape[0], np.int64), np.empty(row.shape[0], row.dtype)
    k, common = synapse_kernels._nonzeros(row, idx, vals)
    return idx[:k].copy(), vals[:k].copy(), common


@nb.njit
def _vector_steps(row):
    idx = np.full(row.shape[0], -1, np.int64)
    k = 0
    start = 0
    while start + vector_scan.LANES <= row.shape[0]:
        k += vector_scan.compress_nonzeros(row, start, idx, k)
        start += vector_scan.LANES
    return idx[:k].copy(), start


def _rows(dtype, n, rng):
    x = (rng.random(n) < 0.2) * rng.integers(1, 100, n)
    row = x.astype(dtype)
    if np.dtype(dtype).kind == "f" and n > 20:
        row[3], row[17], row[19] = np.nan, -0.0, -np.inf
    return row


DTYPES = [np.float32, np.float64, np.uint8, np.int8, np.int16, np.int32, np.int64, bool]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 5, 15, 16, 17, 48, 700])
def test_the_scan_finds_what_numpy_finds(dtype, n):
    rng = np.random.default_rng(n)
    row = _rows(dtype, n, rng)
    want = np.flatnonzero(row != 0)
    for r in (row, np.repeat(row, 2)[::2]):  # contiguous, and a strided row (the scalar scan's)
        idx, vals, _ = _scan(r)
        assert idx.tolist() == want.tolist()
        assert np.array_equal(vals, r[want], equal_nan=np.dtype(dtype).kind == "f")


@pytest.mark.skipif(not vector_scan.AVAILABLE, reason="no one-instruction compress on this CPU")
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_vector_step_alone_stores_the_nonzero_positions_in_order(dtype):
    row = _rows(dtype, 700, np.random.default_rng(1))
    idx, end = _vector_steps(row)
    assert end == 700 // vector_scan.LANES * vector_scan.LANES
    assert idx.tolist() == np.flatnonzero(row[:end] != 0).tolist()


def test_the_vector_step_is_taken_where_the_cpu_has_it():
    assert synapse_kernels.VECTOR_SCAN == vector_scan.AVAILABLE
