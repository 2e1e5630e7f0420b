"""examples/mnist_mobilenet.py's shipped MobileNetV2 (ReLU6, linear bottlenecks, depthwise convs, residual
adds, global average pool; benchmarks/weights/mnist_mobilenet_relu6.pt) on real MNIST digits kept in
tests/fixtures/mnist (nothing from ../shared, no training): it compiles to int8, the compiled net read
as an ANN keeps torch's predictions, and the int8 SNN stays within a measured bound of the ANN, with one
activation scale per layer at T = 64 and with one per channel at T = 32."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from snn_compiler import convert  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "mnist"
sys.path.insert(0, str(REPO / "benchmarks"))
import mnist  # noqa: E402  (benchmarks/mnist.py: the IDX reader)


def _example():
    spec = importlib.util.spec_from_file_location("mnist_mobilenet", REPO / "examples" / "mnist_mobilenet.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def _digits(split):
    """The first 500 images of MNIST's ``split`` ("train" or "t10k") as (x in [0, 1] (N, 1, 28, 28), y)."""
    x = mnist.read_idx(FIXTURES / f"{split}-first500-images.idx3-ubyte.gz")
    y = mnist.read_idx(FIXTURES / f"{split}-first500-labels.idx1-ubyte.gz")
    return (x.astype(np.float32) / 255.0)[:, None], y.astype(np.int64)


@pytest.fixture(scope="module")
def shipped():
    """The shipped ReLU6 net, 500 training images to calibrate on, 500 test images, torch's predictions."""
    torch.set_num_threads(1)
    net = _example().load("relu6")
    calib, _ = _digits("train")
    x, y = _digits("t10k")
    with torch.no_grad():
        ann_pred = net(torch.from_numpy(x)).argmax(1).numpy()
    return net, calib, x, y, ann_pred


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_shipped_mobilenet_compiles_and_its_int8_snn_follows_its_ann(shipped):
    net, calib, x, y, ann_pred = shipped
    ann_acc = 100 * np.mean(ann_pred == y)
    assert ann_acc >= 98.0  # the trained weights, not a fresh net (measured 99.20 on these 500)

    snn = convert(net, calib, bits=8, progress=False)
    # the compiled graph read as an ANN (int8 weights, ReLU6 clips, composed bottlenecks and skips)
    # is torch's net: a wrong fold or composition would move many predictions
    same = np.mean(snn.classify(x, backend="ann") == ann_pred)
    print(f"compiled net read as an ANN: {100 * same:.1f}% of torch's predictions")
    assert same >= 0.99

    snn_acc = 100 * snn.accuracy(x, y, timesteps=64, batch_size=500)
    print(f"ANN {ann_acc:.2f}%, int8 SNN at T=64 {snn_acc:.2f}%")
    # Measured here: ANN 99.20%, int8 SNN 77.20% at T=64, a 22-point gap. The gap is rate coding,
    # not int8 (snnc's float SNN reads the same: 76.3% against the int8 SNN's 77.0% on the first
    # 300 of these, calibrated as the example does): one scale per layer leaves most depthwise
    # channels firing at a few %, so 64 steps resolve them coarsely (README.md, "Example: a
    # MobileNetV2 on MNIST"; at T=256 the int8 SNN reads 99.3% on those 300). The bound is that
    # gap plus 5 points of slack for another calibration or BLAS build; a broken ReLU6 clip, skip
    # or bottleneck takes it towards chance (10%).
    assert snn_acc >= ann_acc - 27


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_shipped_mobilenet_channel_wise_follows_its_ann_at_t32(shipped):
    net, calib, x, y, ann_pred = shipped
    ann_acc = 100 * np.mean(ann_pred == y)
    snn = convert(net, calib, bits=8, channel_wise=True, progress=False)
    snn_acc = 100 * snn.accuracy(x, y, timesteps=32, batch_size=500)
    print(f"ANN {ann_acc:.2f}%, channel-wise int8 SNN at T=32 {snn_acc:.2f}%")
    # Measured here: ANN 99.20%, int8 SNN 97.60% at T=32 with one scale per channel (one per layer:
    # about 45%): each depthwise channel fires at its own rate. The bound is that 1.6-point gap plus
    # 2.4 points (12 of 500 digits) of slack; losing the per-channel scales costs 50 points.
    assert snn_acc >= ann_acc - 4
