"""Conv1d and the 1-D pools (issue 19, item 4) as their 2-D forms on maps of height 1."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from snn_compiler import ir  # noqa: E402
from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import FrontendError, from_module  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _net1d():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(2, 6, 5, padding=2), nn.BatchNorm1d(6), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(6, 8, 3, stride=2, dilation=2, padding="valid"), nn.ReLU(), nn.AvgPool1d(3, stride=1, padding=1),
        nn.Conv1d(8, 8, 3, padding="same", groups=4), nn.ReLU(), nn.AdaptiveAvgPool1d(2), nn.Flatten(),
        nn.Linear(16, 4)).eval()


def test_conv1d_net_lowers_to_height_one_maps_and_reads_as_torch():
    net = _net1d()
    g = from_module(net, (2, 32))
    assert ir.op_of(g, "input").shape == (2, 1, 32)
    convs = [ir.op_of(g, n) for n in ir.topo_order(g) if isinstance(ir.op_of(g, n), O.Conv2d)]
    assert [c.weight.shape[2] for c in convs] == [1, 1, 1] and convs[1].stride == (1, 2) and convs[1].dilation == (1, 2)
    x = torch.randn(10, 2, 32)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_ann(g, x.numpy()[:, :, None, :].astype(np.float64)), want, rtol=0, atol=1e-5)


def test_conv1d_net_compiles_and_its_int8_snn_agrees_with_its_ann():
    net = _net1d()
    x = torch.rand(64, 2, 1, 32)  # the IR's input layout: (C, 1, L)
    q = compile_model(from_module(net, (2, 32)), CompileConfig(bits=8, calibration=x.numpy()))
    ann = run_ann(q, x.numpy())
    snn = simulate(q, x.numpy(), timesteps=64).scores
    assert np.corrcoef(ann.ravel(), snn.ravel())[0, 1] > 0.99


def test_max_pool1d_with_ceil_mode_and_the_refusal_of_a_bad_conv1d():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv1d(1, 3, 3), nn.ReLU(), nn.MaxPool1d(3, 2, ceil_mode=True), nn.Flatten(),
                        nn.Linear(3 * 7, 2)).eval()
    g = from_module(net, (1, 16))  # 14 -> 7 windows with the partial one (6 without)
    x = torch.rand(8, 1, 16)
    with torch.no_grad():
        np.testing.assert_allclose(run_ann(g, x.numpy()[:, :, None, :]), net(x).numpy(), rtol=0, atol=1e-5)
    bad = nn.Sequential(nn.Conv1d(1, 2, 4, padding="same"), nn.Flatten()).eval()
    with pytest.raises(FrontendError, match=r"aten\.conv1d\.padding at 0 .*padding='same' with kernel \(1, 4\)"):
        from_module(bad, (1, 8))
