"""snn_compiler.nn.CubaLIF(recurrent=N): trained with surrogate gradients, exported as one
snnc::rcubalif op, compiled into the IR's cycle (Delay, Dense, Add), and run by the float SNN spike
for spike as the torch module steps it."""
import numpy as np
import pytest
import torch
from torch import nn

from snn_compiler import nn as snn
from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.frontend import from_module, load_file
from snn_compiler.ir import is_recurrent
from snn_compiler.ir import ops as O
from snn_compiler.sim.emulator import simulate

T = 40
SLOW = 1 - 41 / 4096


def _rnn(reset="zero", seed=0, gain=4.0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(12, 16, bias=False), snn.CubaLIF(SLOW, 0.9, recurrent=16, reset=reset),
                        nn.Linear(16, 4, bias=False), snn.CubaLIF(0.75, 0.9, reset=reset))
    with torch.no_grad():
        net[1].rec.weight.mul_(gain)  # strong enough that the recurrence changes the spikes
    return net


def _torch_counts(net, x):
    snn.reset(net)
    with torch.no_grad():
        return sum(net(x[:, t]) for t in range(x.shape[1])).numpy()


def _events(n=32, seed=0):
    return (torch.rand(n, T, 12, generator=torch.Generator().manual_seed(seed)) < 0.3).double()


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_the_float_snn_is_the_recurrent_torch_module_spike_for_spike(reset):
    net = _rnn(reset).double()
    x = _events()
    ref = _torch_counts(net, x)
    g = from_module(net.float(), (12,))
    assert is_recurrent(g)
    op = g.nodes["1.rcubalif.delay"]["op"]
    assert isinstance(op, O.Delay) and op.steps == 1 and list(g.predecessors("1.rcubalif.delay")) == ["1.rcubalif"]
    q = compile_model(g, CompileConfig(bits=8, calibration=x[:, 0].numpy(), timesteps=T))
    assert np.array_equal(simulate(q, x.numpy(), mode="float", readout="count").scores, ref)
    net_off = _rnn(reset, gain=0.0).double()  # without the recurrence the spikes differ
    assert not np.array_equal(_torch_counts(net_off, x), ref)
    it = simulate(q, x.numpy(), mode="int", readout="count")
    assert np.mean(np.argmax(it.scores, 1) == np.argmax(ref, 1)) >= 0.85


def test_gradients_reach_the_recurrent_weights():
    net = _rnn()
    x = _events(8).float()
    snn.reset(net)
    out = sum(net(x[:, t]) for t in range(T))
    out.sum().backward()
    assert net[1].rec.weight.grad is not None and net[1].rec.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "16"])
def test_recurrent_must_be_a_number_of_neurons(bad):
    with pytest.raises(ValueError, match="recurrent must be the layer's number of neurons"):
        snn.CubaLIF(0.5, 0.9, recurrent=bad)


def test_a_recurrent_layer_refuses_inputs_of_another_size():
    layer = snn.CubaLIF(0.5, 0.9, recurrent=16)
    with pytest.raises(ValueError, match=r"recurrent CubaLIF of 16 neurons takes \(B, 16\) inputs, got \(2, 8\)"):
        layer(torch.zeros(2, 8))


def test_a_recurrent_pt2_file_compiles_without_trust(tmp_path):
    net = _rnn()
    ep = torch.export.export(net, (torch.zeros(1, 12),))
    assert sum("rcubalif" in str(n.target) for n in ep.graph.nodes) == 1
    torch.export.save(ep, str(tmp_path / "rnn.pt2"))
    g = load_file(tmp_path / "rnn.pt2")
    assert is_recurrent(g)
    assert np.allclose(g.nodes["1.rcubalif.rec"]["op"].weight, net[1].rec.weight.detach().numpy())
