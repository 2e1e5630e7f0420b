"""A data-free compile of a trained network is as accurate as its ANN: the digits CNN and MLP of
snn_compiler/demo.py and benchmarks/datafree_digits.py, BatchNorm and none, trained here for a
few seconds on scikit-learn's digits and compiled without calibration data (``--norm model``).
Weight-bound normalisation (``--norm bound``, the former default) is the control: on the CNN it
stays near chance at T = 64 with a layer silent."""
import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import snn_compiler  # noqa: E402
from snn_compiler.activity import inactive_layers  # noqa: E402
from snn_compiler.demo import digits_split  # noqa: E402
from snn_compiler.sim.emulator import simulate  # noqa: E402

T = 64


def _build(kind, bn):
    from torch import nn
    if kind == "cnn":
        norm = (lambda c: [nn.BatchNorm2d(c)]) if bn else (lambda c: [])
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), *norm(8), nn.ReLU(), nn.AvgPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), *norm(16), nn.ReLU(), nn.AvgPool2d(2),
                             nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    norm = (lambda c: [nn.BatchNorm1d(c)]) if bn else (lambda c: [])
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), *norm(64), nn.ReLU(), nn.Linear(64, 32), *norm(32),
                         nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def digits():
    return digits_split()


def _trained(kind, bn, x, y, epochs=10):
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)  # the same weights on any machine, and no fight over shared cores
        torch.manual_seed(0)
        model = _build(kind, bn)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        for _ in range(epochs):
            model.train()
            for idx in torch.randperm(len(xt)).split(64):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
                opt.step()
    torch.set_num_threads(threads)
    return model.eval()


def _compile(model, norm):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snn = snn_compiler.convert(model, norm=norm, input_shape=(1, 8, 8), bits=8, timesteps=T)
    return snn, [str(w.message) for w in caught]


# the two estimates: BatchNorm statistics (the demo's CNN) and pure propagation (an MLP without BN); all
# four nets, with the before/after at T = 8..64, are measured by benchmarks/datafree_digits.py
@pytest.mark.parametrize("kind,bn", [("cnn", True), ("mlp", False)])
def test_data_free_compile_is_within_two_points_of_the_ann_at_64_steps(digits, kind, bn):
    x_tr, x_te, y_tr, y_te = digits
    model = _trained(kind, bn, x_tr, y_tr)
    with torch.no_grad():
        ann = 100 * float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
    assert ann > 90  # a trained net, or the comparison says nothing
    snn, notes = _compile(model, None)  # no data: the default is the data-free estimate
    assert snn.graph.graph["snnc"]["norm"] == "model"
    assert not [n for n in notes if "is silent" in n or "is saturated" in n], notes
    assert 100 * snn.accuracy(x_te, y_te) >= ann - 2.0
    if kind == "cnn" and bn:  # the control: the weight bound leaves the deep layers silent, and that is said
        bound, _ = _compile(model, "bound")
        r = simulate(bound.graph, x_te[:200], timesteps=T)
        assert 100 * (r.predictions == y_te[:200]).mean() < 50
        assert "silent" in inactive_layers(r.rates, T).values(), r.rates  # the rule simulate and report apply
