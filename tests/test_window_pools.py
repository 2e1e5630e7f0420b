"""Average pools with partial windows (ir.ops.WindowAvgPool2d): torch's ceil_mode and
count_include_pad=False (ONNX's and Keras's are in test_onnx.py and test_keras.py) divide border
windows by fewer values; the windows are read off by torch's rule, the op's reading equals torch's,
and fold_adaptive_pools composes the pool into the Linear that reads it, exactly (the int8 SNN agrees
with the ANN). A partial pool read by anything else stops the compile, naming the pool and its reader."""
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import from_module  # noqa: E402
from snn_compiler.frontend.pool_windows import torch_windows  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.passes import PassError  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402


def test_torch_windows_give_torchs_average_pool():
    rng = np.random.default_rng(0)
    checked = 0
    for h, w, k, s, p, ceil_mode, include in itertools.product([5, 6, 7], [4, 9], [2, 3], [1, 2, 3], [0, 1],
                                                               [False, True], [False, True]):
        if 2 * p > k:
            continue
        x = rng.normal(size=(2, 3, h, w))
        want = F.avg_pool2d(torch.from_numpy(x), k, s, p, ceil_mode=ceil_mode, count_include_pad=include).numpy()
        op = O.WindowAvgPool2d(rows=torch_windows(h, k, s, p, ceil_mode, include),
                               cols=torch_windows(w, k, s, p, ceil_mode, include))
        assert op.infer_shape([(3, h, w)]) == want.shape[1:]
        np.testing.assert_allclose(op.ann([x]), want, rtol=1e-12, atol=1e-12)
        checked += 1
    assert checked > 200


class _PoolThenLinear(nn.Module):
    def __init__(self, pool, hw):
        super().__init__()
        self.conv, self.pool = nn.Conv2d(2, 4, 3, padding=1), pool
        n = int(np.prod(pool(torch.zeros(1, 4, *hw)).shape))
        self.fc = nn.Linear(n, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


@pytest.mark.parametrize("pool", [nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
                                  nn.AvgPool2d(3, 1, padding=1, count_include_pad=False),
                                  nn.AvgPool2d(2, 2, ceil_mode=True)],
                         ids=["ceil-exclude-pad", "exclude-pad", "ceil"])
def test_a_partial_pool_before_a_linear_compiles_exactly(pool):
    torch.manual_seed(0)
    net = _PoolThenLinear(pool, (9, 9)).eval()
    g = from_module(net, (2, 9, 9))
    assert any(isinstance(g.nodes[n]["op"], O.WindowAvgPool2d) for n in g)
    x = np.random.default_rng(1).random((48, 2, 9, 9)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_ann(g, x), want, rtol=1e-4, atol=1e-5)
    q = compile_model(g, CompileConfig(bits=8, calibration=x))
    assert not any(isinstance(q.nodes[n]["op"], O.WindowAvgPool2d) for n in q)
    np.testing.assert_allclose(run_ann(q, x), want, rtol=0, atol=0.02 * np.abs(want).max())  # int8 weights
    numpy_run, numba_run = (simulate(q, x, timesteps=64, engine=e) for e in ("numpy", "numba"))
    assert np.array_equal(numpy_run.scores, numba_run.scores)
    assert (numpy_run.predictions == want.argmax(1)).mean() >= 0.85


def test_a_partial_pool_read_by_a_conv_stops_the_compile_naming_it():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(3, 1, padding=1, count_include_pad=False),
                        nn.Conv2d(2, 2, 1)).eval()
    g = from_module(net, (1, 6, 6))
    with pytest.raises(PassError, match=r"average pool .* with partial windows.*can only be folded into a Linear.*"
                                        r"it feeds .*Conv2d"):
        compile_model(g, CompileConfig(bits=8, calibration=np.random.default_rng(0).random((8, 1, 6, 6))))
