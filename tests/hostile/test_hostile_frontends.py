"""Hostile and broken model files for the NIR, Keras and torch frontends: each is refused by the CLI
with one line that names the file and the cause (and, for a bad value, the node or layer), never a
traceback, a recursion error, a silent default or an "internal error"."""
import json

import numpy as np
import pytest

from .tools import assert_refused, snnc

nir = pytest.importorskip("nir")
h5py = pytest.importorskip("h5py")


def _lif_graph(neuron=None, weight=None):
    lif = neuron or nir.LIF(tau=np.full(3, 1e-3), r=np.full(3, 10.0), v_leak=np.zeros(3), v_threshold=np.ones(3),
                            v_reset=np.zeros(3))
    return nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2])),
                               "fc": nir.Linear(weight=np.ones((3, 2)) if weight is None else weight), "lif": lif,
                               "output": nir.Output(output_type=np.array([3]))},
                        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)


def _compile(model, *flags):
    return snnc("compile", model, *flags, "-o", model.parent / "out.snnc")


def test_a_missing_nir_file_is_said_not_to_exist(tmp_path):
    line = assert_refused(_compile(tmp_path / "x.nir", "--dt", "1e-4"), "x.nir", "does not exist")
    assert "--dt applies" not in line
    assert not (tmp_path / "out.snnc").exists()


def test_a_truncated_nir_file_is_named_and_called_truncated(tmp_path):
    whole = tmp_path / "whole.nir"
    nir.write(str(whole), _lif_graph())
    cut = tmp_path / "cut.nir"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert_refused(_compile(cut, "--dt", "1e-4"), "cut.nir", "truncated")


@pytest.mark.parametrize("neuron,field", [
    (lambda: nir.LIF(tau=np.full(3, np.inf), r=np.full(3, 10.0), v_leak=np.zeros(3), v_threshold=np.ones(3),
                     v_reset=np.zeros(3)), "tau"),
    (lambda: nir.LIF(tau=np.full(3, 1e-3), r=np.array([10.0, np.inf, 10.0]), v_leak=np.zeros(3),
                     v_threshold=np.ones(3), v_reset=np.zeros(3)), "r"),
    (lambda: nir.CubaLIF(tau_syn=np.full(3, np.inf), tau_mem=np.full(3, 1e-3), r=np.full(3, 10.0),
                         v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3), w_in=np.ones(3)), "tau_syn"),
], ids=["LIF tau=inf", "LIF r=inf", "CubaLIF tau_syn=inf"])
def test_a_non_finite_neuron_parameter_is_refused_naming_the_node(tmp_path, neuron, field):
    """tau = inf used to compile to a layer of zero weights (10% accuracy) without a word."""
    path = tmp_path / "net.nir"
    nir.write(str(path), _lif_graph(neuron()))
    assert_refused(_compile(path, "--dt", "1e-4"), "net.nir", "'lif'", field, "non-finite")


def test_nan_weights_in_a_nir_file_are_refused_naming_the_node(tmp_path):
    path = tmp_path / "net.nir"
    nir.write(str(path), _lif_graph(weight=np.array([[1.0, np.nan], [1, 1], [1, 1]])))
    line = assert_refused(_compile(path, "--dt", "1e-4"), "net.nir", "'fc'", "weight", "NaN")
    assert "internal error" not in line


def test_dt_for_a_file_that_is_not_nir_is_refused_naming_its_format(tmp_path):
    from keras_helpers import write_sequential
    path = tmp_path / "dense.h5"
    write_sequential(path, (4,), [("Dense", {"name": "d", "units": 2, "activation": "linear", "use_bias": True},
                                   [("kernel", np.ones((4, 2))), ("bias", np.zeros(2))])])
    assert_refused(_compile(path, "--dt", "1e-4"), "dense.h5", "Keras", "applies to NIR files only")


def _conv_model(path, groups):
    from keras_helpers import write_sequential
    conv = {"name": "conv", "filters": 2, "kernel_size": [3, 3], "strides": [1, 1], "padding": "valid",
            "data_format": "channels_last", "dilation_rate": [1, 1], "groups": groups, "activation": "relu",
            "use_bias": True}
    write_sequential(path, (6, 6, 2), [
        ("Conv2D", conv, [("kernel", np.ones((3, 3, 2, 2))), ("bias", np.zeros(2))]),
        ("Flatten", {"name": "flat", "data_format": "channels_last"}, []),
        ("Dense", {"name": "d", "units": 2, "activation": "linear", "use_bias": True},
         [("kernel", np.ones((32, 2))), ("bias", np.zeros(2))])])


@pytest.mark.parametrize("groups", [0, -1, 1.5, None])
def test_keras_groups_is_validated_not_replaced_by_one(tmp_path, groups):
    path = tmp_path / "conv.h5"
    _conv_model(path, groups)
    assert_refused(_compile(path), "conv.h5", "'conv'", "groups")


def test_a_deeply_nested_keras_config_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "deep.h5"
    _conv_model(path, 1)
    for depth in (100, 5000):  # beyond the config limit, and beyond Python's recursion limit
        with h5py.File(path, "a") as f:
            cfg = json.loads(f.attrs["model_config"])
            cfg["config"]["layers"][1]["config"]["extra"] = "@@"
            f.attrs["model_config"] = json.dumps(cfg).replace('"@@"', '{"a": ' * depth + "1" + "}" * depth)
        line = assert_refused(_compile(path), "deep.h5", "nests")
        assert "recursion" not in line


def test_nan_weights_in_a_torch_file_are_refused_naming_the_layer(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[2].bias[1] = float("inf")
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 4),)), str(path))
    line = assert_refused(_compile(path), "net.pt2", "Linear", "bias", "infinite")
    assert "internal error" not in line and " 2 (" in line  # the module path of the layer
