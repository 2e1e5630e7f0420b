"""The PyTorch frontend: every zoo model in every format lowers to IR whose ANN reading equals torch;
every refusal names the op and where it sits."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from models import unsupported, zoo  # noqa: E402

from snn_compiler import ir  # noqa: E402
from snn_compiler.frontend import FrontendError, from_module, load_file  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402

try:
    from snn_compiler.sim.emulator import run_ann
except ImportError:  # pragma: no cover - until the emulator lands: a tiny float evaluator
    from snn_compiler.sim import kernels as K

    def run_ann(graph, x):
        vals = {}
        for n in ir.topo_order(graph):
            op, ins = ir.op_of(graph, n), [vals[p] for p in ir.inputs_of(graph, n)]
            if isinstance(op, O.Input):
                y = np.asarray(x, np.float64)
            elif isinstance(op, O.Dense):
                y = K.dense(ins[0], op.weight) + (0 if op.bias is None else op.bias)
            elif isinstance(op, O.Conv2d):
                y = K.conv2d(ins[0], op.weight, op.stride, op.padding, op.dilation, op.groups)
                y = y + (0 if op.bias is None else op.bias[:, None, None])
            elif isinstance(op, O.AvgPool2d):
                y = K.avg_pool2d(ins[0], op.kernel_size, op.stride, op.padding)
            elif isinstance(op, O.BatchNorm):
                c = (slice(None),) + (None,) * (ins[0].ndim - 2)
                y = (ins[0] - op.mean[c]) / np.sqrt(op.var[c] + op.eps) * op.weight[c] + op.bias[c]
            elif isinstance(op, O.Flatten):
                y = ins[0].reshape(len(ins[0]), -1)
            elif isinstance(op, O.Add):
                y = sum(ins)
            elif isinstance(op, O.Output):
                y = ins[0]
            elif isinstance(op, O.IF):
                y = np.maximum(ins[0], 0)
            vals[n] = y
        return vals[ir.output_node(graph)]

FORMATS = ["module", "script", "trace", "export"]

# torch 2.13 deprecates torch.jit; the frontend still reads TorchScript files
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def _batch(shape, n=6, seed=0):
    return torch.randn((n,) + tuple(shape), generator=torch.Generator().manual_seed(seed))


def _lower(model, shape, fmt, tmp_path, pass_shape=True):
    """Lower ``model`` through ``fmt``: in memory, or saved to a file and loaded back."""
    example = _batch(shape, n=1, seed=1)
    if fmt == "module":
        return from_module(model, shape)
    if fmt in ("script", "trace"):
        ts = torch.jit.script(model) if fmt == "script" else torch.jit.trace(model, (example,))
        path = tmp_path / f"{fmt}.pt"
        torch.jit.save(ts, str(path))
    else:
        path = tmp_path / "model.pt2"
        torch.export.save(torch.export.export(model, (example,)), str(path))
    return load_file(path, shape if pass_shape else None)


def _assert_matches(graph, model, shape, atol=1e-5):
    x = _batch(shape)
    with torch.no_grad():
        want = model(x).numpy()
    got = run_ann(graph, x.numpy().astype(np.float64))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)


def _kinds(graph):
    return [O.kind(ir.op_of(graph, n)) for n in ir.topo_order(graph)]


def _named_kinds(graph):
    return [(n, O.kind(ir.op_of(graph, n))) for n in ir.topo_order(graph)]


# ---- every zoo model, every format --------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(zoo()))
def test_zoo_lowers_and_matches_torch(name, fmt, tmp_path):
    model, shape = zoo()[name]
    g = _lower(model, shape, fmt, tmp_path)
    ir.verify(g)
    (inp,) = [n for n in g if isinstance(ir.op_of(g, n), O.Input)]
    assert ir.op_of(g, inp).shape == shape and ir.op_of(g, inp).scale is None
    out = ir.output_node(g)
    assert ir.op_of(g, out) == O.Output() and g.out_degree(out) == 0
    _assert_matches(g, model, shape)
    # the same nodes (names and ops) whichever format the model came in
    if name not in _MODULE_KINDS:
        _MODULE_KINDS[name] = _named_kinds(g if fmt == "module" else from_module(model, shape))
    assert _named_kinds(g) == _MODULE_KINDS[name]


_MODULE_KINDS = {}


def test_node_names_ops_and_fields_of_the_cnn():
    model, shape = zoo()["cnn"]
    g = from_module(model, shape)
    names = ir.topo_order(g)
    assert names == ["input", "features.0", "features.1", "features.2", "features.3", "features.4",
                     "features.5", "features.6", "features.7", "classifier.0", "classifier.1",
                     "classifier.2", "classifier.3", "output"]
    kinds = dict(zip(names, _kinds(g)))
    assert [kinds[f"features.{i}"] for i in range(8)] == ["Conv2d", "BatchNorm", "IF", "AvgPool2d"] * 2
    assert [kinds[f"classifier.{i}"] for i in range(4)] == ["Flatten", "Dense", "IF", "Dense"]
    conv, bn = model.features[0], model.features[1]
    c = ir.op_of(g, "features.0")
    assert c.weight.dtype == np.float64 and np.array_equal(c.weight, conv.weight.detach().double().numpy())
    assert c.padding == (1, 1) and c.stride == (1, 1) and c.groups == 1
    assert ir.op_of(g, "features.4").bias is None
    b = ir.op_of(g, "features.1")
    assert np.allclose(b.mean, bn.running_mean.numpy()) and np.allclose(b.var, bn.running_var.numpy())
    assert np.allclose(b.weight, bn.weight.detach().numpy()) and b.eps == bn.eps
    assert np.abs(b.mean).max() > 0.05 and np.abs(b.var - 1).max() > 0.05  # real statistics
    p = ir.op_of(g, "features.3")
    assert (p.kernel_size, p.stride, p.padding) == ((2, 2), (2, 2), (0, 0))
    assert g.nodes["output"]["shape"] == (10,)
    # weights are copies: changing the model afterwards leaves the IR alone
    before = c.weight.copy()
    with torch.no_grad():
        conv.weight.add_(1.0)
    assert np.array_equal(ir.op_of(g, "features.0").weight, before)


def test_resnet_skip_is_an_add_and_global_pool_an_avgpool():
    model, shape = zoo()["resnet"]
    g = from_module(model, shape)
    adds = [n for n in g if isinstance(ir.op_of(g, n), O.Add)]
    assert len(adds) == 2  # operator + and torch.add
    for a in adds:
        assert len(ir.inputs_of(g, a)) == 2
    assert ir.inputs_of(g, "layers.0.add") == ["layers.0.bn2", "stem.1"]
    bn = ir.op_of(g, "layers.1.bn2")  # affine=False
    assert np.array_equal(bn.weight, np.ones(8)) and np.array_equal(bn.bias, np.zeros(8))
    pool = ir.op_of(g, "pool")
    assert isinstance(pool, O.AvgPool2d) and pool.kernel_size == (8, 8) and pool.stride == (8, 8)
    assert isinstance(ir.op_of(g, "view"), O.Flatten)


def test_dropout_and_identity_leave_no_node():
    model, shape = zoo()["dropout"]
    g = from_module(model, shape)
    assert set(g) == {"input", "body.0", "body.1", "body.4", "reshape", "head.1.0", "head.1.1",
                      "head.2", "output"}
    assert ir.inputs_of(g, "body.4") == ["body.1"]


def test_conv_variants_keep_their_parameters():
    model, shape = zoo()["conv_variants"]
    g = from_module(model, shape)
    convs = [ir.op_of(g, f"convs.{i}") for i in (0, 2, 4, 6)]
    assert [(c.stride, c.padding, c.dilation, c.groups) for c in convs] == [
        ((2, 2), (1, 1), (1, 1), 1), ((1, 1), (2, 2), (2, 2), 2), ((1, 1), (1, 1), (1, 1), 8),
        ((1, 2), (0, 1), (1, 1), 1)]


def test_relu_forms_all_become_if():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            x = F.relu(self.fc(x))
            x = torch.relu(self.fc(x))
            x = self.fc(x).relu_()
            x = F.relu(self.fc(x), inplace=True)
            return self.act(self.fc(x))

    model = M().eval()
    g = from_module(model, (6,))
    assert _kinds(g) == ["Input"] + ["Dense", "IF"] * 5 + ["Output"]
    assert len({n for n in g if n.startswith("fc")}) == 5  # one Dense per call, unique names
    _assert_matches(g, model, (6,))


def test_casts_and_layout_ops_are_identities():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            x = x.float().to(torch.float32).contiguous().clone().detach()
            return self.fc(x)

    model = M().eval()
    g = from_module(model, (4,))
    assert _kinds(g) == ["Input", "Dense", "Output"]
    _assert_matches(g, model, (4,))
    _refused(lambda m, x: m.conv(x.to(torch.int32).float()), (1, 4, 4), "casting activations to torch.int32")


def test_main_padding_and_pool_variants_match_torch(tmp_path):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(2, 3, 3, padding="same", dilation=2)
            self.c2 = nn.Conv2d(3, 3, 3, padding="valid")
            self.pool = nn.AvgPool2d(2, ceil_mode=True)  # 10 -> 5 either way: accepted

        def forward(self, x):
            x = self.pool(F.relu(self.c2(F.relu(self.c1(x)))))
            x = x + F.avg_pool2d(x, 3, stride=1, padding=1)
            return x.mean((2, 3)) + x.mean((-1, -2), keepdim=True).flatten(1)

    model, shape = M().eval(), (2, 12, 12)
    for fmt in FORMATS:
        g = _lower(model, shape, fmt, tmp_path)
        _assert_matches(g, model, shape)


def test_weights_from_buffers_constants_and_weight_expressions(tmp_path):
    """Weights that are buffers, plain tensor attributes (lifted constants) or computed from
    parameters (folded by torch) are read as the values torch uses."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(7)
            self.register_buffer("w", torch.randn(5, 4, generator=g))
            self.b = torch.randn(4, generator=g)  # not registered: a lifted constant
            self.v = nn.Parameter(torch.randn(3, 2, 3, 3, generator=g))

        def forward(self, x):
            y = F.conv2d(x, self.v * 0.5, padding=1)  # weight expression
            y = F.relu(F.linear(torch.flatten(F.avg_pool2d(y, 4), 1), self.w.t()[:3].t(), None))
            return F.linear(y, self.w.t(), self.b)

    model, shape = M().eval(), (2, 4, 4)
    for fmt in FORMATS:
        g = _lower(model, shape, fmt, tmp_path)
        _assert_matches(g, model, shape)


def test_decomposed_exported_program_matches(tmp_path):
    """A .pt2 saved after run_decompositions (core aten: addmm, convolution, native BN)."""
    model, shape = zoo()["resnet"]
    ep = torch.export.export(model, (_batch(shape, 1),)).run_decompositions()
    targets = {str(n.target) for n in ep.graph.nodes}
    assert {"aten.convolution.default", "aten.addmm.default"} <= targets
    torch.export.save(ep, str(tmp_path / "core.pt2"))
    g = load_file(tmp_path / "core.pt2")
    assert _kinds(g) == _kinds(from_module(model, shape))
    _assert_matches(g, model, shape)


def test_pt2_with_dynamic_batch(tmp_path):
    model, shape = zoo()["cnn"]
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (_batch(shape, 3),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, str(tmp_path / "dyn.pt2"))
    g = load_file(tmp_path / "dyn.pt2")
    assert ir.op_of(g, "input").shape == shape
    _assert_matches(g, model, shape)


def test_from_module_restores_training_flags():
    model, shape = zoo()["cnn"]
    model.train()
    model.classifier.eval()
    from_module(model, shape)
    assert model.training and model.features[1].training and not model.classifier.training


def test_from_module_accepts_a_script_module():
    model, shape = zoo()["resnet"]
    g = from_module(torch.jit.script(model), shape)
    assert "layers.0.add" in g
    _assert_matches(g, model, shape)


# ---- refusals: op and module path in the message ---------------------------------------------

# Unsupported op kinds through every in-memory route; refused op arguments (pooling modes), which
# the one lowering judges alike whatever the route, as modules only (keeps the file fast).
_OP_KINDS = ("sigmoid", "tanh", "maxpool", "mul", "cat", "lstm")
_REFUSALS = [(n, "module") for n in unsupported()] + [(n, f) for n in _OP_KINDS for f in ("script", "trace")]


@pytest.mark.parametrize("name,fmt", _REFUSALS)
def test_unsupported_ops_are_refused_with_op_and_path(name, fmt):
    model, shape, op, loc = unsupported()[name]
    if fmt == "script":
        model = torch.jit.script(model)
    elif fmt == "trace":
        model = torch.jit.trace(model, (_batch(shape, 1),))
    with pytest.raises(FrontendError) as e:
        from_module(model, shape)
    msg = str(e.value)
    assert op in msg
    if not (name == "lstm" and fmt == "script"):  # TorchScript records no scope inside a scripted LSTM
        assert f"at {loc} (" in msg, msg


def test_unsupported_message_names_module_class():
    model, shape, _, _ = unsupported()["sigmoid"]
    with pytest.raises(FrontendError, match=r"aten\.sigmoid.* at features\.3 \(torch\.nn\.modules\.activation\.Sigmoid\)"):
        from_module(model, shape)


def _refused(forward, shape, match, init=None):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 4 * 4, 3)
            if init:
                init(self)

        def forward(self, x):
            return forward(self, x)

    with pytest.raises(FrontendError, match=match):
        from_module(M().eval(), shape)


def test_non_flatten_reshapes_are_refused():
    _refused(lambda m, x: m.fc(m.conv(x).view(-1)), (1, 4, 4), "not flatten-like")
    _refused(lambda m, x: m.conv(x).view(x.size(0), 2, 16), (1, 4, 4), "not flatten-like")
    _refused(lambda m, x: m.fc(torch.flatten(m.conv(x))), (1, 4, 4), "batch axis")
    _refused(lambda m, x: torch.flatten(m.conv(x), 2), (1, 4, 4), "start_dim=1")
    _refused(lambda m, x: m.conv(x).permute(0, 2, 3, 1), (1, 4, 4), r"aten\.permute")


def test_other_refusals():
    _refused(lambda m, x: nn.functional.linear(m.conv(x), torch.ones(3, 4)), (1, 4, 4), "flatten first")
    _refused(lambda m, x: m.conv(x) + 1.0, (1, 4, 4), "constant")
    _refused(lambda m, x: m.conv(x) + m.conv(x)[:, :1], (1, 4, 4), r"aten\.(slice|select)")
    _refused(lambda m, x: (m.conv(x), m.conv(x)), (1, 4, 4), "exactly one tensor")
    _refused(lambda m, x: m.conv(torch.ones(1, 1, 4, 4)), (1, 4, 4), "does not depend on")
    _refused(lambda m, x: m.conv(x), (1, 4, 4), "same",
             init=lambda m: setattr(m, "conv", nn.Conv2d(1, 2, 2, padding="same")))
    _refused(lambda m, x: m.conv(x), (1, 4, 4), "track_running_stats",
             init=lambda m: setattr(m, "conv", nn.BatchNorm2d(1, track_running_stats=False)))
    _refused(lambda m, x: F.avg_pool2d(m.conv(x), 2, divisor_override=3), (1, 4, 4), "divisor_override")


def test_script_saved_in_training_mode_is_lowered_in_eval_mode(tmp_path):
    model, shape = zoo()["dropout"]
    model.train()
    torch.jit.save(torch.jit.script(model), str(tmp_path / "train.pt"))
    g = load_file(tmp_path / "train.pt", shape)
    _assert_matches(g, model.eval(), shape)


def test_identity_model_wires_input_to_output():
    g = from_module(nn.Sequential(nn.Identity(), nn.Dropout()), (3,))
    assert list(g.edges) == [("input", "output")] and g.nodes["output"]["shape"] == (3,)


def test_training_mode_trace_is_refused(tmp_path):
    model, shape = zoo()["cnn"]
    model.train()
    torch.jit.save(torch.jit.trace(model, (_batch(shape, 2),)), str(tmp_path / "train.pt"))
    with pytest.raises(FrontendError, match=r"features\.1 .*model\.eval\(\)"):
        load_file(tmp_path / "train.pt", shape)


def test_bad_input_shapes():
    model, shape = zoo()["cnn"]
    with pytest.raises(FrontendError, match="input_shape"):
        from_module(model, "1x8x8")
    with pytest.raises(FrontendError, match="input_shape"):
        from_module(model, (1, 0, 8))
    with pytest.raises(FrontendError, match=r"could not capture CNN on an input of shape \(1, 1, 12, 12\)"):
        from_module(model, (1, 12, 12))
    with pytest.raises(FrontendError, match="expected a torch.nn.Module"):
        from_module(lambda x: x, shape)


# ---- files -----------------------------------------------------------------------------------------

def test_torchscript_needs_input_shape_unless_first_op_is_linear(tmp_path):
    cnn, _ = zoo()["cnn"]
    torch.jit.save(torch.jit.script(cnn), str(tmp_path / "cnn.pt"))
    with pytest.raises(FrontendError, match="input_shape"):
        load_file(tmp_path / "cnn.pt")
    mlp, shape = zoo()["mlp"]
    for fmt in ("script", "trace"):
        g = _lower(mlp, shape, fmt, tmp_path, pass_shape=False)
        assert ir.op_of(g, "input").shape == (64,)
        _assert_matches(g, mlp, shape)


def test_pt2_input_shape_is_checked(tmp_path):
    model, shape = zoo()["cnn"]
    torch.export.save(torch.export.export(model, (_batch(shape, 1),)), str(tmp_path / "m.pt2"))
    assert ir.op_of(load_file(tmp_path / "m.pt2", shape), "input").shape == shape
    with pytest.raises(FrontendError, match="does not match"):
        load_file(tmp_path / "m.pt2", (1, 12, 12))


@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_module_refused_unless_allowed(tmp_path, legacy):
    model, shape = zoo()["resnet"]
    path = tmp_path / "model.pt"
    torch.save(model, str(path), _use_new_zipfile_serialization=not legacy)
    with pytest.raises(FrontendError) as e:
        load_file(path, shape)
    msg = str(e.value)
    assert "arbitrary code" in msg and "allow_pickle=True" in msg and "torch.export.save" in msg
    assert "models.ResNet" in msg  # what the pickle would import
    g = load_file(path, shape, allow_pickle=True)
    _assert_matches(g, model, shape)


def test_pickled_mlp_infers_its_input_shape(tmp_path):
    model, shape = zoo()["mlp"]
    torch.save(model, str(tmp_path / "mlp.pt"))
    g = load_file(tmp_path / "mlp.pt", allow_pickle=True)
    assert ir.op_of(g, "input").shape == shape


@pytest.mark.parametrize("legacy", [False, True])
def test_state_dict_is_not_a_model(tmp_path, legacy):
    model, shape = zoo()["cnn"]
    torch.save(model.state_dict(), str(tmp_path / "sd.pt"), _use_new_zipfile_serialization=not legacy)
    for allow in (False, True):
        with pytest.raises(FrontendError, match="state_dict.*not a model"):
            load_file(tmp_path / "sd.pt", shape, allow_pickle=allow)


def test_files_that_are_not_models(tmp_path):
    cases = {
        "notes.txt": (b"just some text\n", "looks like text"),
        "random.bin": (bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8)) + b"\xff",
                       "not a model file"),
        "empty.pt": (b"", "empty"),
    }
    for name, (data, match) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FrontendError, match=match):
            load_file(tmp_path / name, (4,))
    np.savez(tmp_path / "arrays.npz", a=np.zeros(3))
    with pytest.raises(FrontendError, match="numpy archive"):
        load_file(tmp_path / "arrays.npz", (4,))
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(FrontendError, match="numpy"):
        load_file(tmp_path / "array.npy", (4,))
    torch.save(torch.zeros(3), str(tmp_path / "tensor.pt"))
    with pytest.raises(FrontendError, match="Tensor saved with torch.save, not a model"):
        load_file(tmp_path / "tensor.pt", (4,))
    model, _ = zoo()["mlp"]
    torch.save({"model": model.state_dict(), "epoch": 3}, str(tmp_path / "ckpt.pt"))
    with pytest.raises(FrontendError, match=r"dict saved with torch.save \(keys: model, epoch\), not a model"):
        load_file(tmp_path / "ckpt.pt", (4,))
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"a": 1}, f, protocol=2)
    with pytest.raises(FrontendError, match="plain Python pickle, not a model"):
        load_file(tmp_path / "plain.pkl", (4,))
    with pytest.raises(FrontendError, match="no such file"):
        load_file(tmp_path / "missing.pt", (4,))


def test_frontend_error_imports_without_torch():
    assert issubclass(FrontendError, ValueError)
    code = ("import sys, snn_compiler.frontend as f; assert f.FrontendError.__mro__[1] is ValueError; "
            "assert 'torch' not in sys.modules")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
