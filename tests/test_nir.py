"""NIR export and the round trip (snn_compiler.frontend.nir; import of other libraries' graphs and
the refusals: test_nir_import.py).

- Round trip: a compiled network -> NIR (float form) -> import -> compile gives the same integer
  weights, thresholds, decays and the same integer spikes, layer by layer (trained LIF and CubaLIF
  nets with either reset, a converted ReLU CNN with --v-init half); the int form too for trained
  nets. A CUBA net's float form re-imports to the same IR (CubaLIF with tau_syn = dt 4096/decay_u).
- The int form is the integer SNN in NIR's own terms: a hand-written simulation of NIR's
  equations on the exported file reproduces the integer SNN's spikes exactly (IF layers, reset to 0).
"""
import io
import warnings

import numpy as np
import pytest

nir = pytest.importorskip("nir")
h5py = pytest.importorskip("h5py")
torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from snn_compiler import nn as snn  # noqa: E402
from snn_compiler.frontend import nir as snnc_nir  # noqa: E402
from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import from_module  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.sim.emulator import simulate  # noqa: E402
from snn_compiler.sim.encode import quantize_input  # noqa: E402
from nir_helpers import DT, T, nir_run  # noqa: E402



# ---- networks ----------------------------------------------------------------------------------

def _mlp(reset="subtract", beta=0.9):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 24), snn.LIF(beta, reset=reset), nn.Linear(24, 5),
                         snn.LIF([0.8, 0.7, 0.9, 0.95, 0.85] if beta != 1.0 else 1.0, reset=reset))


def _cnn(reset="subtract", beta=None):
    torch.manual_seed(1)
    b1 = torch.tensor([0.9, 0.8, 0.7, 0.95]) if beta is None else beta
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), snn.LIF(b1, reset=reset), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 5), snn.LIF(0.85 if beta is None else beta, threshold=0.5, reset=reset))


def _cuba_mlp(reset="subtract"):
    """CubaLIF layers (current memory): a slow synapse (decay_u 41) and a fast one (1024); no bias
    (a CUBA layer's bias enters the current in float, the membrane in the integer step)."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 24, bias=False), snn.CubaLIF(1 - 41 / 4096, 0.9, reset=reset),
                         nn.Linear(24, 5, bias=False), snn.CubaLIF(0.75, [0.8, 0.7, 0.9, 0.95, 0.85], reset=reset))


def _relu_cnn():
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 6, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(24, 5))


def _x(n=64, seed=0):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def _compiled(net, x, **kw):
    return compile_model(from_module(net, tuple(x.shape[1:])),
                         CompileConfig(bits=8, calibration=x.numpy(), timesteps=T, **kw))


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


def _through_file(q, tmp_path, form, **load):
    path = tmp_path / f"net.{form}.nir"
    _quiet(snnc_nir.write_nir, q, path, form)
    return _quiet(snnc_nir.load_nir, path, **load)


def _int_fields(q):
    out = {}
    for n in q:
        op = q.nodes[n]["op"]
        if isinstance(op, O.WEIGHTED):
            out[n] = ("w", O.effective_weights(op).tolist())
        elif isinstance(op, O.Neuron):
            out[n] = ("n", int(op.threshold), np.asarray(op.bias).tolist(), int(op.v_init), op.reset, op.decay_u,
                      None if op.decay_v is None else op.decay_v.tolist())
    return out


def _same_spikes(a_graph, b_graph, x):
    a = simulate(a_graph, x, timesteps=T, readout="count", record=True)
    b = simulate(b_graph, x, timesteps=T, readout="count", record=True)
    assert sorted(a.counts) == sorted(b.counts)
    for k in a.counts:
        assert np.array_equal(a.counts[k], b.counts[k]), k
    assert np.array_equal(a.scores, b.scores)
    ma = simulate(a_graph, x, timesteps=T, readout="membrane")
    mb = simulate(b_graph, x, timesteps=T, readout="membrane")
    assert np.array_equal(ma.scores, mb.scores)
    return a


# ---- round trips -------------------------------------------------------------------------------

@pytest.mark.parametrize("make,kw", [(_mlp, {"reset": "subtract"}), (_mlp, {"reset": "zero"}),
                                     (_cnn, {"reset": "subtract"}), (_cnn, {"reset": "zero"}), (_relu_cnn, {}),
                                     (_cuba_mlp, {"reset": "subtract"}), (_cuba_mlp, {"reset": "zero"})],
                         ids=["lif-mlp-subtract", "lif-mlp-zero", "lif-cnn-subtract", "lif-cnn-zero", "relu-cnn",
                              "cuba-mlp-subtract", "cuba-mlp-zero"])
def test_float_form_round_trip_gives_the_same_integer_spikes(make, kw, tmp_path):
    """Must-show: compile -> export (float form) -> import -> compile: the same integer network and
    the same integer spikes in every layer. No calibration data the second time: the file records
    the input scale, and every layer's scale is its (normalised) threshold."""
    x = _x()
    q = _compiled(make(**kw), x)
    g = _through_file(q, tmp_path, "float")
    q2 = compile_model(g, CompileConfig(bits=8, timesteps=T))
    assert _int_fields(q2) == _int_fields(q)
    r = _same_spikes(q, q2, x.numpy())
    assert sum(int(c.sum()) for c in r.counts.values()) > 0


@pytest.mark.parametrize("make", [_mlp, _cnn, _cuba_mlp])
def test_int_form_round_trip_of_a_trained_network(make, tmp_path):
    x = _x()
    q = _compiled(make(), x)
    q2 = compile_model(_through_file(q, tmp_path, "int"), CompileConfig(bits=8, timesteps=T))
    assert _int_fields(q2) == _int_fields(q)
    _same_spikes(q, q2, x.numpy())


def test_int_form_of_a_converted_network_warns_that_v_init_is_lost(tmp_path):
    q = _compiled(_relu_cnn(), _x())
    path = tmp_path / "net.nir"
    _quiet(snnc_nir.write_nir, q, path, "int")
    with pytest.warns(UserWarning, match="non-zero membrane"):
        snnc_nir.load_nir(path)


def test_int_form_is_the_integer_snn_in_nir_terms():
    """IF layers with reset to zero: NIR's own equations (v += r I, spike on v > v_threshold, reset
    to v_reset) on the int-form file, fed the graded integer input x_q, give the integer SNN's
    spikes exactly. The synaptic pool is a SumPool2d, weights are weight_int << weight_exp."""
    x = _x(48)
    q = _compiled(_cnn(reset="zero", beta=1.0), x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing NIR cannot say: reset zero, v_init 0, no leak
        g = nir.read(io.BytesIO(snnc_nir.nir_bytes(q, "int")))  # a standard, type-checking read
    kinds = {type(n).__name__ for n in g.nodes.values()}
    assert {"SumPool2d", "IF"} <= kinds and "AvgPool2d" not in kinds and "LIF" not in kinds
    assert np.array_equal(g.nodes["0"].weight, O.effective_weights(q.nodes["0"]["op"]))
    inp = q.nodes["input"]["op"]
    assert g.metadata["snnc"]["input_levels"] == inp.levels and g.metadata["snnc"]["form"] == "int"
    ref = simulate(q, x.numpy(), timesteps=T, readout="count", record=True)
    got = nir_run(g, quantize_input(inp, x.numpy()), T, DT)
    for layer in ("1.lif", "5.lif"):
        assert np.array_equal(got[layer], ref.counts[layer]), layer
    assert got["5.lif"].sum() > 0


def test_float_form_of_a_reset_zero_lif_net_is_the_float_snn_in_nir_terms():
    """A trained LIF network with reset to zero is exactly what NIR's LIF says: forward Euler at
    the exported dt on the float-form file reproduces the float SNN's spikes."""
    x = _x(48)
    q = _compiled(_mlp(reset="zero"), x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = nir.read(io.BytesIO(snnc_nir.nir_bytes(q, "float")))
    ref = simulate(q, x.numpy(), mode="float", timesteps=T, readout="count", record=True)
    got = nir_run(g, x.numpy(), T, g.metadata["snnc"]["dt"])
    for layer in ("2.lif", "4.lif"):
        assert np.array_equal(got[layer], ref.counts[layer]), layer


# ---- export details ----------------------------------------------------------------------------

def test_export_is_deterministic_and_records_what_nir_cannot_say():
    q = _compiled(_relu_cnn(), _x())
    with pytest.warns(UserWarning, match="reset by subtraction.*initial membrane"):
        a = snnc_nir.nir_bytes(q, "float")
    assert _quiet(snnc_nir.nir_bytes, q, "float") == a
    g = nir.read(io.BytesIO(a))
    assert type(g.nodes["2"]).__name__ == "AvgPool2d"
    md = g.nodes["1"].metadata["snnc"]
    assert md["reset"] == "subtract" and md["v_init"] == 0.5 and not md["trained"]
    assert g.metadata["snnc"]["dt"] == snnc_nir.DEFAULT_DT and g.metadata["snnc"]["input_scale"] > 0
    with pytest.raises(snnc_nir.NIRError, match="reset by subtraction"):
        snnc_nir.export_nir(q, "float", strict=True)


def test_lif_export_follows_snntorch_convention():
    q = _compiled(_mlp(reset="zero"), _x())
    g = snnc_nir.export_nir(q, "float", dt=1e-3)
    lif = g.nodes["2.lif"]
    assert isinstance(lif, nir.LIF)
    np.testing.assert_allclose(lif.tau, 1e-3 / (1 - 0.9), rtol=1e-6)  # beta was a float32 buffer
    np.testing.assert_allclose(lif.r, lif.tau / 1e-3)
    assert np.all(lif.v_threshold == 1.0) and np.all(lif.v_reset == 0) and np.all(lif.v_leak == 0)
    assert lif.tau.shape == (24,)  # per neuron, never 0-d (nir's infer_types fails on 0-d parameters)


def test_export_refuses_an_uncompiled_graph():
    g = from_module(_mlp(), (1, 4, 4))
    with pytest.raises(snnc_nir.NIRError, match="compiled"):
        snnc_nir.export_nir(g, "float")
    with pytest.raises(snnc_nir.NIRError, match="form must be"):
        snnc_nir.export_nir(_compiled(_mlp(), _x()), "fixed")


def test_a_cuba_net_exports_as_cubalif_and_reimports_to_the_same_ir(tmp_path):
    """The float form writes each CUBA layer as NIR CubaLIF (snnTorch's Synaptic convention:
    tau_syn = dt/(1-alpha), w_in = tau_syn/dt, tau_mem = dt/(1-beta), r = tau_mem/dt) and reads
    back the same neurons (decay_u, beta, reset, threshold scale) and the same weights."""
    x = _x()
    q = _compiled(_cuba_mlp("zero"), x)
    ng = _quiet(snnc_nir.export_nir, q, "float")
    cubas = {k: v for k, v in ng.nodes.items() if type(v).__name__ == "CubaLIF"}
    assert len(cubas) == 2
    np.testing.assert_allclose(cubas["2.cubalif"].tau_syn, DT * 4096 / 41)
    np.testing.assert_allclose(cubas["2.cubalif"].w_in * DT, cubas["2.cubalif"].tau_syn)
    g = _through_file(q, tmp_path, "float")
    for n in q:
        a, b = q.nodes[n]["op"], g.nodes[n]["op"]
        assert type(a) is type(b), n
        if isinstance(a, O.Neuron):
            assert (b.decay_u, b.reset, b.readout, b.spike_value) == (a.decay_u, a.reset, a.readout, 1.0), n
            np.testing.assert_allclose(b.beta, a.beta, rtol=1e-12)
            assert b.scale == pytest.approx(1.0)  # the float form's threshold: weights already normalised
        elif isinstance(a, O.WEIGHTED):
            scale = q.nodes["input"]["op"].scale if n == "1" else 1.0  # the file takes x, the float SNN x / scale
            np.testing.assert_allclose(b.weight, a.weight / scale, rtol=1e-12)
