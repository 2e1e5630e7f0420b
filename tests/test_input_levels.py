"""The Input's value rule (sim/input_rule.input_levels, re-exported by encode) is written once;
numba's one-pass kernel (numba_kernels.quantize_frames, what quantize_input takes for large inputs)
gives numpy's levels bit for bit: every input dtype, exact ties (x / scale * L = k + 1/2), both signs, views in any order;
so does its sequence path (encode.quantize_frames), event frames or not."""
import numpy as np
import pytest

from snn_compiler.ir import ops as O
from snn_compiler.sim import encode

pytest.importorskip("numba")


def _numpy_levels(inp, x, dtype):
    return encode.input_levels(np.asarray(x).astype(np.float64), inp.scale, inp.levels,
                               -inp.levels if inp.signed else 0).astype(dtype)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("bits", [2, 8, 12])
@pytest.mark.parametrize("kind", ["float32", "float64", "bool", "uint8", "int16", "ties", "swapped"])
def test_the_fused_kernel_gives_numpys_levels(kind, bits, signed):
    rng = np.random.default_rng(bits)
    inp = O.Input((50,), scale=0.73, bits=bits, signed=signed)
    shape = (16, 48, 50)  # 38,400 values: above FUSED_VALUES, so quantize_input takes the kernel
    assert np.prod(shape) >= encode.FUSED_VALUES
    if kind == "bool":
        x = rng.random(shape) < 0.05
    elif kind in ("uint8", "int16"):
        x = rng.integers(0 if kind == "uint8" else -300, 256 if kind == "uint8" else 300, shape).astype(kind)
    elif kind == "ties":  # values whose scaled level is exactly k + 1/2: rint rounds half to even
        k = rng.integers(-inp.levels, inp.levels, shape) + 0.5
        x = k / inp.levels * inp.scale
    elif kind == "swapped":  # a sequence chunk as the encoder slices it: (steps, N, F) of an (N, T, F) array
        x = np.swapaxes(rng.normal(size=(shape[1], shape[0], shape[2])), 0, 1)
    else:
        x = (rng.normal(size=shape) * 2).astype(kind)
    for dtype in (np.int8 if inp.levels <= 127 else np.int16, np.int32, np.int64):  # (each holds +-levels)
        got = encode.quantize_input(inp, x, dtype)
        assert got.dtype == dtype and got.shape == x.shape
        np.testing.assert_array_equal(got, _numpy_levels(inp, x, dtype))


def test_the_density_estimate_picks_the_method_and_both_are_exact():
    """fast._density estimates an input's density on sampled frames; whichever method it picks (a
    product or a scatter per spike), the numba engine equals numpy's bit for bit."""
    from snn_compiler.compile import compile_model
    from snn_compiler.config import CompileConfig
    from snn_compiler.sim import fast
    from snn_compiler.sim.emulator import simulate
    from recurrent_nets import recurrent_cuba
    rng = np.random.default_rng(0)
    assert abs(fast._density((rng.random((4000, 300)) < 0.3).astype(np.int8)) - 0.3) < 0.02
    assert fast._density((rng.random((4000, 300)) < 0.01).astype(np.int8)) < 0.02
    g = recurrent_cuba(40, 24, 5, reset="subtract", seed=1)
    for rate in (0.02, 0.5):
        x = (rng.random((8, 30, 40)) < rate).astype(np.float32)
        q = compile_model(g, CompileConfig(bits=8, calibration=x[:, 0], timesteps=30))
        a, b = (simulate(q, x, engine=e, record=True) for e in ("numpy", "numba"))
        assert np.array_equal(a.scores, b.scores) and all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("kind", ["events", "two values", "graded", "mixed", "bool", "strided"])
def test_a_sequences_frames_quantize_as_numpy_does(kind, signed):
    """encode.quantize_frames (the sequence path: frames read in place, event frames in one pass from
    two levels) equals numpy's rule on x[:, t0:t0 + c], time first, for frames of any content."""
    rng = np.random.default_rng(len(kind))
    inp = O.Input((70,), scale=0.61, bits=8, signed=signed)
    n, t, f = 16, 40, 70  # every (t0, c) below spans FUSED_VALUES: the kernel runs
    events = rng.random((n, t, f)) < 0.05
    if kind == "events":  # zeros and 1.0, some -0.0
        x = np.where(events, 1.0, np.where(rng.random((n, t, f)) < 0.1, -0.0, 0.0)).astype(np.float32)
    elif kind == "two values":  # the other value changes from frame to frame and sample to sample
        x = (events * rng.choice([0.25, 1.0, -0.7, 3.0], (n, t, 1))).astype(np.float32)
    elif kind == "graded":
        x = rng.normal(size=(n, t, f))
    elif kind == "mixed":  # event frames, then graded frames, then event frames again
        x = (events * 0.5).astype(np.float64)
        x[:, 10:20] = rng.normal(size=(n, 10, f))
    elif kind == "bool":
        x = events
    else:  # a view that is not C-contiguous
        x = (events * 2.0)[:, :, ::-1]
    for t0, c in ((0, t), (3, 35), (10, 30)):
        for dtype in (np.int16, np.int64):
            got = encode.quantize_frames(inp, x, t0, c, dtype)
            assert got.dtype == dtype and got.shape == (c, n, f)
            np.testing.assert_array_equal(got, _numpy_levels(inp, np.swapaxes(x[:, t0:t0 + c], 0, 1), dtype))
