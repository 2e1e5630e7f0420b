"""snn_compiler.nn: LIF dynamics against hand-worked traces, surrogate gradients, run/reset,
a tiny training loop, and the single-node torch.export form the compiler reads."""
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from snn_compiler.nn import LIF, fast_sigmoid, reset, run, sigmoid_surrogate  # noqa: E402


def trace(lif, x, steps):
    spikes, vs = [], []
    for _ in range(steps):
        spikes.append(lif(x).flatten().tolist())
        vs.append(lif.v.flatten().tolist())
    return spikes, vs


# beta=0.5, threshold=1, x=0.6: v = 0.6, 0.3+0.6=0.9, 0.45+0.6=1.05 -> spike, then
#   subtract: 0.05 -> 0.025+0.6=0.625 -> 0.3125+0.6=0.9125 -> 0.45625+0.6=1.05625 -> spike -> 0.05625
#   zero:     0    -> 0.6 -> 0.9 -> 1.05 -> spike -> 0
@pytest.mark.parametrize("mode, v_expected", [
    ("subtract", [0.6, 0.9, 0.05, 0.625, 0.9125, 0.05625]),
    ("zero", [0.6, 0.9, 0.0, 0.6, 0.9, 0.0]),
])
def test_lif_hand_trace(mode, v_expected):
    lif = LIF(0.5, threshold=1.0, reset=mode)
    assert lif.v is None and lif.threshold == 1.0 and lif.reset == mode
    spikes, vs = trace(lif, torch.full((1, 1), 0.6), 6)
    assert [s[0] for s in spikes] == [0, 0, 1, 0, 0, 1]
    assert [v[0] for v in vs] == pytest.approx(v_expected, abs=1e-6)


def test_lif_threshold_scales_reset():
    # beta=1, threshold=2, x=1.5: v = 1.5, 3.0 -> spike -> 1.0, 2.5 -> spike -> 0.5, 2.0 -> spike -> 0.0
    lif = LIF(1.0, threshold=2.0)
    spikes, vs = trace(lif, torch.tensor([[1.5]]), 4)
    assert [s[0] for s in spikes] == [0, 1, 1, 1]
    assert [v[0] for v in vs] == [1.5, 1.0, 0.5, 0.0]


def test_lif_per_channel_beta_conv_shape():
    # (B, C, H, W) = (2, 2, 2, 2) with x=0.75 everywhere; dyadic numbers, so exact.
    # ch0 beta=0.5: v = 0.75, 1.125->0.125, 0.8125, 1.15625->0.15625, 0.828125, 1.1640625->0.1640625
    # ch1 beta=1.0: v = 0.75, 1.5->0.5, 1.25->0.25, 1.0->0.0, 0.75, 1.5->0.5
    lif = LIF([0.5, 1.0])
    assert lif.beta.shape == (2,)
    x = torch.full((2, 2, 2, 2), 0.75)
    s0, v0, s1, v1 = [], [], [], []
    for _ in range(6):
        s = lif(x)
        assert s.shape == x.shape and lif.v.shape == x.shape
        for c, (sl, vl) in enumerate([(s0, v0), (s1, v1)]):
            assert (s[:, c] == s[0, c, 0, 0]).all() and (lif.v[:, c] == lif.v[0, c, 0, 0]).all()
            sl.append(s[0, c, 0, 0].item())
            vl.append(lif.v[0, c, 0, 0].item())
    assert s0 == [0, 1, 0, 1, 0, 1]
    assert v0 == [0.75, 0.125, 0.8125, 0.15625, 0.828125, 0.1640625]
    assert s1 == [0, 1, 1, 1, 0, 1]
    assert v1 == [0.75, 0.5, 0.25, 0.0, 0.75, 0.5]


def test_lif_per_feature_beta_dense_shape():
    # (B, F) input: beta[f] applies to feature f. beta=(0, 1), x=0.6: feature 0 never integrates.
    lif = LIF(torch.tensor([0.0, 1.0]))
    spikes, _ = trace(lif, torch.tensor([[0.6, 0.6]]), 3)
    assert spikes == [[0, 0], [0, 1], [0, 0]]  # f1: 0.6, 1.2 -> 0.2, 0.8


def test_surrogate_gradients():
    x = torch.tensor([0.0, 0.04, -0.2, 1.0], requires_grad=True)
    s = fast_sigmoid(x)
    assert s.tolist() == [1, 1, 0, 1]
    (g,) = torch.autograd.grad(s.sum(), x)
    # slope / (1 + slope |x|)^2 with slope 25: 25/1, 25/2^2, 25/6^2, 25/26^2
    assert g.tolist() == pytest.approx([25.0, 6.25, 25 / 36, 25 / 676])
    (g,) = torch.autograd.grad(fast_sigmoid(x, slope=1.0).sum(), x)
    assert g.tolist() == pytest.approx([1.0, 1 / 1.04 ** 2, 1 / 1.44, 0.25])

    x = torch.tensor([0.0, 0.4, -1.0], requires_grad=True)
    s = sigmoid_surrogate(x)
    assert s.tolist() == [1, 1, 0]
    (g,) = torch.autograd.grad(s.sum(), x)
    # 5 sig(5x) (1 - sig(5x)): x=0 -> 5/4; x=0.4 -> sig(2)=0.880797 -> 5*0.880797*0.119203
    assert g.tolist() == pytest.approx([1.25, 5 * 0.8807971 * 0.1192029, 5 * 0.0066929 * 0.9933071], rel=1e-5)


def test_lif_gradient_and_detached_reset():
    # one step from rest: s = H(x - 1), ds/dx = 25 / (1 + 25 |x - 1|)^2 = 6.25 at x = 0.96
    x = torch.tensor([[0.96]], requires_grad=True)
    (g,) = torch.autograd.grad(LIF(0.5)(x).sum(), x)
    assert g.item() == pytest.approx(6.25)
    # two steps: x0=1.2 spikes (v -> 0.2), x1=0.7 gives v=0.8, s1=H(-0.2), H' = 25/36.
    # With the reset detached, ds1/dx0 = beta * 25/36 only (no -threshold * H'(0.2) term).
    lif = LIF(0.5)
    x0 = torch.tensor([[1.2]], requires_grad=True)
    lif(x0)
    s1 = lif(torch.tensor([[0.7]]))
    (g,) = torch.autograd.grad(s1.sum(), x0)
    assert g.item() == pytest.approx(0.5 * 25 / 36)


def test_learn_beta_is_a_parameter():
    lif = LIF([0.5, 0.9], learn_beta=True)
    assert [n for n, _ in lif.named_parameters()] == ["beta"]
    assert [n for n, _ in LIF(0.5).named_buffers()] == ["beta"]
    lif(torch.ones(1, 2))
    lif(torch.ones(1, 2)).sum().backward()
    assert lif.beta.grad is not None


def test_bad_arguments():
    with pytest.raises(ValueError, match="subtract.*zero"):
        LIF(0.5, reset="none")
    with pytest.raises(ValueError, match="threshold"):
        LIF(0.5, threshold=0.0)
    with pytest.raises(ValueError, match="beta"):
        LIF(1.5)


def test_reset_clears_state():
    net = nn.Sequential(nn.Linear(3, 4), LIF(0.9), nn.Linear(4, 2), LIF(0.8, reset="zero"))
    net(torch.ones(1, 3))
    assert all(m.v is not None for m in net if isinstance(m, LIF))
    assert reset(net) is net
    assert all(m.v is None for m in net if isinstance(m, LIF))


def test_run_equals_manual_loop():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), LIF(0.9), nn.Linear(8, 3), LIF([0.5, 0.7, 0.9]))
    x = torch.rand(4, 5) * 2
    net(x)  # stale state must not leak into run()
    counts = run(net, x, 10)
    reset(net)
    manual = sum(net(x) for _ in range(10))
    assert torch.equal(counts, manual) and counts.sum() > 0
    with torch.no_grad():
        assert torch.equal(run(net, x, 10), manual)
    with pytest.raises(ValueError):
        run(net, x, 0)


def test_training_lowers_loss():
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    y = (x[:, 0] + x[:, 1] > 0).long()  # linearly separable
    net = nn.Sequential(nn.Linear(2, 16), LIF(0.9), nn.Linear(16, 2), LIF(0.9))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(run(net, x, 8), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # 0.77 -> 0.005 with this seed


def lif_nodes(ep):
    return [n for n in ep.graph.nodes if n.op == "call_function" and n.target is torch.ops.snnc.lif.default]


def test_export_dense_single_lif_node():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), LIF(0.9))
    ep = torch.export.export(model, (torch.zeros(1, 2, 2),))
    (node,) = lif_nodes(ep)
    x_arg, beta_arg, threshold, mode = node.args
    assert x_arg.target is torch.ops.aten.linear.default
    assert (threshold, mode) == (1.0, "subtract")
    # beta is a lifted buffer: a placeholder the signature maps to the module's buffer
    assert beta_arg.op == "placeholder"
    fqn = ep.graph_signature.inputs_to_buffers[beta_arg.name]
    assert fqn == "2.beta" and ep.state_dict[fqn].tolist() == pytest.approx([0.9])
    assert model[2].v is None  # export does not touch the state


def test_export_conv_per_channel_and_save_load(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), LIF([0.5, 0.25], threshold=0.5, reset="zero"))
    ep = torch.export.export(model, (torch.zeros(1, 1, 5, 5),))
    (node,) = lif_nodes(ep)
    assert node.args[2:] == (0.5, "zero")
    fqn = ep.graph_signature.inputs_to_buffers[node.args[1].name]
    assert ep.state_dict[fqn].tolist() == [0.5, 0.25]

    path = tmp_path / "lif.pt2"
    torch.export.save(ep, path)
    loaded = torch.export.load(path)
    (node,) = lif_nodes(loaded)
    assert node.args[2:] == (0.5, "zero")
    assert loaded.state_dict[loaded.graph_signature.inputs_to_buffers[node.args[1].name]].tolist() == [0.5, 0.25]
    # the op's eager meaning: one step from rest, s = (conv(x) >= threshold)
    x = torch.randn(1, 1, 5, 5)  # exported with a static batch of 1
    assert torch.equal(loaded.module()(x), (model[0](x) >= 0.5).float())


def test_op_is_one_step_from_rest():
    x = torch.randn(3, 4)
    lif = LIF(0.7, threshold=0.3)
    assert torch.equal(torch.ops.snnc.lif(x, torch.tensor([0.7]), 0.3, "subtract"), lif(x))
