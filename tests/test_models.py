"""snn_compiler.models: one builder for the net you train and the SNN snnc compiles from it.

Round trips: the lowered graph holds the torch module's own weights; a relu/qcfs net's ANN reading
is torch's forward; a LIF net's float SNN is torch's own T-step run (as tests/test_lif.py states it:
>= 99% of counts equal, float rounding may flip a spike at exactly threshold). Training: a few
surrogate-gradient steps lower the rate loss. Bad arguments: refused with a message naming them."""
import math

import numpy as np
import pytest
import torch

from snn_compiler import convert, models
from snn_compiler import nn as snn
from snn_compiler.frontend import from_module
from snn_compiler.ir import ops as O
from snn_compiler.sim.emulator import run_ann, simulate

BUILDERS = {
    "mlp": (lambda **kw: models.mlp(16, [24, 12], 5, **kw), (16,)),
    "cnn": (lambda **kw: models.cnn((1, 8, 8), [4, 6], 5, hidden=[12], **kw), (1, 8, 8)),
}


def _build(name, seed=0, **kw):
    make, shape = BUILDERS[name]
    torch.manual_seed(seed)
    return make(**kw), shape


def _weighted(graph):
    return {n: graph.nodes[n]["op"] for n in graph if isinstance(graph.nodes[n]["op"], (O.Dense, O.Conv2d))}


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("neuron", ["relu", "qcfs", "lif"])
def test_lowered_graph_holds_the_modules_weights(name, neuron):
    net, shape = _build(name, neuron=neuron)
    g = from_module(net, shape)
    params = dict(net.named_parameters())
    ops = _weighted(g)
    assert len(ops) == sum(isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) for m in net.modules())
    for node, op in ops.items():  # IR nodes are named after the modules
        np.testing.assert_array_equal(op.weight, params[f"{node}.weight"].detach().numpy())
        np.testing.assert_array_equal(op.bias, params[f"{node}.bias"].detach().numpy())
    kinds = [O.kind(g.nodes[n]["op"]) for n in g]
    hidden = sum(isinstance(m, (torch.nn.ReLU, snn.QCFS, snn.LIF)) for m in net.layers[:-1])
    if neuron == "lif":  # one snnc::lif per layer (the export is one step), the last the read-out
        assert kinds.count("LIF") == hidden and kinds.count("Output LIF") == 1
    else:
        assert kinds.count("IF") == hidden and kinds.count("Output") == 1


def test_same_builder_arguments_rebuild_the_same_network():
    net, shape = _build("cnn", neuron="lif", num_timesteps=4, tau=5.0)
    again, _ = _build("cnn", seed=1, neuron="lif", num_timesteps=4, tau=5.0)
    again.load_state_dict(net.state_dict())
    x = torch.rand(8, *shape)
    with torch.no_grad():
        assert torch.equal(net(x), again(x))


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("neuron", ["relu", "qcfs"])
def test_ann_reading_equals_torch_forward(name, neuron):
    net, shape = _build(name, neuron=neuron, num_timesteps=8)
    x = torch.rand(64, *shape)
    snn_ = convert(net, x, bits=8)
    assert snn_.timesteps == 8 and snn_.readout == "membrane"
    with torch.no_grad():
        want = net(x).numpy()
    got = run_ann(snn_.graph, x.numpy())
    # relu: exact up to float32 vs float64; qcfs: a staircase, so a value within rounding of a step
    # edge may land one step away on a few entries
    close = np.isclose(got, want, rtol=1e-4, atol=1e-4)
    assert close.all() if neuron == "relu" else close.mean() >= 0.99


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_lif_float_snn_is_torchs_own_run(name, reset):
    net, shape = _build(name, neuron="lif", num_timesteps=12, beta=0.85, threshold=0.5, reset=reset)
    x = torch.rand(48, *shape)
    with torch.no_grad():
        counts = net(x).numpy()
        assert np.array_equal(counts, snn.run(net.layers, x, 12).numpy())
    assert counts.sum() > 0 and counts.max() > 1  # the read-out fires: the comparison is not 0 == 0
    s = convert(net, x, bits=8)
    assert s.timesteps == 12 and s.readout == "count"
    fl = simulate(s.graph, x.numpy(), mode="float", timesteps=12, readout="count")
    assert np.mean(fl.scores == counts) >= 0.99
    # the int8 SNN: beta to 1/4096, truncated decay, 8-bit weights (tests/test_lif.py's bound)
    assert np.mean(np.abs(s.run(x) - counts) <= 1) >= 0.95


def test_tau_maps_to_beta_exp_minus_one_over_tau():
    net = models.mlp(4, [3], 2, neuron="lif", tau=4.0)
    assert all(math.isclose(float(m.beta), math.exp(-0.25), rel_tol=1e-6)
               for m in net.modules() if isinstance(m, snn.LIF))
    assert float(models.mlp(4, [3], 2, neuron="lif").layers[2].beta) == pytest.approx(models.DEFAULT_BETA)


def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_lif_training_with_surrogate_gradients_lowers_the_loss(name):
    x, y = _digits()
    x, y = x[:400], y[:400]
    torch.manual_seed(0)
    if name == "mlp":
        net = models.mlp(64, [48], 10, neuron="lif", num_timesteps=4)
    else:
        net = models.cnn((1, 8, 8), [8], 10, neuron="lif", num_timesteps=4)
        x = x.reshape(-1, 1, 8, 8)

    def loss():
        with torch.no_grad():
            return float(snn.rate_loss(net(x), y, net.num_timesteps))

    before = loss()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(3):
        for i in range(0, len(x), 50):
            step = snn.rate_loss(net(x[i:i + 50]), y[i:i + 50], net.num_timesteps)
            opt.zero_grad()
            step.backward()
            opt.step()
    after = loss()
    assert after < before - 0.1, (before, after)
    with torch.no_grad():
        assert float((net(x).argmax(1) == y).float().mean()) > 0.5


@pytest.mark.parametrize("kw, match", [
    (dict(neuron="gelu"), "neuron must be one of"),
    (dict(neuron="lif", tau=2.0, beta=0.5), "tau or beta, not both"),
    (dict(neuron="lif", tau=0.0), "tau must be a number > 0"),
    (dict(neuron="lif", beta=1.5), r"beta must be a number in \[0, 1\]"),
    (dict(neuron="lif", reset="hard"), "reset must be one of"),
    (dict(neuron="relu", tau=2.0), "tau only apply to neuron='lif'"),
    (dict(neuron="qcfs", beta=0.9), "beta only apply to neuron='lif'"),
    (dict(neuron="relu", reset="zero"), "reset only apply to neuron='lif'"),
    (dict(neuron="lif", levels=4), "levels only applies to neuron='qcfs'"),
    (dict(neuron="relu", threshold=2.0), "thresholds come from the calibration"),
    (dict(neuron="lif", threshold=0), "threshold must be a finite number > 0"),
    (dict(neuron="lif", num_timesteps=0), "num_timesteps must be a whole number >= 1"),
    (dict(neuron="lif", num_timesteps=2.5), "num_timesteps must be a whole number >= 1"),
])
def test_bad_neuron_arguments_are_refused(kw, match):
    for name in BUILDERS:
        with pytest.raises(ValueError, match=match):
            _build(name, **kw)


@pytest.mark.parametrize("call, match", [
    (lambda: models.mlp(0, [4], 2), "input_size must be a whole number >= 1"),
    (lambda: models.mlp(4, [4, -1], 2), "hidden_sizes must be whole numbers >= 1"),
    (lambda: models.mlp(4, [4], None), "output_size must be a whole number >= 1"),
    (lambda: models.cnn((8, 8), [4], 2), r"input_shape must be \(C, H, W\)"),
    (lambda: models.cnn((1, 8, 8), [], 2), "channels must hold at least one size"),
    (lambda: models.cnn((1, 6, 6), [4, 4], 2), "divisible by 2\\*\\*len\\(channels\\) = 4"),
    (lambda: models.cnn((1, 8, 8), [4], 2, kernel_size=4), "kernel_size must be odd"),
    (lambda: models.cnn((1, 8, 8), [4], 2, pool="sum"), "pool must be one of"),
    (lambda: models.cnn((1, 8, 8), [4], 2, pool="max", neuron="lif"), "max-pools spikes"),
])
def test_bad_shapes_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_max_pool_ann_converts():
    torch.manual_seed(0)
    net = models.cnn((1, 8, 8), [4, 6], 5, hidden=[12], pool="max")
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_ann(convert(net, x, bits=8).graph, x.numpy()), want, rtol=1e-4, atol=1e-4)
