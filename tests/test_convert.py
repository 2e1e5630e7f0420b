"""The one-call API (snn_compiler.convert) and the defaults a new user meets on the CLI."""
import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import snn_compiler
from snn_compiler import artifact
from snn_compiler.compile import compile_model
from snn_compiler.config import CompileConfig
from snn_compiler.frontend import from_module
from snn_compiler.passes import PassError
from snn_compiler.sim.emulator import simulate

from hostile.tools import snnc


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def _data(n=64):
    return torch.rand(n, 1, 8, 8)


def test_convert_equals_the_pipeline_it_wraps():
    net, x = _net(), _data()
    snn = snn_compiler.convert(net, x, timesteps=16, percentile=99.9, bits=8)
    q = compile_model(from_module(net, (1, 8, 8)), CompileConfig(bits=8, norm="percentile:99.9",
                                                                 calibration=x.numpy(), timesteps=16))
    ref = simulate(q, x.numpy(), timesteps=16, readout="count")
    assert np.array_equal(snn.run(x), ref.scores.astype(np.int64))          # torch tensor in
    assert np.array_equal(snn.run(x.numpy()), ref.scores.astype(np.int64))  # numpy in
    assert np.array_equal(snn.classify(x), simulate(q, x.numpy(), timesteps=16).predictions)
    y = snn.classify(x)
    assert snn.accuracy(x, torch.from_numpy(y)) == 1.0
    assert "Conv2d" in repr(snn) and "timesteps=16" in repr(snn)
    assert snn.graph.graph["snnc"]["norm"] == "percentile:99.9"


def test_convert_saves_an_artifact_the_cli_reads(tmp_path):
    snn = snn_compiler.convert(_net(), _data(), timesteps=8)
    snn.save(tmp_path / "n.snnc")
    again = snn_compiler.SNN.load(tmp_path / "n.snnc")
    x = _data(5)
    assert again.timesteps == 8 and np.array_equal(again.run(x), snn.run(x))


def test_scale_factors_as_list_or_dict_by_name_or_index():
    net, x = _net(), _data()
    base = snn_compiler.convert(net, x)
    layers = [n for n in base.graph if type(base.graph.nodes[n]["op"]).__name__ == "Neuron"]
    scale = {n: base.graph.nodes[n]["op"].scale for n in layers}
    for factors in ([2.0], {0: 2.0}, {layers[0]: 2.0}, {"0": 2.0}):
        g = snn_compiler.convert(net, x, scale_factors=factors).graph
        assert g.nodes[layers[0]]["op"].scale == pytest.approx(2 * scale[layers[0]])
        assert g.nodes[layers[1]]["op"].scale == pytest.approx(scale[layers[1]])
    with pytest.raises(PassError, match="there are 3 neuron layers"):
        snn_compiler.convert(net, x, scale_factors={9: 2.0})


def test_without_calibration_data_the_model_norm_is_used_and_warned():
    net = _net()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        snn = snn_compiler.convert(net, input_shape=(1, 8, 8))
    assert any("no calibration data" in str(m.message) for m in w)
    assert snn.graph.graph["snnc"]["norm"] == "model"  # the distribution estimate (tests/passes/test_normalize.py)
    # --norm bound, Diehl et al.'s: the first layer's scale is its largest sum of positive weights plus bias
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = snn_compiler.convert(net, input_shape=(1, 8, 8), norm="bound").graph
    conv = net[0]
    bound = (conv.weight.clamp(min=0).sum(dim=(1, 2, 3)) + conv.bias.clamp(min=0)).max().item()
    first = next(n for n in g if type(g.nodes[n]["op"]).__name__ == "Neuron")
    assert g.nodes[first]["op"].scale == pytest.approx(bound, rel=1e-6)


def test_cli_defaults_a_new_user_meets(tmp_path):
    net, x = _net(), _data(40)
    torch.jit.save(torch.jit.script(net), str(tmp_path / "m.pt"))
    np.savez(tmp_path / "calib.npz", x=x.numpy())
    np.savez(tmp_path / "test.npz", x=x.numpy(), y=np.zeros(40, np.int64))
    # the input shape comes from the calibration data when the TorchScript file lacks it
    p = snnc("compile", "m.pt", "--calibration", "calib.npz", "-o", "a.snnc", "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["bits"] == 8 and info["norm"] == "percentile:99.9" and info["output"] == "a.snnc"
    # no data at all: the message names the flag as the flag takes it
    p = snnc("compile", "m.pt", "-o", "b.snnc", cwd=tmp_path)
    assert p.returncode == 1 and "--input-shape 1,28,28" in p.stderr
    # no calibration data: data-free normalization, with a warning
    p = snnc("compile", "m.pt", "--input-shape", "1,8,8", "-o", "c.snnc", cwd=tmp_path)
    assert p.returncode == 0 and "no calibration data" in p.stderr and "norm model" in p.stdout
    assert artifact.load(tmp_path / "c.snnc").graph["snnc"]["norm"] == "model"
    p = snnc("simulate", "a.snnc", "--data", "test.npz", "--timesteps", "4,8", "--json", cwd=tmp_path)
    rows = json.loads(p.stdout)["results"]
    assert [r["timesteps"] for r in rows] == [4, 8] and all("accuracy" in r for r in rows)
    p = snnc("simulate", "a.snnc", "--data", "test.npz", "--backend", "ann", cwd=tmp_path)
    assert "T=" not in p.stdout and "sample*timesteps/s" not in p.stdout
    p = snnc("--version")
    assert p.returncode == 0 and p.stdout.startswith("snnc ")


def test_truenorth_defaults_to_the_weight_format_it_maps(tmp_path):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3)).eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "m.pt"))
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).random((30, 12)))
    p = snnc("compile", "m.pt", "--calibration", "calib.npz", "--target", "truenorth", "--input-bits", "1",
             "-o", "t.snnc", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert artifact.load(tmp_path / "t.snnc").graph["snnc"]["bits"] == 4


@pytest.mark.parametrize("kw, words", [
    (dict(timesteps=0), "--timesteps"), (dict(bits=0), "--bits"), (dict(timesteps=20000), "1..10000"),
    (dict(bits=8.5), "--bits"), (dict(input_bits=0), "--input-bits"),
])
def test_convert_refuses_zero_and_out_of_range_options(kw, words):
    """convert(timesteps=0) or bits=0 is a value, refused (before: replaced by the default)."""
    with pytest.raises(ValueError, match=words):
        snn_compiler.convert(_net(), _data(8), **kw)


def test_run_with_zero_timesteps_is_refused_not_the_snns():
    snn = snn_compiler.convert(_net(), _data(8), timesteps=4)
    with pytest.raises(ValueError, match="timesteps"):
        snn.run(_data(2), timesteps=0)
    with pytest.raises(ValueError, match="encoding"):
        snn.run(_data(2), encoding="")


def test_an_empty_pass_list_runs_no_pass():
    from snn_compiler.passes import run_pipeline
    g = from_module(_net(), (1, 8, 8))
    before = {n: type(g.nodes[n]["op"]).__name__ for n in g}
    run_pipeline(g, CompileConfig(), [])
    assert {n: type(g.nodes[n]["op"]).__name__ for n in g} == before and "quantized" not in g.graph["snnc"]


def test_a_model_in_training_mode_is_converted_as_in_eval_mode_said_and_left_training():
    """The state right after a training loop: converted as model.eval() runs it (BatchNorm running
    statistics, no dropout), with a warning, and the module stays in training mode (before: no
    word of it)."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(12, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Dropout(0.5), nn.Linear(10, 3))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    x = torch.rand(30, 12)
    with pytest.warns(UserWarning, match="training mode.*converted as in eval mode"):
        snn = snn_compiler.convert(net, x, timesteps=8)
    assert all(m.training for m in net.modules())
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # an eval-mode model converts without the warning
        ref = snn_compiler.convert(net.eval(), x, timesteps=8)
    assert np.array_equal(snn.run(x), ref.run(x))


def test_accuracy_and_classify_take_any_backend_by_name():
    net, x = _net(), _data(20)
    snn = snn_compiler.convert(net, x, timesteps=8)
    with torch.no_grad():
        y = net(x).argmax(1)
    assert snn.accuracy(x, y, backend="ann") == 1.0   # the network read as an ANN: the torch model's own
    assert snn.accuracy(x, y, backend="reference") == snn.accuracy(x, y)
    assert np.array_equal(snn.classify(x, backend="float"), simulate(snn.graph, x.numpy(), mode="float",
                                                                     timesteps=8).predictions)
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        snn.accuracy(x, y, backend="nope")
    with pytest.raises(ValueError, match="no .*spike counts|has none"):
        snn.run(x, backend="ann")
