"""row_blocks: the passes' weight arithmetic in blocks of rows: every row once, the same bits at any thread count."""
import numpy as np
import pytest

from snn_compiler.ir.layers import signed_row_sums
from snn_compiler import row_blocks
from snn_compiler.ir import op_of
from snn_compiler.ir import ops as O
from snn_compiler.passes.fold_batchnorm import _scale_shift, fold_batchnorm
from snn_compiler.passes.normalize import _rescaled
from snn_compiler.passes.quantize import _integer_weights, _largest_abs
from snn_compiler.row_blocks import for_row_blocks


@pytest.fixture
def blocks_always(monkeypatch):
    """Blocks even for tiny arrays, so a test's small weights take the threaded path."""
    monkeypatch.setattr(row_blocks, "MIN_ELEMENTS", 0)


@pytest.mark.parametrize("rows,threads", [(1, 2), (2, 2), (7, 2), (7, 3), (100, 4), (5, 1), (0, 2)])
def test_blocks_cover_every_row_once(rows, threads, blocks_always):
    seen = np.zeros(rows, int)

    def block(lo, hi):
        seen[lo:hi] += 1

    for_row_blocks(block, rows, rows, threads=threads)
    assert (seen == 1).all()


def test_a_small_array_is_one_block():
    calls = []
    for_row_blocks(lambda lo, hi: calls.append((lo, hi)), 10, row_blocks.MIN_ELEMENTS - 1, threads=2)
    assert calls == [(0, 10)]


def test_an_error_in_a_block_is_raised(blocks_always):
    def block(lo, hi):
        if lo:
            raise ValueError("second block")

    with pytest.raises(ValueError, match="second block"):
        for_row_blocks(block, 8, 8, threads=2)


def _whole(w, unit, theta, exp, wmax):
    """quantize's formula on the whole array at once (what the blocks must equal)."""
    q = w * unit
    q *= theta
    q /= 2.0 ** exp
    return np.clip(np.rint(q, out=q), -wmax, wmax, out=q).astype(np.int32)


@pytest.mark.parametrize("shape", [(9, 5, 3, 3), (13, 40), (6,)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_integer_weights_equal_the_formula_at_any_threads(shape, threads, monkeypatch, blocks_always):
    monkeypatch.setattr(row_blocks, "compile_threads", lambda: threads)
    rng = np.random.default_rng(threads)
    w = rng.standard_normal(shape).astype(np.float32)
    w.flat[0] = 2.5 / 128  # a tie, exact in binary: rint rounds it to even, 2, in each block
    wi, pos, neg = _integer_weights(w, 0.5, 512, 1, 127)
    want = _whole(w, 0.5, 512, 1, 127)
    assert wi.flat[0] == 2
    assert wi.dtype == np.int32 and np.array_equal(wi, want)
    want_pos, want_neg = signed_row_sums(want)
    assert np.array_equal(pos, want_pos) and np.array_equal(neg, want_neg)
    assert abs(wi).max() == 127  # clipped: theta is large enough that some weights reach past wmax


def test_signed_row_sums_with_a_bound_equal_the_general_sums():
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (17, 300)).astype(np.int32)
    want = signed_row_sums(w)
    got = signed_row_sums(w, largest=127)
    assert all(np.array_equal(a, b) and a.dtype == np.int64 for a, b in zip(got, want))
    wide = np.full((2, 3), 2 ** 30, np.int32)  # a row's sum past int32: the int64 path, still exact
    assert signed_row_sums(wide, largest=2 ** 30)[0].tolist() == [3 * 2 ** 30] * 2


def test_largest_abs_reads_both_signs_and_nan():
    assert _largest_abs(np.array([0.5, -2.0, 1.0])) == 2.0
    assert _largest_abs(np.zeros(0)) == 0.0
    assert np.isnan(_largest_abs(np.array([1.0, np.nan])))
    assert np.isnan(_largest_abs(np.array([np.nan, 1.0])))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batchnorm_folds_the_same_bits_at_any_threads(threads, chain, layers, monkeypatch, blocks_always):
    monkeypatch.setattr(row_blocks, "compile_threads", lambda: threads)
    g = chain((3, 6, 6), layers.conv(7, 3), layers.bn(7), O.IF(), names=["conv", "bn", "relu"])
    w = op_of(g, "conv").weight.copy()
    s, t = _scale_shift(op_of(g, "bn"))
    assert fold_batchnorm(g, None)
    want = np.multiply(w, s[:, None, None, None], dtype=np.float64).astype(w.dtype)
    assert np.array_equal(op_of(g, "conv").weight, want)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", ["numbers", "dense columns", "conv channels", "numpy scalars"])
def test_rescaled_weights_equal_the_expression_at_any_threads(case, threads, monkeypatch, blocks_always):
    monkeypatch.setattr(row_blocks, "compile_threads", lambda: threads)
    rng = np.random.default_rng(2)
    if case == "numbers":
        w, per_in, per_out = rng.standard_normal((9, 4)).astype(np.float32), 0.37, 2.9
    elif case == "dense columns":
        w, per_in, per_out = rng.standard_normal((9, 8)).astype(np.float32), rng.random(8)[None, :], rng.random((9, 1))
    elif case == "conv channels":
        w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
        per_in, per_out = rng.random((6, 2, 1, 1)), np.float64(1.7)
    else:
        w, per_in, per_out = rng.standard_normal((5, 3)).astype(np.float32), np.float64(0.3), np.float32(1.1)
    want = w * per_in / per_out
    got, finite = _rescaled(w, per_in, per_out)
    assert finite and got.dtype == want.dtype and np.array_equal(got, want)


def test_rescaled_weights_report_an_overflow(monkeypatch, blocks_always):
    monkeypatch.setattr(row_blocks, "compile_threads", lambda: 2)
    w = np.ones((4, 3), np.float32)
    w[3, 2] = 3e38
    assert _rescaled(w, 10.0, 1.0)[1] is False
    assert _rescaled(w, 1.0, 1.0)[1] is True


def test_threads_without_torch_or_numba(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)   # blocked, as the core-only tests do
    monkeypatch.setitem(__import__("sys").modules, "numba", None)
    assert row_blocks.compile_threads() >= 1
