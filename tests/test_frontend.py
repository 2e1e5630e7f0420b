"""The PyTorch frontend: every zoo model in every format lowers to IR whose ANN reading equals torch;
every refusal names the op and where it sits."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from frontend_helpers import _assert_matches, _batch, _lower  # noqa: E402
from models import unsupported, zoo  # noqa: E402

from snn_compiler import ir  # noqa: E402
from snn_compiler.frontend import FrontendError, from_module, load_file  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402


FORMATS = ["module", "script", "trace", "export"]

# torch 2.13 deprecates torch.jit; the frontend still reads TorchScript files
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


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
_OP_KINDS = ("sigmoid", "tanh", "elu", "mul", "cat", "lstm")
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
    _refused(lambda m, x: m.conv(x) + m.conv(x)[:, :, :1], (1, 4, 4), r"aten\.(slice|select)")
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
