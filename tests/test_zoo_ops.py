"""The ops of the model zoo (issue 19): clipped ReLUs (ReLU6, Hardtanh(0, a), clamp(0, a)) become IF
layers whose scale is at most the clip; in-place forms of the supported ops; refusals that name
the layer. Blocks are defined here (torchvision's compiled ops do not load against this torch)."""
from __future__ import annotations

import json
import os
import sys
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from frontend_helpers import _lower  # noqa: E402

from snn_compiler import artifact, ir  # noqa: E402
from snn_compiler.artifact_check import ArtifactError  # noqa: E402
from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.passes import STRUCTURAL, run_pipeline  # noqa: E402
from snn_compiler.frontend import FrontendError, from_module  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning", "ignore::UserWarning")


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _net(act):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), act, nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


CLIPPED = {  # name: (activation module, the clip it must get)
    "relu6": (nn.ReLU6(), 6.0),
    "relu6_inplace": (nn.ReLU6(inplace=True), 6.0),
    "F.relu6": (_Fn(F.relu6), 6.0),
    "hardtanh": (nn.Hardtanh(0.0, 4.0), 4.0),
    "hardtanh_inplace": (nn.Hardtanh(0.0, 2.5, inplace=True), 2.5),
    "clamp": (_Fn(lambda x: torch.clamp(x, 0, 3)), 3.0),
    "clamp_inplace": (_Fn(lambda x: x.clamp_(min=0, max=3)), 3.0),
    "clamp_min_max": (_Fn(lambda x: x.clamp_min(0).clamp_max(2)), 2.0),
    "clamp_min_max_inplace": (_Fn(lambda x: x.clamp_min_(0).clamp_max_(2)), 2.0),
    "relu_then_clamp_max": (_Fn(lambda x: F.relu(x).clamp_max(1.5)), 1.5),
    "clamp_min_only": (_Fn(lambda x: x.clamp_min(0)), None),
}


def _clips(g):
    return [ir.op_of(g, n).clip for n in ir.topo_order(g) if O.is_hidden_neuron(ir.op_of(g, n))]


@pytest.mark.parametrize("name", list(CLIPPED))
def test_clipped_relus_become_one_clipped_if_layer_whose_ann_is_torch(name):
    act, clip = CLIPPED[name]
    net = _net(act)
    g = from_module(net, (1, 6, 6))
    assert _clips(g) == [clip]
    x = torch.randn(20, 1, 6, 6) * 10  # far beyond the clip: the ANN reading must clip too
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_ann(g, x.numpy().astype(np.float64)), want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("fmt", ["script", "trace", "export"])
def test_relu6_through_every_file_format(fmt, tmp_path):
    g = _lower(_net(nn.ReLU6(inplace=True)), (1, 6, 6), fmt, tmp_path)
    assert _clips(g) == [6.0]


@pytest.mark.parametrize("act,match", [
    (nn.Hardtanh(), r"lower bound -1 is not a ReLU"),
    (_Fn(lambda x: torch.clamp(x, -1, 1)), r"clamp with lower bound -1"),
    (_Fn(lambda x: torch.clamp(x, max=1)), r"clamp without a lower bound"),
    (_Fn(lambda x: x.clamp_max(1)), r"clamp_max converts only right after a ReLU"),
    (_Fn(lambda x: (lambda r: r.clamp_max(2) + r)(F.relu(x))), r"clamp_max converts only right after a ReLU"),
    (_Fn(lambda x: torch.clamp(x, 0, 0)), r"upper bound 0"),
])
def test_clamps_that_are_not_clipped_relus_are_refused_naming_the_layer(act, match):
    with pytest.raises(FrontendError, match=match) as e:
        from_module(_net(act), (1, 6, 6))
    assert " at 1 (" in str(e.value)  # the module path of the activation


def test_clip_field_is_checked():
    with pytest.raises(ValueError, match="finite number > 0"):
        O.IF(clip=-1.0).infer_shape([(3,)])
    with pytest.raises(ValueError, match="converted IF layer only"):
        O.Output(clip=1.0).infer_shape([(3,)])
    assert O.IF(clip=2.0).ann([np.array([-1.0, 1.0, 5.0])]).tolist() == [0.0, 1.0, 2.0]


def _compiled(net, x, **kw):
    return compile_model(from_module(net, tuple(x.shape[1:])), CompileConfig(bits=8, calibration=x.numpy(), **kw))


def test_normalize_takes_the_clip_as_the_largest_scale():
    net = _net(nn.ReLU6())
    x = torch.randn(64, 1, 6, 6) * 10  # the calibrated statistic would exceed 6 without the clip
    for norm in ("model", "max", "scale:10"):  # the last two reach the clip (10 x the max: far beyond)
        q = _compiled(net, x, norm=norm)
        (layer,) = [n for n in ir.topo_order(q) if O.is_hidden_neuron(ir.op_of(q, n))]
        op = ir.op_of(q, layer)
        assert op.scale <= 6.0 and op.clip == pytest.approx(6.0 / op.scale)
        assert norm == "model" or op.scale == 6.0
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_ann(q, x.numpy()), want, rtol=0, atol=1e-4 * np.abs(want).max())
    # --layer-scale is the user's value, kept even above the clip
    q = _compiled(net, x, layer_scales={"1": 8.0})
    assert ir.op_of(q, "1").scale == 8.0


def _cbr(i, o, k=3, s=1, groups=1, act=True):
    layers = [nn.Conv2d(i, o, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(o)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand-BN-ReLU6, 3x3 depthwise-BN-ReLU6, 1x1 project-BN (linear), + x;
    ``relu_after_add`` puts a ReLU6 on the sum (the linear bottleneck does not compile yet)."""

    def __init__(self, c, t, relu_after_add):
        super().__init__()
        self.conv = nn.Sequential(_cbr(c, c * t, 1), _cbr(c * t, c * t, 3, groups=c * t),
                                  _cbr(c * t, c, 1, act=False))
        self.relu_after_add = relu_after_add

    def forward(self, x):
        y = x + self.conv(x)
        return F.relu6(y) if self.relu_after_add else y


def _mobilenet(relu_after_add):
    torch.manual_seed(1)
    net = nn.Sequential(_cbr(3, 8, 3, 2), InvertedResidual(8, 4, relu_after_add), InvertedResidual(8, 4, relu_after_add),
                        _cbr(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2, inplace=True),
                        nn.Linear(16, 10))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


def test_mobilenetv2_linear_bottleneck_lowers_and_matches_torch():
    net = _mobilenet(relu_after_add=False)
    g = from_module(net, (3, 16, 16))
    assert sum(isinstance(ir.op_of(g, n), O.Add) for n in g) == 2 and set(_clips(g)) == {6.0}
    x = torch.randn(8, 3, 16, 16) * 4
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_ann(g, x.numpy().astype(np.float64)), want, rtol=0, atol=1e-4)


def test_mobilenetv2_linear_bottleneck_compiles_and_its_int8_snn_agrees_with_its_ann():
    """The sums with no activation (x + project(h)) are read by 1x1 convs, which compose_linear folds
    into the connections the sums are made of; the graph read as an ANN stays the network."""
    net = _mobilenet(relu_after_add=False)
    x = torch.rand(64, 3, 16, 16) * 2 - 1
    q = _compiled(net, x)
    ann = run_ann(q, x.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(ann, net(x).numpy(), rtol=0, atol=1e-4)
    composed = [n for n in q if ".via." in n]
    assert composed and all(isinstance(ir.op_of(q, n), O.Conv2d) for n in composed)
    snn = simulate(q, x.numpy(), timesteps=64).scores
    assert np.corrcoef(snn.ravel(), ann.ravel())[0, 1] > 0.99


def test_a_pointwise_conv_right_after_a_depthwise_one_composes_into_one_conv():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),
                        nn.BatchNorm2d(4), nn.Conv2d(4, 6, 1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 3)).eval()
    x = torch.rand(32, 2, 8, 8)
    q = _compiled(net, x)
    convs = [n for n in ir.topo_order(q) if isinstance(ir.op_of(q, n), O.Conv2d)]
    assert len(convs) == 2 and ir.op_of(q, convs[1]).weight.shape == (6, 4, 3, 3)  # depthwise + pointwise: one conv
    assert ir.op_of(q, convs[1]).stride == (2, 2) and ir.op_of(q, convs[1]).padding == (1, 1)
    with torch.no_grad():
        np.testing.assert_allclose(run_ann(q, x.numpy()), net(x).numpy(), rtol=0, atol=1e-4)


def test_a_spatial_conv_after_a_linear_sum_is_still_refused_naming_both():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 3)).eval()
    with pytest.raises(Exception, match=r"0 feeds 1 without an activation"):
        _compiled(net, torch.rand(8, 2, 6, 6))


def test_mobilenetv2_block_with_relu6_compiles_and_its_int8_snn_agrees_with_its_ann():
    net = _mobilenet(relu_after_add=True)
    x = torch.rand(64, 3, 16, 16) * 2 - 1
    q = _compiled(net, x)
    ann = run_ann(q, x.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(ann, net(x).numpy(), rtol=0, atol=1e-3)
    snn = simulate(q, x.numpy(), timesteps=64).scores
    assert np.corrcoef(snn.ravel(), ann.ravel())[0, 1] > 0.99


def test_clip_survives_the_artifact_and_old_artifacts_without_it_load(tmp_path):
    q = _compiled(_net(nn.ReLU6()), torch.randn(32, 1, 6, 6) * 10)
    path = tmp_path / "a.snnc"
    artifact.save(q, path)
    back = artifact.load(path)
    assert ir.op_of(back, "1").clip == ir.op_of(q, "1").clip is not None

    def rewrite(name, edit):
        with zipfile.ZipFile(path) as z:
            members = {i.filename: z.read(i) for i in z.infolist()}
        manifest = json.loads(members["manifest.json"])
        for node in manifest["nodes"]:
            if node["name"] == "1":
                edit(node["attrs"])
        members["manifest.json"] = json.dumps(manifest).encode()
        out = tmp_path / name
        with zipfile.ZipFile(out, "w") as z:
            for k, v in members.items():
                z.writestr(k, v)
        return out

    old = artifact.load(rewrite("old.snnc", lambda a: a.pop("clip")))  # written before the field existed
    assert ir.op_of(old, "1").clip is None
    with pytest.raises(ArtifactError, match="clip must be a finite number > 0"):
        artifact.load(rewrite("bad.snnc", lambda a: a.update(clip=-2.0)))


def test_inplace_dropout_of_mnasnet_is_an_identity():
    """MnasNet's classifier: nn.Dropout(inplace=True) records aten.dropout_ (argument ``self``)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.2, inplace=True), nn.Linear(36, 3)).eval()
    g = from_module(net, (1, 6, 6))
    assert [O.kind(ir.op_of(g, n)) for n in ir.topo_order(g)] == ["Input", "Flatten", "Dense", "Output"]


# ---- refusals: the op, the layer, why, and what instead -------------------------------------------

class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0].flatten(1)


class _LSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 4, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0].flatten(1)


def _mobilenetv3_block():
    """MobileNetV3's stem: conv-BN-hardswish, as torchvision nests it (features.0.2)."""
    torch.manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Hardswish(inplace=True))
    return nn.Sequential(nn.Sequential(stem), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


UNCONVERTED = {  # name: (model, input shape, op, where, why/what instead)
    "silu": (_net(nn.SiLU()), (1, 6, 6), "aten.silu", "1 (torch.nn.modules.activation.SiLU)", "retrain with ReLU"),
    "gelu": (_net(nn.GELU()), (1, 6, 6), "aten.gelu", "1 (torch.nn.modules.activation.GELU)", "retrain with ReLU"),
    "hardswish": (_mobilenetv3_block(), (1, 6, 6), "aten.hardswish_", "0.0.2 (torch.nn.modules.activation.Hardswish)",
                  "retrain with ReLU6"),
    "layernorm": (nn.Sequential(nn.Flatten(), nn.LayerNorm(36)).eval(), (1, 6, 6), "aten.layer_norm",
                  "1 (torch.nn.modules.normalization.LayerNorm)", "use BatchNorm2d"),
    "attention": (_Attention().eval(), (4, 8), "aten.", "attn (torch.nn.modules.activation.MultiheadAttention)",
                  "attention multiplies two activations"),
    "lstm": (_LSTM().eval(), (3, 8), "aten.lstm", "rnn (torch.nn.modules.rnn.LSTM)", "snn_compiler.nn.LIF"),
}


@pytest.mark.parametrize("name", list(UNCONVERTED))
def test_unconverted_ops_are_refused_naming_op_layer_and_what_instead(name):
    model, shape, op, where, why = UNCONVERTED[name]
    with pytest.raises(FrontendError) as e:
        from_module(model, shape)
    msg = str(e.value)
    assert msg.startswith(op) and f" at {where}" in msg and why in msg and "\n" not in msg, msg
    assert "run code" not in msg


def test_the_list_of_what_snnc_lowers_is_the_handler_table():
    from snn_compiler.frontend.torch.handlers import HANDLERS
    from snn_compiler.frontend.torch.refusals import LOWERS, lowered_layers
    with pytest.raises(FrontendError) as e:
        from_module(_net(nn.SiLU()), (1, 6, 6))
    listed = str(e.value).split("(snnc lowers ")[1]
    for h in HANDLERS.values():  # every layer a handler lowers, MaxPool2d and ReLU6 among them
        assert LOWERS.get(h.__name__, h.__name__) is None or LOWERS.get(h.__name__, h.__name__) in listed
    assert "MaxPool2d" in listed and "ReLU6" in listed and "AdaptiveMaxPool2d" in listed


@pytest.mark.parametrize("name", ["hardswish", "attention"])
@pytest.mark.parametrize("fmt", ["export", "script"])
def test_pure_unconverted_ops_in_files_are_not_called_code(name, fmt, tmp_path):
    """MobileNetV3's hardswish_ and ViT's attention are pure tensor ops: a file holding them is refused
    for the op (naming the layer), never as a file that would run code."""
    model, shape, op, where, why = UNCONVERTED[name]
    with pytest.raises(FrontendError) as e:
        _lower(model, shape, fmt, tmp_path)
    msg = str(e.value)
    assert "run code" not in msg and why in msg and f"at {where.split(' ')[0]} (" in msg, msg


def test_every_supported_aten_op_has_its_inplace_form_too():
    """``op_`` is ``op`` writing its result into its input: wherever aten has one, snnc lowers both."""
    from snn_compiler.frontend.torch.handlers import HANDLERS
    missing = []
    for op in HANDLERS:
        if not isinstance(op, torch._ops.OpOverload) or op.namespace != "aten":
            continue
        name = op._schema.name.split("::")[1]
        packet = getattr(torch.ops.aten, name + "_", None) if not name.endswith("_") else None
        if packet is not None and op._overloadname in packet.overloads():
            inplace = getattr(packet, op._overloadname)
            if HANDLERS.get(inplace) is not HANDLERS[op]:
                missing.append(str(inplace))
    assert not missing


class _MnasBlock(nn.Module):
    """torchvision's MnasNet _InvertedResidual: 1x1-BN-ReLU, kxk depthwise-BN-ReLU, 1x1-BN, + x when shapes allow."""

    def __init__(self, i, o, k, stride, t):
        super().__init__()
        self.apply_residual = i == o and stride == 1
        self.layers = nn.Sequential(
            nn.Conv2d(i, i * t, 1, bias=False), nn.BatchNorm2d(i * t), nn.ReLU(inplace=True),
            nn.Conv2d(i * t, i * t, k, stride, k // 2, groups=i * t, bias=False), nn.BatchNorm2d(i * t),
            nn.ReLU(inplace=True), nn.Conv2d(i * t, o, 1, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        return self.layers(x) + x if self.apply_residual else self.layers(x)


class _MnasNet(nn.Module):
    """MnasNet's layout at a small width: stem with a linear depthwise-separable conv, stacks of blocks
    (3x3 and 5x5, strided and residual), 1x1 head, mean over H and W, Dropout(inplace) + Linear."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4),
            _MnasBlock(4, 6, 3, 2, 3), _MnasBlock(6, 6, 3, 1, 3), _MnasBlock(6, 8, 5, 2, 3), _MnasBlock(8, 8, 5, 1, 3),
            nn.Conv2d(8, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(self.layers(x).mean([2, 3]))


def test_mnasnet_layout_compiles_and_its_int8_snn_agrees_with_its_ann():
    """The in-place dropout ('error: input' before) and the linear bottlenecks (composed) of MnasNet."""
    torch.manual_seed(6)
    net = _MnasNet()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.4)
    net.eval()
    x = torch.rand(64, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        want = net(x).numpy()
    g = from_module(net, (3, 32, 32))
    run_pipeline(g, CompileConfig(), STRUCTURAL)  # SNN form, the composed bottlenecks included: still the net
    np.testing.assert_allclose(run_ann(g, x.numpy()), want, rtol=0, atol=1e-3 * np.abs(want).max())  # torch: float32
    q = _compiled(net, x)
    ann = run_ann(q, x.numpy())  # with int8 weights
    np.testing.assert_allclose(ann, want, rtol=0, atol=0.01 * np.abs(want).max())
    snn = simulate(q, x.numpy(), timesteps=64)
    # (random weights give nearly the same logits for every input: the scores' agreement is the test)
    assert np.corrcoef(snn.scores.ravel(), ann.ravel())[0, 1] > 0.99
    assert (snn.predictions == want.argmax(1)).mean() >= 0.9
