"""AlexNet/VGG-style heads at small inputs: AdaptiveAvgPool2d((6, 6)) on a map smaller than 6x6
(or not dividing it) compiles, folded into the classifier, through torch.export and TorchScript."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import from_module  # noqa: E402
from snn_compiler.ir import op_of  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402


def alexnet_like():
    """AlexNet's layout, narrow: at 64 px the features end on a 1x1 map that the 6x6 pool repeats."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(8, 12, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(12, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(), nn.Dropout(), nn.Linear(16 * 36, 32), nn.ReLU(inplace=True),
        nn.Linear(32, 10)).eval()


def test_alexnet_head_at_64_px_compiles_and_matches_torch():
    net = alexnet_like()
    x = torch.rand(48, 3, 64, 64)
    g = from_module(net, (3, 64, 64))
    assert any(isinstance(op_of(g, n), O.AdaptiveAvgPool2d) for n in g)   # 1x1 -> 6x6: no AvgPool2d says that
    q = compile_model(g, CompileConfig(bits=8, calibration=x.numpy(), timesteps=64))
    assert not any(isinstance(op_of(q, n), O.AdaptiveAvgPool2d) for n in q)
    want = net(x).detach().numpy()
    np.testing.assert_allclose(run_ann(q, x.numpy()), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    r = simulate(q, x.numpy(), timesteps=64)
    assert np.corrcoef(r.scores.ravel(), want.ravel())[0, 1] > 0.99


def test_an_uneven_pool_before_a_conv_is_refused_naming_it():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d((3, 3)), nn.Conv2d(4, 2, 1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(18, 2)).eval()
    g = from_module(net, (3, 7, 7))
    with pytest.raises(Exception, match=r"pass fold_adaptive_pools: adaptive average pool .* feeds .*Conv2d"):
        compile_model(g, CompileConfig(bits=8, calibration=np.random.default_rng(0).random((8, 3, 7, 7))))
