"""QCFS (Bu et al., ICLR 2022) end to end: the activation and its straight-through gradient against
hand-worked values, replace_relu, export as one snnc::qcfs op, its lowering to an IF layer (scale =
theta, v_init = threshold // 2, ANN reading = the staircase), the artifact, and a QCFS network
trained on digits whose integer SNN at T = L reproduces its QCFS-ANN."""
import numpy as np
import pytest
import torch
from torch import nn

from snn_compiler import artifact
from snn_compiler import nn as snn
from snn_compiler.artifact_check import ArtifactError
from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.frontend import from_module, load_file
from snn_compiler.frontend.errors import FrontendError
from snn_compiler.ir import neuron as N
from snn_compiler.ir import op_of
from snn_compiler.sim.emulator import run_ann, simulate

# theta 2, L 4: steps of 0.5 at x = 0.25, 0.75, 1.25, 1.75 (floor(2x + 1/2)), top 2 from x = 1.75
X = [-1.0, 0.0, 0.2, 0.25, 0.3, 0.74, 0.76, 1.0, 1.5, 1.8, 2.0, 2.5]
Y = [0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.0]


def test_qcfs_staircase_by_hand():
    q = snn.QCFS(levels=4, theta=2.0)
    assert q(torch.tensor(X)).tolist() == Y
    # L = 1, theta 1: a step at 1/2 (the shift), i.e. round-half-up of clip(x, 0, 1)
    assert snn.QCFS(1, 1.0)(torch.tensor([0.49, 0.5, 3.0])).tolist() == [0.0, 1.0, 1.0]


def test_qcfs_gradients_are_the_straight_through_ones():
    q = snn.QCFS(levels=4, theta=2.0)
    x = torch.tensor(X, requires_grad=True)
    g = torch.arange(1.0, len(X) + 1)  # distinct upstream gradients: a wrong mask changes the sum
    (q(x) * g).sum().backward()
    inside = [0.0 < v < 2.0 for v in X]
    assert x.grad.tolist() == [float(gi) if i else 0.0 for gi, i in zip(g.tolist(), inside)]
    # d/dtheta: (y - x) / theta inside (0, theta), 1 at and above theta, 0 at and below 0
    want = sum(gi * ((y - v) / 2.0 if 0 < v < 2 else float(v >= 2)) for gi, v, y in zip(g.tolist(), X, Y))
    assert q.theta.grad.shape == (1,)
    assert q.theta.grad.item() == pytest.approx(want, rel=1e-6)


def test_qcfs_theta_is_a_buffer_unless_learned():
    fixed = snn.QCFS(8, 1.5, learn_theta=False)
    assert "theta" in dict(fixed.named_buffers()) and not list(fixed.parameters())
    assert isinstance(snn.QCFS(8).theta, nn.Parameter)
    for bad in (dict(levels=0), dict(levels=2.0), dict(theta=0.0), dict(theta=float("nan"))):
        with pytest.raises(ValueError):
            snn.QCFS(**bad)


class _Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.ReLU()))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x))


def test_replace_relu_swaps_nested_relus_and_starts_theta_at_the_percentile():
    torch.manual_seed(0)
    model = _Nested()
    x = torch.randn(500, 4)
    with torch.no_grad():
        a1 = torch.relu(model.body[0](x))
        a2 = torch.relu(model.body[2][0](a1))
    assert snn.replace_relu(model, levels=4, calibration=x) is model
    q1, q2 = model.body[1], model.body[2][1]
    assert isinstance(q1, snn.QCFS) and isinstance(q2, snn.QCFS) and q1.levels == q2.levels == 4
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert q1.theta.item() == pytest.approx(torch.quantile(a1.double().flatten(), 0.999).item(), rel=1e-5)
    assert q2.theta.item() == pytest.approx(torch.quantile(a2.double().flatten(), 0.999).item(), rel=1e-5)
    # without data: the given theta, here as a fixed buffer
    plain = snn.replace_relu(_Nested(), levels=2, theta=3.0, learn_theta=False)
    assert [m.theta.item() for m in plain.modules() if isinstance(m, snn.QCFS)] == [3.0, 3.0]
    assert not any(n.endswith("theta") for n, _ in plain.named_parameters())


def _qcfs_mlp(levels=4):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 5))
    return snn.replace_relu(net, levels, calibration=torch.rand(64, 8)).eval()


def _qcfs_layers(g):
    return [n for n in g if isinstance(op_of(g, n), N.Neuron) and op_of(g, n).levels is not None]


def test_qcfs_exports_as_one_op_with_its_theta():
    ep = torch.export.export(_qcfs_mlp(), (torch.rand(2, 8),))
    calls = [n for n in ep.graph.nodes if n.op == "call_function"]
    qcfs = [n for n in calls if n.target is torch.ops.snnc.qcfs.default]
    assert len(qcfs) == 1 and qcfs[0].args[2] == 4
    assert qcfs[0].args[1].name in {s.arg.name for s in ep.graph_signature.input_specs}  # theta: a parameter
    assert not any("floor" in str(n.target) or "clamp" in str(n.target) for n in calls)


def test_qcfs_lowers_to_an_if_layer_with_theta_as_scale_and_half_membrane():
    net = _qcfs_mlp()
    theta = net[1].theta.item()
    x = torch.rand(200, 8)
    g = from_module(net, (8,))
    (layer,) = _qcfs_layers(g)
    assert op_of(g, layer).scale == pytest.approx(theta) and op_of(g, layer).label == "IF"
    for v_init in ("half", "zero"):  # a QCFS layer starts at half its threshold either way
        q = compile_model(from_module(net, (8,)), CompileConfig(bits=8, calibration=x.numpy(), v_init=v_init))
        op = op_of(q, layer)
        assert op.scale == pytest.approx(theta) and op.v_init == op.threshold // 2 > 0
        assert op.qcfs_theta == pytest.approx(1.0)  # theta / scale: the normalised units
    # the IR read as an ANN is the QCFS network (float64 against torch's float32)
    with torch.no_grad():
        want = net(x).numpy()
    assert np.allclose(run_ann(q, x.numpy()), want, atol=1e-4)
    # a plain ReLU layer keeps --v-init zero
    relu = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 5)).eval()
    q0 = compile_model(from_module(relu, (8,)), CompileConfig(bits=8, calibration=x.numpy(), v_init="zero"))
    assert all(op_of(q0, n).v_init == 0 for n in q0 if isinstance(op_of(q0, n), N.Neuron))


def test_qcfs_ann_reading_differs_from_relu():
    """The staircase, not a ReLU: the IR's ANN must not fall back to relu for a QCFS layer."""
    op = N.QCFS(4, 2.0)
    assert op.ann([np.array(X)]).tolist() == Y
    assert N.Neuron().ann([np.array(X)]).tolist() != Y


def test_qcfs_refused_on_bad_theta():
    net = _qcfs_mlp()
    with torch.no_grad():
        net[1].theta.fill_(-1.0)
    with pytest.raises(FrontendError, match="theta"):
        from_module(net, (8,))


def test_qcfs_pt2_file_loads_without_trust_and_artifact_round_trips(tmp_path):
    net = _qcfs_mlp(levels=3)
    torch.export.save(torch.export.export(net, (torch.rand(1, 8),)), str(tmp_path / "q.pt2"))
    g = load_file(tmp_path / "q.pt2")
    (layer,) = _qcfs_layers(g)
    assert op_of(g, layer).levels == 3
    q = compile_model(g, CompileConfig(bits=8, calibration=np.random.default_rng(0).random((50, 8))))
    artifact.save(q, tmp_path / "q.snnc")
    back = artifact.load(tmp_path / "q.snnc")
    assert op_of(back, layer).levels == 3 and op_of(back, layer).qcfs_theta == op_of(q, layer).qcfs_theta
    x = np.random.default_rng(1).random((20, 8))
    assert np.allclose(run_ann(back, x), run_ann(q, x), atol=1e-4)  # the float weights may be stored compactly
    assert np.array_equal(simulate(back, x, timesteps=4).scores, simulate(q, x, timesteps=4).scores)


def test_artifact_refuses_a_half_qcfs_layer(tmp_path):
    import json
    import zipfile

    q = compile_model(from_module(_qcfs_mlp(), (8,)), CompileConfig(bits=8, calibration=np.random.rand(50, 8)))
    artifact.save(q, tmp_path / "q.snnc")
    with zipfile.ZipFile(tmp_path / "q.snnc") as z:
        members = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(members["manifest.json"])
    for bad, match in ((dict(levels=0), "levels"), (dict(qcfs_theta=None), "qcfs_theta")):
        m = json.loads(json.dumps(manifest))
        node = next(nd for nd in m["nodes"] if nd["attrs"].get("levels"))
        node["attrs"].update(bad)
        with zipfile.ZipFile(tmp_path / "bad.snnc", "w") as z:
            for name, data in members.items():
                z.writestr(name, json.dumps(m) if name == "manifest.json" else data)
        with pytest.raises(ArtifactError, match=match):
            artifact.load(tmp_path / "bad.snnc")


def test_old_artifacts_without_levels_still_load(tmp_path):
    """An artifact written before QCFS has no levels / qcfs_theta attributes: plain IF layers."""
    import json
    import zipfile

    relu = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 5)).eval()
    q = compile_model(from_module(relu, (8,)), CompileConfig(bits=8, calibration=np.random.rand(50, 8)))
    artifact.save(q, tmp_path / "new.snnc")
    with zipfile.ZipFile(tmp_path / "new.snnc") as z:
        members = {n: z.read(n) for n in z.namelist()}
    m = json.loads(members["manifest.json"])
    for nd in m["nodes"]:
        for f in ("levels", "qcfs_theta"):
            nd["attrs"].pop(f, None)
    with zipfile.ZipFile(tmp_path / "old.snnc", "w") as z:
        for name, data in members.items():
            z.writestr(name, json.dumps(m) if name == "manifest.json" else data)
    back = artifact.load(tmp_path / "old.snnc")
    assert not _qcfs_layers(back) and len(back) == len(q)


def test_rate_loss():
    counts = torch.tensor([[4.0, 0.0, 2.0], [1.0, 3.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    ce = snn.rate_loss(counts, y, timesteps=4)
    assert ce.item() == pytest.approx(nn.functional.cross_entropy(counts.detach() / 4, y).item())
    mse = snn.rate_loss(counts, y, 4, kind="mse", on_rate=0.75, off_rate=0.25)
    rates, target = torch.tensor([[1.0, 0.0, 0.5], [0.25, 0.75, 0.0]]), torch.tensor([[.75, .25, .25], [.25, .75, .25]])
    want = ((rates - target) ** 2).mean()
    assert mse.item() == pytest.approx(want.item())
    rates = torch.full((2, 3), 0.5)  # a target rate per neuron
    assert snn.rate_loss(counts, rates, 4, kind="mse").item() == pytest.approx(
        ((counts.detach() / 4 - 0.5) ** 2).mean().item())
    mse.backward()
    assert counts.grad is not None and counts.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="kind"):
        snn.rate_loss(counts, y, 4, kind="l1")
    with pytest.raises(ValueError, match="class indices"):
        snn.rate_loss(counts, rates, 4)


def test_qcfs_net_trained_on_digits_its_int8_snn_at_T_equal_L_matches_its_ann():
    """A ReLU MLP trained on digits, its ReLUs replaced by QCFS (L = 4) and fine-tuned, compiled to int8.

    Why the bounds hold: an IF neuron with threshold theta, initial membrane theta/2 and reset by
    subtraction, fed a constant current a for L steps, spikes exactly clip(floor(a L / theta + 1/2),
    0, L) times, i.e. L / theta times QCFS(a). The first hidden layer gets a constant current (the
    input is constant), so its float SNN counts at T = L equal the staircase levels (up to float
    rounding exactly at a step); its int8 counts differ only where weight rounding (and theta // 2
    for an odd integer threshold) moves a within one integer unit of a step: >= 99% of the counts
    are equal and none is off by more than 1. Deeper layers receive spike trains whose order
    within the L steps matters (the paper's "unevenness" error), so there the bound is on the
    outcome: the int8 SNN at T = L predicts the QCFS-ANN's class on >= 95% of the test images
    (measured 99.2%) and loses at most 2 points of accuracy against it.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    x_tr, y_tr, x_te, y_te = x[:1400], y[:1400], x[1400:], y[1400:].numpy()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def fit(epochs, lr):
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        for _ in range(epochs):
            for i in range(0, len(x_tr), 100):
                loss = nn.functional.cross_entropy(net(x_tr[i:i + 100]), y_tr[i:i + 100])
                opt.zero_grad()
                loss.backward()
                opt.step()

    fit(10, 5e-3)
    L = 4
    snn.replace_relu(net, L, calibration=x_tr)
    fit(10, 2e-3)
    net.eval()
    with torch.no_grad():
        ann_out = net(x_te)
        first = net[1](net[0](x_te)).numpy()  # the first QCFS layer's activations
    ann_pred = ann_out.argmax(1).numpy()
    ann_acc = float((ann_pred == y_te).mean())
    assert ann_acc > 0.85

    q = compile_model(from_module(net, (64,)), CompileConfig(bits=8, calibration=x_tr.numpy()))
    assert float((run_ann(q, x_te.numpy()).argmax(1) == ann_pred).mean()) == 1.0
    first_layer = _qcfs_layers(q)[0]
    assert [n for n in q.graph["snnc"]["ranges"] if n in _qcfs_layers(q)][0] == first_layer  # topological
    levels = np.rint(first / net[1].theta.item() * L)  # staircase levels 0..L
    fl = simulate(q, x_te.numpy(), mode="float", timesteps=L, record=True)
    assert np.mean(fl.counts[first_layer] == levels) > 0.999
    it = simulate(q, x_te.numpy(), mode="int", timesteps=L, record=True)
    diff = np.abs(it.counts[first_layer] - levels)
    assert diff.max() <= 1 and np.mean(diff == 0) >= 0.99
    assert np.mean(it.predictions == ann_pred) >= 0.95
    assert float((it.predictions == y_te).mean()) >= ann_acc - 0.02
