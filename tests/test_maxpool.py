"""Max pooling end to end: the frontend (nn.MaxPool2d, F.max_pool2d, AdaptiveMaxPool2d), a max-pool
CNN trained on digits within 1.5 points of its ANN at T=64, the engines and Lava on it."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from frontend_helpers import _assert_matches, _lower
from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.frontend import FrontendError, from_module
from snn_compiler.ir import op_of
from snn_compiler.ir import ops as O
from snn_compiler.passes import PassError
from snn_compiler.sim.emulator import run_ann, simulate


def _seeded(seed, make):
    torch.manual_seed(seed)
    return make().eval()


class _Functional(nn.Module):
    """F.relu(F.max_pool2d(conv(x))) (the pool before the ReLU), then a padded, strided F.max_pool2d."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 2 * 2, 3)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), kernel_size=3, stride=2, padding=1)
        return self.fc(torch.flatten(x, 1))


def _features(pool, c=4):
    return nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), pool, nn.Flatten())


MODELS = {
    "module": (lambda: _features(nn.MaxPool2d(2)), (1, 8, 8), [((2, 2), (2, 2), (0, 0), (1, 1))]),
    "module_overlapping": (lambda: _features(nn.MaxPool2d(3, stride=1, padding=1, dilation=1)), (1, 6, 6),
                           [((3, 3), (1, 1), (1, 1), (1, 1))]),
    "functional": (_Functional, (1, 8, 8), [((2, 2), (2, 2), (0, 0), (1, 1)), ((3, 3), (2, 2), (1, 1), (1, 1))]),
    "adaptive": (lambda: _features(nn.AdaptiveMaxPool2d((2, 3))), (1, 8, 9), [((4, 3), (4, 3), (0, 0), (1, 1))]),
    "global": (lambda: _features(nn.AdaptiveMaxPool2d(1)), (1, 6, 6), [((6, 6), (6, 6), (0, 0), (1, 1))]),
    "ceil_mode_exact": (lambda: _features(nn.MaxPool2d(2, ceil_mode=True)), (1, 8, 8),
                        [((2, 2), (2, 2), (0, 0), (1, 1))]),
}


def _pools(g):
    return [op_of(g, n) for n in g if isinstance(op_of(g, n), O.MaxPool2d)]


@pytest.mark.parametrize("fmt", ["module", "script", "trace", "pt2"])
@pytest.mark.parametrize("name", list(MODELS))
def test_frontend_lowers_max_pools(tmp_path, name, fmt):
    make, shape, want = MODELS[name]
    model = _seeded(0, make)
    g = _lower(model, shape, fmt, tmp_path)
    got = [(tuple(p.kernel_size), tuple(p.stride), tuple(p.padding), tuple(p.dilation)) for p in _pools(g)]
    assert got == want
    _assert_matches(g, model, shape)


@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_max_pool_nets_keep_the_ann(name):
    """After the structural passes (pools lowered, ReLUs moved) the ANN reading is still torch's."""
    make, shape, _ = MODELS[name]
    model = _seeded(0, make)
    if name != "functional":  # a read-out layer after the features
        model = nn.Sequential(model, nn.LazyLinear(3))
        model(torch.zeros((1,) + shape))
        model = model.eval()
    g = from_module(model, shape)
    x = torch.rand((30,) + shape)
    q = compile_model(g, CompileConfig(bits=8, calibration=x.numpy().astype(np.float64)))
    assert not _pools(q) and any(n.endswith(".max1") or n.endswith(".if") for n in q)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(run_ann(q, x.numpy().astype(np.float64)), want, rtol=1e-6, atol=1e-5)


def _refused(model, shape, *texts):
    with pytest.raises(FrontendError) as e:
        from_module(model, shape)
    for t in texts:
        assert t in str(e.value), str(e.value)


def test_adaptive_max_pool_that_does_not_divide_is_refused_naming_the_module():
    _refused(_seeded(0, lambda: _features(nn.AdaptiveMaxPool2d(3))), (1, 8, 8), "adaptive_max_pool2d",
             "at 3 (torch.nn.modules.pooling.AdaptiveMaxPool2d)", "output size (3, 3) does not divide the input "
             "size (8, 8)")


@pytest.mark.parametrize("padding,hw", [(0, 16), (1, 16), (0, 14), (1, 10)])
def test_ceil_mode_partial_windows_compile_exactly(padding, hw):
    """GoogLeNet's MaxPool2d(3, 2, ceil_mode=True): zero rows/columns appended at the bottom/right (a
    one-hot depthwise conv and an IF copy of the ReLU layer) give the floor-mode pool the ceil output."""
    torch.manual_seed(padding + hw)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=padding, ceil_mode=True),
                        nn.Flatten())
    with torch.no_grad():
        floor = F.max_pool2d(torch.zeros(1, 3, hw, hw), 3, 2, padding).numel()
        n = net(torch.zeros(1, 1, hw, hw)).shape[1]
    assert n > floor  # partial windows
    net = nn.Sequential(*net, nn.Linear(n, 4)).eval()
    g = from_module(net, (1, hw, hw))
    assert [n for n in g if "ceil_pad" in n] == ["2.ceil_pad", "2.ceil_pad.if"]
    _assert_matches(g, net, (1, hw, hw))
    x = torch.rand(32, 1, hw, hw)
    q = compile_model(from_module(net, (1, hw, hw)), CompileConfig(calibration=x.numpy()))
    with torch.no_grad():
        np.testing.assert_allclose(run_ann(q, x.numpy()), net(x).numpy(), rtol=0, atol=0.02)
    ann, snn = run_ann(q, x.numpy()), simulate(q, x.numpy(), timesteps=64).scores
    assert np.corrcoef(ann.ravel(), snn.ravel())[0, 1] > 0.99


def test_ceil_mode_partial_windows_on_a_value_that_may_be_negative_are_refused():
    _refused(_seeded(0, lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(3, stride=2, ceil_mode=True),
                                              nn.ReLU(), nn.Flatten())), (1, 8, 8), "max_pool2d",
             "at 1 (torch.nn.modules.pooling.MaxPool2d)", "ceil_mode=True adds partial windows",
             "put it after the activation")


def test_using_the_indices_is_refused():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.pool = nn.MaxPool2d(2, return_indices=True)

        def forward(self, x):
            y, idx = self.pool(torch.relu(self.conv(x)))
            return y.flatten(1) + idx.flatten(1).float()

    with pytest.raises(FrontendError, match="indices"):
        from_module(_seeded(0, M), (1, 4, 4))


@pytest.mark.parametrize("make,where", [
    (lambda: nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3)), "MaxPool2d 0 follows Input"),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 3)),
     "MaxPool2d 1 follows Conv2d 0, not a ReLU"),
])
def test_pool_without_a_relu_is_refused_at_compile_naming_the_module(make, where):
    g = from_module(_seeded(0, make), (1, 8, 8))
    with pytest.raises(PassError, match="pass lower_maxpool: ") as e:
        compile_model(g, CompileConfig(bits=8, calibration=np.random.default_rng(0).random((8, 1, 8, 8))))
    assert where in str(e.value) and "put the pool after the activation" in str(e.value)


# ---- a max-pool CNN trained on digits ------------------------------------------------------------

def digits_maxpool_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10))


def train_digits_maxpool(epochs=8, seed=0):
    """(model, compiled int8 graph, x_test, y_test, ANN accuracy %): trained as snn_compiler.demo does
    (Adam 3e-3, cosine schedule, batch 64, seeded), compiled at 8 bits on 500 training images."""
    from snn_compiler.demo import digits_split

    x_tr, x_te, y_tr, y_te = digits_split()
    torch.manual_seed(seed)
    model = digits_maxpool_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        ann = 100 * float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
    q = compile_model(from_module(model, (1, 8, 8)), CompileConfig(bits=8, calibration=x_tr[:500]))
    return model, q, x_te, y_te, ann


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return train_digits_maxpool()


@pytest.mark.slow
def test_digits_max_pool_cnn_within_1_5_points_of_its_ann_at_T64(digits):
    model, q, x, y, ann = digits
    assert ann > 95, ann
    ir_ann = 100 * float((run_ann(q, x).argmax(1) == y).mean())
    assert ir_ann == pytest.approx(ann, abs=1e-9)  # the lowering is exact in the ANN
    snn = 100 * float((simulate(q, x, mode="int", timesteps=64).predictions == y).mean())
    assert snn >= ann - 1.5, (ann, snn)


@pytest.mark.slow
def test_engines_agree_on_the_digits_max_pool_cnn(digits):
    _, q, x, _, _ = digits
    kw = dict(mode="int", timesteps=64, record=True, readout="count")
    a, b = simulate(q, x[:48], engine="numpy", **kw), simulate(q, x[:48], engine="numba", **kw)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.predictions, b.predictions)
    assert a.counts.keys() == b.counts.keys() and any(k.endswith(".max2") for k in a.counts)
    for k in a.counts:
        assert np.array_equal(a.counts[k], b.counts[k]), k
        assert a.counts[k].sum() > 0, k  # every layer spikes: the comparison saw the max tree work


# ---- Lava ---------------------------------------------------------------------------------------

def _lava():
    from snn_compiler.backends import lava
    return lava


@pytest.mark.lava
def test_lava_matches_reference_on_a_max_pool_cnn():
    lava = _lava()
    if not lava.available():
        pytest.skip("Lava backend needs .venv-lava (Python 3.10, lava-nc 0.10.0); run scripts/bootstrap.sh")
    model = _seeded(1, lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=1, padding=1),
        nn.Flatten(), nn.Linear(4 * 3 * 3, 5)))
    x = np.random.default_rng(0).random((6, 1, 6, 6))
    q = compile_model(from_module(model, (1, 6, 6)), CompileConfig(target="lava", bits=8, calibration=x))
    for readout in ("count", "membrane"):
        ref = simulate(q, x, timesteps=12, readout=readout, record=True)
        got = lava.run(q, x, timesteps=12, readout=readout, record=True)
        assert np.array_equal(ref.scores, got.scores) and np.array_equal(ref.predictions, got.predictions)
        assert set(ref.counts) == set(got.counts)
        for k in ref.counts:
            assert np.array_equal(ref.counts[k], got.counts[k]), k
        assert sum(int(c.sum()) for c in ref.counts.values()) > 0
