"""examples/train_lif_mnist.py --quick end to end, on MNIST-format files written from scikit-learn's
digits (so the test needs nothing from ../shared): it trains, compiles to int8, saves, finds the
numba and numpy engines equal, and prints the accuracy table with the float SNN reproducing torch."""
import gzip
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train_lif_mnist.py"


def _write_idx(path, array):
    """IDX: magic 0x0000 08 (uint8) ndim, big-endian int32 dims, then the bytes (benchmarks/mnist.py)."""
    head = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(head + np.ascontiguousarray(array, np.uint8).tobytes())


@pytest.fixture
def digits_as_mnist(tmp_path):
    from sklearn.datasets import load_digits
    d = load_digits()
    images = np.kron(d.images / 16.0 * 255, np.ones((3, 3)))         # 8x8 -> 24x24
    images = np.pad(images, ((0, 0), (2, 2), (2, 2))).round().astype(np.uint8)  # -> 28x28
    labels = d.target.astype(np.uint8)
    for prefix, sl in (("train", slice(0, 1400)), ("t10k", slice(1400, None))):
        _write_idx(tmp_path / f"{prefix}-images.idx3-ubyte.gz", images[sl])
        _write_idx(tmp_path / f"{prefix}-labels.idx1-ubyte.gz", labels[sl])
    return tmp_path


def test_train_lif_mnist_quick(digits_as_mnist, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_lif_mnist", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--quick", "--data-dir", str(digits_as_mnist), "--out", str(tmp_path / "lif")])
    out = capsys.readouterr().out
    print(out)  # shown when an assertion below fails
    assert (tmp_path / "lif.pt").exists() and (tmp_path / "lif.snnc").exists()
    assert f"saved the model to {tmp_path / 'lif.pt'}" in out
    assert re.search(r"bit-exact: numba engine == numpy engine on 20 images, .* layers: yes", out)
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)%$", out, re.M)
    assert [r[0] for r in rows] == ["4"]
    *_, agree, same_counts = rows[0]
    assert float(same_counts) >= 99.0  # the float SNN is torch's own run (tests/test_lif.py's bound)
    assert float(agree) >= 90.0        # int8 vs float: beta to 1/4096, 8-bit weights
