"""NIR export and import (snn_compiler.frontend.nir).

- Round trip: a compiled network -> NIR (float form) -> import -> compile gives the same integer
  weights, thresholds, decays and the same integer spikes, layer by layer (trained LIF nets with
  either reset, a converted ReLU CNN with --v-init half); the int form too for trained nets.
- The int form is the integer SNN in NIR's own terms: a hand-written simulation of NIR's
  equations on the exported file reproduces the integer SNN's spikes exactly (IF layers, reset to 0).
- Graphs written by hand with the ``nir`` package in each library's convention (snnTorch: LIF with
  dt = 1e-4, tau = dt/(1-beta), r = tau/dt; CubaLIF; sinabs: IF, SumPool2d, LIF with exact decay)
  import, and their float SNN reproduces a hand-written simulation of NIR's discretised dynamics.
- What does not map is refused with the reason; files are checked before nir parses them.
"""
import io
import warnings
from graphlib import TopologicalSorter

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

DT = 1e-4
T = 16


# ---- a hand-written simulation of NIR's discretised dynamics ------------------------------------

def _ints(v):
    return tuple(int(a) for a in np.atleast_1d(v))


def nir_run(g, x, steps, dt, exact=False):
    """Run NIR graph ``g`` on the constant input current ``x`` (N, ...) for ``steps`` steps; return
    {neuron node: (N, ...) spike counts}. Forward Euler at ``dt`` (``exact``: exponential decay):

        IF       v += r I                                   (as snnTorch, Norse and sinabs step it)
        LIF      v += dt/tau (v_leak - v + r I)             (exact: v = a v + (1 - a) r I, a = exp(-dt/tau))
        CubaLIF  i += dt/tau_syn (-i + w_in I);  v += dt/tau_mem (v_leak - v + r i)
        spike where v > v_threshold, then v = v_reset.
    Affine/Linear/Conv2d/pools/Flatten compute on whole samples (Flatten of a sample)."""
    preds = {n: [] for n in g.nodes}
    for a, b in g.edges:
        preds[b].append(a)
    order = list(TopologicalSorter(preds).static_order())
    state, counts = {}, {}
    for _ in range(steps):
        val = {}
        for n in order:
            node, k = g.nodes[n], type(g.nodes[n]).__name__
            if k == "Input":
                val[n] = np.asarray(x, np.float64)
                continue
            inp = sum(val[p] for p in preds[n])
            p = {a: np.asarray(getattr(node, a), np.float64) for a in
                 ("r", "tau", "tau_mem", "tau_syn", "v_leak", "v_threshold", "v_reset", "w_in") if hasattr(node, a)}
            if k == "Output":
                val[n] = inp
            elif k in ("Affine", "Linear"):
                b = np.asarray(node.bias, np.float64) if k == "Affine" else 0.0
                val[n] = inp @ np.asarray(node.weight, np.float64).T + b
            elif k == "Conv2d":
                pad = node.padding if isinstance(node.padding, str) else _ints(node.padding)
                val[n] = torch.nn.functional.conv2d(
                    torch.from_numpy(inp), torch.from_numpy(np.asarray(node.weight, np.float64)),
                    torch.from_numpy(np.asarray(node.bias, np.float64)), _ints(node.stride), pad,
                    _ints(node.dilation), int(node.groups)).numpy()
            elif k in ("SumPool2d", "AvgPool2d"):
                val[n] = torch.nn.functional.avg_pool2d(
                    torch.from_numpy(inp), _ints(node.kernel_size), _ints(node.stride), _ints(node.padding),
                    divisor_override=1 if k == "SumPool2d" else None).numpy()
            elif k == "Flatten":
                val[n] = inp.reshape(len(inp), -1)
            elif k == "Scale":
                val[n] = inp * np.asarray(node.scale, np.float64)
            else:
                v = state.get(n, np.zeros_like(inp))
                if k == "IF":
                    v = v + p["r"] * inp
                elif k == "LIF" and exact:
                    a = np.exp(-dt / p["tau"])
                    v = a * v + (1 - a) * p["r"] * inp
                elif k == "LIF":
                    v = v + dt / p["tau"] * (p["v_leak"] - v + p["r"] * inp)
                elif k == "CubaLIF":
                    i = state.get(n + ".i", np.zeros_like(inp))
                    i = i + dt / p["tau_syn"] * (-i + p["w_in"] * inp)
                    state[n + ".i"] = i
                    v = v + dt / p["tau_mem"] * (p["v_leak"] - v + p["r"] * i)
                else:
                    raise AssertionError(k)
                s = v > p["v_threshold"]
                state[n] = np.where(s, p["v_reset"], v)
                counts[n] = counts.get(n, 0) + s.astype(np.int64)
                val[n] = s.astype(np.float64)
    return counts


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
                                     (_cnn, {"reset": "subtract"}), (_cnn, {"reset": "zero"}), (_relu_cnn, {})],
                         ids=["lif-mlp-subtract", "lif-mlp-zero", "lif-cnn-subtract", "lif-cnn-zero", "relu-cnn"])
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


@pytest.mark.parametrize("make", [_mlp, _cnn])
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


# ---- graphs written by other libraries' conventions ---------------------------------------------

def _snntorch_style(rng, scalar=False, thresholds=None, gain=1.0):
    """Affine -> LIF -> Affine -> LIF as snnTorch exports Leaky layers: tau = dt/(1-beta), r = tau/dt."""
    def lif(beta, n, thr):
        beta = np.float64(beta) if scalar else np.full(n, beta)
        tau = DT / (1 - beta)
        thr = np.asarray(1.0) if scalar else thr  # snnTorch's scalar beta/threshold give 0-d parameters
        return nir.LIF(tau=tau, r=gain * tau / DT, v_leak=np.zeros_like(tau), v_threshold=thr,
                       v_reset=np.zeros_like(tau))
    thr2 = np.ones(5) if thresholds is None else thresholds
    nodes = {"input": nir.Input(input_type=np.array([16])),
             "fc1": nir.Affine(weight=rng.normal(0, 0.5, (24, 16)), bias=rng.normal(0, 0.1, 24)),
             "lif1": lif(0.9, 24, np.ones(24)),
             "fc2": nir.Affine(weight=rng.normal(0, 0.5, (5, 24)), bias=np.zeros(5)),
             "lif2": lif(0.8, 5, thr2),
             "output": nir.Output(output_type=np.array([5]))}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _float_counts(g, x, **compile_kw):
    q = compile_model(g, CompileConfig(bits=8, calibration=x, timesteps=T, **compile_kw))
    return q, simulate(q, x, mode="float", timesteps=T, readout="count", record=True)


@pytest.mark.parametrize("variant", ["per-neuron", "0-d parameters", "thresholds and gain"])
def test_snntorch_style_graph_reproduces_nirs_dynamics(variant, tmp_path):
    rng = np.random.default_rng(3)
    kw = {"per-neuron": {}, "0-d parameters": {"scalar": True},
          "thresholds and gain": {"thresholds": np.linspace(0.6, 1.4, 5), "gain": 1.7}}[variant]
    ng = _snntorch_style(rng, **kw)
    path = tmp_path / "snntorch.nir"
    nir.write(str(path), ng, compression=None)  # nir 1.0.8 cannot gzip 0-d datasets
    g = snnc_nir.load_nir(path, dt=DT)
    lifs = [g.nodes[n]["op"] for n in ("lif1", "lif2")]
    assert all(op.label.endswith("LIF") and op.reset == "zero" and op.spike_value == 1.0 for op in lifs)
    np.testing.assert_allclose(lifs[0].beta, 0.9)
    assert g.nodes["lif2"]["op"].readout
    x = rng.random((64, 16))
    q, r = _float_counts(g, x)
    ref = nir_run(nir.read(str(path), type_check=False), x, T, DT)
    for layer in ("lif1", "lif2"):
        assert np.array_equal(r.counts[layer], ref[layer]), layer
    assert ref["lif2"].sum() > 0
    it = simulate(q, x, timesteps=T, readout="count", record=True)  # the integer SNN stays close
    assert np.mean(np.abs(it.counts["lif2"] - ref["lif2"]) <= 1) >= 0.9


def test_snntorch_synaptic_maps_to_current_memory():
    """snnTorch's Synaptic exports CubaLIF with tau_syn = dt/(1-alpha), w_in = tau_syn/dt; alpha =
    0.75 is 1 - 1024/4096, the Neuron's decay_u = 1024."""
    rng = np.random.default_rng(4)
    alpha, beta = 0.75, 0.9
    tau_syn, tau_mem = np.full(6, DT / (1 - alpha)), np.full(6, DT / (1 - beta))
    cuba = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / DT, v_leak=np.zeros(6), v_threshold=np.ones(6),
                       w_in=tau_syn / DT)
    ng = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([8])),
                             "fc": nir.Linear(weight=rng.normal(0, 0.4, (6, 8))), "cuba": cuba,
                             "output": nir.Output(output_type=np.array([6]))},
                      edges=[("input", "fc"), ("fc", "cuba"), ("cuba", "output")], type_check=False)
    g = snnc_nir.from_nir(ng, dt=DT)
    assert g.nodes["cuba"]["op"].decay_u == 1024
    x = rng.random((64, 8))
    _, r = _float_counts(g, x)
    ref = nir_run(ng, x, T, DT)
    assert np.array_equal(r.counts["cuba"], ref["cuba"]) and ref["cuba"].sum() > 0
    cuba.tau_syn = np.full(6, DT / 0.3)  # alpha = 0.7: 0.3 * 4096 = 1228.8 is no integer
    with pytest.raises(snnc_nir.NIRError, match="1/4096.*nearest tau_syn"):
        snnc_nir.from_nir(ng, dt=DT)


def _conv_graph(rng, pool_after_conv):
    """sinabs style (Conv -> IF -> SumPool -> Flatten(start_dim=1) -> Affine -> IF) or snnTorch style
    (Conv -> AvgPool -> LIF -> Flatten -> Affine -> LIF, the pool composed into the conv)."""
    conv = nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0, 0.6, (3, 1, 3, 3)), stride=1, padding=1, dilation=1,
                      groups=1, bias=rng.normal(0, 0.05, 3))
    if pool_after_conv:
        tau = np.full((3, 3, 3), DT / (1 - 0.85))
        neuron = nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros_like(tau), v_threshold=np.full((3, 3, 3), 0.7))
        tau2 = np.full(4, DT / (1 - 0.9))
        out = nir.LIF(tau=tau2, r=tau2 / DT, v_leak=np.zeros(4), v_threshold=np.ones(4))
        nodes = {"input": nir.Input(input_type=np.array([1, 6, 6])), "conv": conv,
                 "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
                 "lif": neuron, "flat": nir.Flatten(input_type={"input": np.array([3, 3, 3])}, start_dim=0, end_dim=-1),
                 "fc": nir.Affine(weight=rng.normal(0, 0.5, (4, 27)), bias=np.zeros(4)), "out": out,
                 "output": nir.Output(output_type=np.array([4]))}
        order = ["input", "conv", "pool", "lif", "flat", "fc", "out", "output"]
    else:
        nodes = {"input": nir.Input(input_type=np.array([1, 6, 6])), "conv": conv,
                 "iaf": nir.IF(r=np.ones((3, 6, 6)), v_threshold=np.full((3, 6, 6), 0.8)),
                 "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
                 "flat": nir.Flatten(input_type={"input": np.array([0, 0, 0, 0])}, start_dim=1, end_dim=-1),
                 "fc": nir.Affine(weight=rng.normal(0, 0.3, (4, 27)), bias=np.zeros(4)),
                 "out": nir.IF(r=np.ones(4), v_threshold=np.ones(4)), "output": nir.Output(output_type=np.array([4]))}
        order = ["input", "conv", "iaf", "pool", "flat", "fc", "out", "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), type_check=False)


@pytest.mark.parametrize("pool_after_conv", [False, True], ids=["sinabs-sumpool", "snntorch-conv-avgpool"])
def test_conv_graphs_reproduce_nirs_dynamics(pool_after_conv):
    rng = np.random.default_rng(5)
    ng = _conv_graph(rng, pool_after_conv)
    g = snnc_nir.from_nir(ng, dt=DT)
    kinds = sorted(O.kind(g.nodes[n]["op"]) for n in g)
    assert kinds.count("AvgPool2d") == (0 if pool_after_conv else 1)
    x = rng.random((48, 1, 6, 6))
    _, r = _float_counts(g, x)
    ref = nir_run(ng, x, T, DT)
    layers = ("lif", "out") if pool_after_conv else ("iaf", "out")
    for layer in layers:
        assert np.array_equal(r.counts[layer], ref[layer]), layer
    assert all(ref[k].sum() > 0 for k in layers)


def test_same_padding_scale_and_a_batch_axis_in_the_input_shape():
    rng = np.random.default_rng(8)
    conv = nir.Conv2d(input_shape=None, weight=rng.normal(0, 0.6, (2, 1, 3, 3)), stride=1, padding="same", dilation=1,
                      groups=1, bias=np.zeros(2))
    nodes = {"input": nir.Input(input_type=np.array([1, 1, 5, 5])), "conv": conv,
             "scale": nir.Scale(scale=np.broadcast_to(np.array([0.5, 2.0]).reshape(2, 1, 1), (2, 5, 5)).copy()),
             "iaf": nir.IF(r=np.ones((2, 5, 5)), v_threshold=np.ones((2, 5, 5))),
             "output": nir.Output(output_type=np.array([2, 5, 5]))}
    order = ["input", "conv", "scale", "iaf", "output"]
    ng = nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), type_check=False)
    g = snnc_nir.from_nir(ng)
    assert g.nodes["input"]["shape"] == (1, 5, 5) and g.nodes["conv"]["op"].padding == (1, 1)
    x = rng.random((32, 1, 5, 5))
    q, r = _float_counts(g, x)
    assert "scale" not in q  # folded into the conv
    ref = nir_run(ng, x, T, DT)
    assert np.array_equal(r.counts["iaf"], ref["iaf"]) and ref["iaf"].sum() > 0


def test_exact_discretization_for_sinabs_lif():
    """sinabs counts tau in steps (dt = 1) and decays exactly: v = exp(-1/tau) v + (1 - exp(-1/tau)) I."""
    rng = np.random.default_rng(6)
    tau = np.full(7, 3.0)
    ng = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([5])),
                             "fc": nir.Affine(weight=rng.normal(0, 1.5, (7, 5)), bias=np.zeros(7)),
                             "lif": nir.LIF(tau=tau, r=np.ones(7), v_leak=np.zeros(7), v_threshold=np.full(7, 0.5)),
                             "output": nir.Output(output_type=np.array([7]))},
                      edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    g = snnc_nir.from_nir(ng, dt=1.0, discretization="exact")
    np.testing.assert_allclose(g.nodes["lif"]["op"].beta, np.exp(-1 / 3))
    x = rng.random((64, 5))
    _, r = _float_counts(g, x)
    ref = nir_run(ng, x, T, 1.0, exact=True)
    assert np.array_equal(r.counts["lif"], ref["lif"]) and ref["lif"].sum() > 0


def test_an_output_read_from_a_current_gets_a_membrane_readout():
    rng = np.random.default_rng(7)
    ng = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([4])),
                             "fc1": nir.Affine(weight=rng.normal(size=(6, 4)), bias=np.zeros(6)),
                             "if1": nir.IF(r=np.ones(6), v_threshold=np.ones(6)),
                             "fc2": nir.Linear(weight=rng.normal(size=(3, 6))),
                             "output": nir.Output(output_type=np.array([3]))},
                      edges=[("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "output")], type_check=False)
    with pytest.warns(UserWarning, match="readout membrane"):
        g = snnc_nir.from_nir(ng)  # no time constants: no dt needed
    out = [n for n in g if O.is_readout(g.nodes[n]["op"])]
    assert out == ["output"] and list(g.predecessors("output")) == ["fc2"]


# ---- refusals ----------------------------------------------------------------------------------

def _lif_graph(**lif):
    p = dict(tau=np.full(3, 1e-3), r=np.full(3, 10.0), v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3))
    p.update(lif)
    return nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2])),
                               "fc": nir.Linear(weight=np.ones((3, 2))), "lif": nir.LIF(**p),
                               "output": nir.Output(output_type=np.array([3]))},
                        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)


def _with(g, **params):
    for k, v in params.items():
        setattr(g.nodes["lif"], k, v)
    return g


@pytest.mark.parametrize("graph,dt,match", [
    (lambda: _lif_graph(), None, "no timestep.*1e-4"),
    (lambda: _lif_graph(v_leak=np.full(3, 0.1)), DT, "v_leak"),
    (lambda: _lif_graph(v_reset=np.full(3, -0.2)), DT, "v_reset"),
    (lambda: _lif_graph(), 0.01, "exceeds tau"),
    (lambda: _with(_lif_graph(), tau=np.array([1e-3, 2e-3])), DT, "tau has shape"),
], ids=["no-dt", "v_leak", "v_reset", "dt>tau", "param-shape"])
def test_what_does_not_map_is_refused_with_the_reason(graph, dt, match):
    with pytest.raises(snnc_nir.NIRError, match=match):
        snnc_nir.from_nir(graph(), dt=dt)


def test_recurrent_and_unsupported_graphs_are_refused():
    g = _lif_graph()
    g.nodes["rec"] = nir.Linear(weight=np.eye(3))
    g.edges += [("lif", "rec"), ("rec", "lif")]
    with pytest.raises(snnc_nir.NIRError, match="recurrent"):
        snnc_nir.from_nir(g, dt=DT)
    g = _lif_graph()
    g.nodes["delay"] = nir.Delay(delay=np.ones(3))
    g.edges = [("input", "fc"), ("fc", "delay"), ("delay", "lif"), ("lif", "output")]
    with pytest.raises(snnc_nir.NIRError, match="Delay is not supported"):
        snnc_nir.from_nir(g, dt=DT)


def test_files_are_checked_before_nir_parses_them(tmp_path):
    path = tmp_path / "net.nir"
    nir.write(str(path), _lif_graph())
    assert snnc_nir.is_nir_file(path) and snnc_nir.load_nir(path, dt=DT).number_of_nodes() == 3
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["secret"] = np.arange(3)
    with h5py.File(path, "a") as f:
        f["node"]["leak"] = h5py.ExternalLink(str(other), "/secret")
    with pytest.raises(snnc_nir.NIRError, match="ExternalLink"):
        snnc_nir.read_nir(path)
    text = tmp_path / "notes.nir"
    text.write_text("hello")
    assert not snnc_nir.is_nir_file(text)
    with pytest.raises(snnc_nir.NIRError, match="not a NIR file"):
        snnc_nir.read_nir(text)
