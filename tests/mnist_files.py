"""scikit-learn's digits written as MNIST's four IDX files (what the examples read), for tests that
must not read ../shared: 8x8 images scaled 3x and padded to 28x28, 1,400 to train, 397 to test."""
import gzip

import numpy as np
import pytest


def write_idx(path, array):
    """IDX: magic 0x0000 08 (uint8) ndim, big-endian int32 dims, then the bytes (benchmarks/mnist.py)."""
    head = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(head + np.ascontiguousarray(array, np.uint8).tobytes())


@pytest.fixture
def digits_as_mnist(tmp_path):
    from sklearn.datasets import load_digits
    d = load_digits()
    images = np.kron(d.images / 16.0 * 255, np.ones((3, 3)))                     # 8x8 -> 24x24
    images = np.pad(images, ((0, 0), (2, 2), (2, 2))).round().astype(np.uint8)  # -> 28x28
    labels = d.target.astype(np.uint8)
    for prefix, sl in (("train", slice(0, 1400)), ("t10k", slice(1400, None))):
        write_idx(tmp_path / f"{prefix}-images.idx3-ubyte.gz", images[sl])
        write_idx(tmp_path / f"{prefix}-labels.idx1-ubyte.gz", labels[sl])
    return tmp_path
