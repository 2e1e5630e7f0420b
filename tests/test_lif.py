"""LIF neurons end to end: the one update rule against hand-worked traces, torch -> IR -> float and
integer SNN, .pt2 files, a LIF MLP trained on digits, and the targets that refuse a leak."""
import numpy as np
import pytest
import torch
from torch import nn

from snn_compiler import nn as snn
from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.frontend import from_module, load_file
from snn_compiler.ir import neuron as N
from snn_compiler.ir import ops as O
from snn_compiler.sim.emulator import simulate


def _params(threshold, decay_v, decay_u=4096, bias=0, subtract=True, vmax=(1 << 23) - 1):
    return N.IntParams.make(threshold, bias, decay_v, decay_u, vmax, "subtract" if subtract else "zero")


def _trace(p, currents, v0=0):
    v, u = np.array([v0], np.int64), np.zeros(1, np.int64)
    out = []
    for i in currents:
        s = N.int_step(v, u, np.array([i], np.int64), p)
        out.append((int(v[0]), bool(s[0])))
    return out


def test_integer_lif_by_hand():
    # decay_v 1024 keeps 3/4 (rounded toward zero), threshold 100, I = 40:
    # v = 40; 30+40 = 70; 52+40 = 92; 69+40 = 109 -> spike, 9 (subtract); 6+40 = 46
    assert _trace(_params(100, 1024), [40] * 5) == [(40, False), (70, False), (92, False), (9, True), (46, False)]
    # reset to zero: ... 109 -> spike, 0; 0+40 = 40
    assert _trace(_params(100, 1024, subtract=False), [40] * 5)[3:] == [(0, True), (40, False)]
    # negative membrane rounds toward zero too: -10 * 3/4 = -7.5 -> -7
    assert _trace(_params(100, 1024), [-10, 0, 0]) == [(-10, False), (-7, False), (-5, False)]


def test_current_memory_by_hand():
    # decay_u 2048 keeps half the current: u = 8, 4+8 = 12, 6+8 = 14; decay_v 4096 forgets v: v = u
    assert [v for v, _ in _trace(_params(1000, 4096, decay_u=2048), [8, 8, 8])] == [8, 12, 14]


def test_if_is_lif_without_leak():
    rng = np.random.default_rng(0)
    cur = rng.integers(-50, 80, 40)
    assert _trace(_params(60, 0), cur, v0=30) == _trace(_params(60, np.zeros(3, np.int64)), cur, v0=30)
    v, out = 30, []
    for i in cur:  # the IF equations, written out
        v += int(i)
        s = v >= 60
        v -= 60 * s
        out.append((v, s))
    assert _trace(_params(60, 0), cur, v0=30) == out


def test_float_step_uses_beta_exactly():
    v = np.zeros(1)
    seen = []
    for _ in range(4):
        s = N.float_step(v, None, np.array([0.6]), 0.5, 4096, subtract=True)
        seen.append((round(float(v[0]), 12), bool(s[0])))
    # 0.6, 0.9, 1.05 -> spike 0.05, 0.625
    assert seen == [(0.6, False), (0.9, False), (0.05, True), (0.625, False)]


def _mlp(reset="subtract", seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 24), snn.LIF(0.9, reset=reset), nn.Linear(24, 5),
                         snn.LIF([0.8, 0.7, 0.9, 0.95, 0.85], reset=reset))


def _cnn(reset="subtract"):
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), snn.LIF(torch.tensor([0.9, 0.8, 0.7, 0.95]), reset=reset),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 5), snn.LIF(0.85, threshold=0.5, reset=reset))


def _compiled(net, x, target="reference", timesteps=16):
    g = from_module(net, tuple(x.shape[1:]))
    return compile_model(g, CompileConfig(bits=8, calibration=x.numpy(), timesteps=timesteps, target=target))


@pytest.mark.parametrize("make", [_mlp, _cnn])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_lif_net_float_snn_matches_torch_and_int_is_close(make, reset):
    """The float SNN is the torch network's own simulation (beta exact); the integer SNN differs
    only by beta rounded to 1/4096, truncated decays and 8-bit weights."""
    net = make(reset)
    x = torch.rand(48, 1, 4, 4)
    with torch.no_grad():
        ref = snn.run(net, x, 16).numpy()
    q = _compiled(net, x)
    labels = [O.kind(q.nodes[n]["op"]) for n in q]
    assert labels.count("LIF") == 1 and labels.count("Output LIF") == 1
    fl = simulate(q, x.numpy(), mode="float", timesteps=16, readout="count")
    assert np.mean(fl.scores == ref) >= 0.99  # float rounding may flip a spike at exactly threshold
    it = simulate(q, x.numpy(), mode="int", timesteps=16, readout="count")
    assert np.mean(np.abs(it.scores - ref) <= 1) >= 0.95
    out = next(n for n in q if O.is_readout(q.nodes[n]["op"]))
    assert q.nodes[out]["op"].reset == reset and q.nodes[out]["op"].decay_v is not None


def test_lif_numba_engine_equals_numpy_engine():
    x = torch.rand(20, 1, 4, 4)
    q = _compiled(_cnn("zero"), x)
    a, b = (simulate(q, x.numpy(), timesteps=16, readout="count", record=True, engine=e) for e in ("numpy", "numba"))
    assert np.array_equal(a.scores, b.scores)
    assert all(np.array_equal(a.counts[k], b.counts[k]) for k in a.counts)


def test_lif_pt2_file_compiles_without_trust(tmp_path):
    net = _mlp()
    ep = torch.export.export(net, (torch.zeros(1, 1, 4, 4),))
    torch.export.save(ep, str(tmp_path / "lif.pt2"))
    g = load_file(tmp_path / "lif.pt2")
    assert sum(O.kind(g.nodes[n]["op"]).endswith("LIF") for n in g) == 2


def test_truenorth_refuses_lif_by_name():
    from snn_compiler.backends import TargetError
    x = torch.rand(16, 1, 4, 4)
    with pytest.raises(TargetError, match=r"2\.lif.*leak"):
        _compiled(_mlp(), x, target="truenorth")


def test_lif_mlp_trained_on_digits_keeps_its_predictions_in_integers():
    """A LIF MLP trained with surrogate gradients for a few epochs on digits; its int8 SNN agrees
    with its float SNN on >= 95% of the test predictions."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    x_tr, y_tr, x_te = x[:1400], y[:1400], x[1400:]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), snn.LIF(0.9), nn.Linear(64, 10), snn.LIF(0.9))
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    T = 8
    for _ in range(6):
        for i in range(0, len(x_tr), 100):
            loss = nn.functional.cross_entropy(snn.run(net, x_tr[i:i + 100], T), y_tr[i:i + 100])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = float((snn.run(net, x_te, T).argmax(1) == y[1400:]).float().mean())
    assert acc > 0.85
    q = compile_model(from_module(net, (64,)), CompileConfig(bits=8, calibration=x_tr.numpy(), timesteps=T))
    fl = simulate(q, x_te.numpy(), mode="float", timesteps=T, readout="count")
    it = simulate(q, x_te.numpy(), mode="int", timesteps=T, readout="count")
    assert np.mean(fl.predictions == it.predictions) >= 0.95
