"""Data is validated before any work, and every refusal is one line that says what to do."""
import numpy as np
import pytest

from snn_compiler.data import DataError, load_data

from .tools import assert_refused, snnc

torch = pytest.importorskip("torch")


@pytest.fixture
def files(cnn_files):
    return cnn_files


def _nan(d):
    x = np.random.default_rng(1).random((5, 1, 8, 8))
    x[3, 0, 2, 2], x[4, 0, 1, 1] = np.nan, np.inf
    np.savez(d, x=x)


BAD = {
    "nan": (_nan, ["2 NaN or infinite", "sample 3"]),
    "empty": (lambda d: np.savez(d, x=np.zeros((0, 1, 8, 8))), ["no samples"]),
    "channels-last": (lambda d: np.savez(d, x=np.zeros((4, 8, 8, 2))), ["(N, 1, 8, 8)"]),
    "wrong-shape": (lambda d: np.savez(d, x=np.zeros((8, 8))), ["shape"]),
    "npy": (lambda d: np.save(open(d, "wb"), np.zeros((4, 1, 8, 8))), [".npy", "np.savez"]),
    "text": (lambda d: open(d, "w").write("1,2,3\n4,5,6\n"), ["text", "np.savez"]),
    "labels-out-of-range": (lambda d: np.savez(d, x=np.zeros((4, 1, 8, 8)), y=np.array([0, 1, 2, 10])), ["0..9"]),
    "object": (lambda d: np.savez(d, x=np.array([None, 1], dtype=object)), []),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_data_is_refused_by_simulate_and_as_calibration(files, unchanged, tmp_path, case):
    make, words = BAD[case]
    path = tmp_path / "bad.npz"
    make(path)
    with unchanged(files), unchanged(tmp_path):
        assert_refused(snnc("simulate", files / "net.snnc", "--data", path, "--output", tmp_path / "r.npz"),
                       "bad.npz", *words)
        if case != "labels-out-of-range":  # calibration takes no labels
            assert_refused(snnc("compile", files / "model.pt", "--input-shape", "1,8,8", "--calibration", path,
                                "-o", tmp_path / "o.snnc"), "bad.npz", *words)


def test_shapes_accepted_only_where_unambiguous(tmp_path):
    def load(x, shape):
        np.savez(tmp_path / "d.npz", x=x)
        return load_data(tmp_path / "d.npz", shape)[0]
    assert load(np.ones((3, 1, 4, 4)), (1, 4, 4)).shape == (3, 1, 4, 4)
    assert load(np.ones((3, 4, 4)), (1, 4, 4)).shape == (3, 1, 4, 4)      # one channel: no order to guess
    assert load(np.ones((3, 16)), (1, 4, 4)).shape == (3, 1, 4, 4)
    assert load(np.ones((3, 4, 4, 1)), (1, 4, 4)).shape == (3, 1, 4, 4)
    with pytest.raises(DataError, match="channels-last"):
        load(np.ones((3, 4, 4, 2)), (2, 4, 4))
    with pytest.raises(DataError, match="ambiguous"):
        load(np.ones((3, 32)), (2, 4, 4))
    with pytest.raises(DataError, match="without the batch axis"):
        load(np.ones((2, 4, 4)), (2, 4, 4))
    with pytest.raises(DataError, match="flatten"):
        load(np.ones((3, 4, 4)), (16,))


@pytest.mark.parametrize("args,words", [
    (["--batch-size", "0"], ["--batch-size"]),
    (["--timesteps", "0"], ["--timesteps"]),
    (["--timesteps", "4,x"], ["--timesteps"]),
    (["--timesteps", "100000000"], ["--timesteps"]),
    (["--timeout", "5"], ["lava"]),
])
def test_bad_run_options(files, unchanged, args, words):
    with unchanged(files):
        assert_refused(snnc("simulate", files / "net.snnc", "--data", files / "data.npz", *args), *words)
