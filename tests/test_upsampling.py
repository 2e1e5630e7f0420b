"""Transposed convolutions and nearest upsampling (issue 19): the IR's Conv2d with input dilation.

``conv_transpose2d(x, w, stride=s, padding=q)`` is a Conv2d reading ``x`` with ``s - 1`` zeros
inserted between its values (input dilation ``s``), weight flipped, in/out swapped and padding
``k - 1 - q``; nearest upsampling by ``s`` is its depthwise case with an ``s x s`` kernel of ones.
Each test states what it proves: the op's ANN is torch's, every frontend lowers it, every engine
and Lava run it bit for bit, the mapper counts its synapses right, and what is refused says why.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from snn_compiler.compile import compile_model  # noqa: E402
from snn_compiler.config import CompileConfig  # noqa: E402
from snn_compiler.frontend import from_module  # noqa: E402
from snn_compiler.frontend.errors import FrontendError  # noqa: E402
from snn_compiler.ir import add_op, new_graph, ops as O, verify  # noqa: E402
from snn_compiler.sim.emulator import run_ann, simulate  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class _Ctx:
    """The frontends' context, as far as lowering.transposed_conv uses it (its refusals)."""

    def fail(self, msg):
        raise FrontendError(msg)


@pytest.mark.parametrize("stride,padding,dilation,groups,k", [
    (2, 0, 1, 1, 2), (2, 1, 1, 1, 4), (3, 1, 1, 2, 3), (2, 1, 2, 1, 3), (1, 0, 1, 4, 3), (2, 2, 1, 4, 5)])
def test_input_dilated_conv_is_torchs_transposed_conv(stride, padding, dilation, groups, k):
    from snn_compiler.frontend.lowering import transposed_conv
    rng = np.random.default_rng(stride * 7 + k)
    w = rng.normal(size=(4, 8 // groups, k, k))
    b = rng.normal(size=8)
    x = rng.normal(size=(3, 4, 5, 6))
    op = transposed_conv(_Ctx(), w, b, (stride, stride), (padding, padding), (dilation, dilation), groups)
    want = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, padding,
                              groups=groups, dilation=dilation).numpy()
    assert O.infer_shape(op, [(4, 5, 6)]) == want.shape[1:]
    np.testing.assert_allclose(op.ann([x]), want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("scale", [(2, 2), (3, 1), (2, 3)])
def test_nearest_upsampling_conv_copies_each_pixel(scale):
    from snn_compiler.frontend.lowering import nearest_upsampling_conv
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 5))
    op = nearest_upsampling_conv(3, scale)
    want = F.interpolate(torch.from_numpy(x), scale_factor=scale, mode="nearest").numpy()
    np.testing.assert_array_equal(op.ann([x]), want)


def test_transposed_convs_that_would_crop_or_pad_unevenly_are_refused():
    from snn_compiler.frontend.lowering import transposed_conv
    w = np.ones((2, 2, 3, 3))
    with pytest.raises(FrontendError, match="output_padding"):
        transposed_conv(_Ctx(), w, None, (2, 2), (1, 1), (1, 1), 1, output_padding=(1, 1))
    with pytest.raises(FrontendError, match="crops"):
        transposed_conv(_Ctx(), w, None, (2, 2), (3, 3), (1, 1), 1)


class Decoder(nn.Module):
    """A newcomer's encoder-decoder classifier: strided conv down, nearest upsampling then a conv,
    a transposed conv up (kernel 4, stride 2, padding 1: exact doubling), a grouped transposed conv."""

    def __init__(self, mode="nearest", size=None):
        super().__init__()
        self.down = nn.Conv2d(1, 8, 3, 2, 1)
        self.up = nn.Upsample(scale_factor=2, mode=mode) if size is None else nn.Upsample(size=size, mode=mode)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.tconv = nn.ConvTranspose2d(8, 4, 4, 2, 1)
        self.gconv = nn.ConvTranspose2d(4, 4, 3, 1, 1, groups=2)
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        x = torch.relu(self.down(x))
        x = torch.relu(self.conv(self.up(x)))
        x = torch.relu(self.gconv(torch.relu(self.tconv(x))))
        return self.fc(torch.flatten(x, 1))


def _decoder(seed=0, **kw):
    torch.manual_seed(seed)
    return Decoder(**kw).eval()


def _compiled(seed=0, n=24, target="reference"):
    net = _decoder(seed)
    x = torch.rand(n, 1, 14, 14)
    q = compile_model(from_module(net, (1, 14, 14)), CompileConfig(bits=8, calibration=x.numpy(), target=target))
    return net, q, x.numpy()


def test_upsampling_and_transposed_convs_lower_from_torch_export_and_read_like_torch():
    net = _decoder(size=(14, 14))  # output_size instead of scale_factor
    g = from_module(net, (1, 14, 14))
    kinds = {O.kind(g.nodes[n]["op"]) for n in g}
    assert "Conv2d" in kinds
    dilated = [n for n in g if isinstance(g.nodes[n]["op"], O.Conv2d) and g.nodes[n]["op"].dilates_input]
    assert len(dilated) == 2 and any(n.startswith("up") for n in dilated)  # the upsampling and the stride-2 tconv
    x = torch.rand(8, 1, 14, 14)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_ann(g, x.numpy().astype(np.float64)), want, rtol=0, atol=1e-5)


def test_every_engine_runs_it_bit_for_bit_and_the_int8_snn_follows_the_ann():
    net, q, x = _compiled()
    runs = {e: simulate(q, x, timesteps=48, engine=e, record=True) for e in ("numpy", "numba", "torch")}
    ref = runs["numpy"]
    for e in ("numba", "torch"):
        assert np.array_equal(runs[e].scores, ref.scores), e
        for layer in ref.counts:
            assert np.array_equal(runs[e].counts[layer], ref.counts[layer]), (e, layer)
    ann = run_ann(q, x)
    assert (ref.predictions == ann.argmax(1)).mean() >= 0.9
    assert all(r > 0 for r in ref.rates.values())  # every layer spikes: the comparison is not vacuous


def test_bilinear_and_fractional_upsampling_are_refused_with_the_reason():
    with pytest.raises(FrontendError, match=r"bilinear.*borders.*nearest.*ConvTranspose2d"):
        from_module(_decoder(mode="bilinear"), (1, 14, 14))
    with pytest.raises(FrontendError, match="not by whole factors"):
        from_module(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Upsample(size=(10, 10)), nn.Flatten(),
                                  nn.Linear(400, 3)).eval(), (1, 7, 7))


def test_the_list_of_what_snnc_lowers_names_upsampling_and_transposed_convs_but_not_bilinear():
    from snn_compiler.frontend.torch.handlers import HANDLERS
    from snn_compiler.frontend.torch.refusals import lowered_layers
    listed = lowered_layers(HANDLERS)
    assert "ConvTranspose2d" in listed and "Upsample (nearest)" in listed and "interpolating" not in listed


@pytest.mark.parametrize("stride,padding,k,groups", [(2, 0, 2, 4), (2, 1, 4, 1), (3, 1, 3, 2)])
def test_the_mapper_counts_an_input_dilated_convs_synapses_in_closed_form_and_by_enumeration(stride, padding, k,
                                                                                              groups):
    """Only the taps that land on real inputs are synapses (the inserted zeros are not inputs)."""
    from snn_compiler.frontend.lowering import transposed_conv
    from snn_compiler.mapping.bounds import _fanouts, _fanouts_enumerated, _offsets
    from snn_compiler.mapping.network import build_net
    w = np.random.default_rng(k).normal(size=(4, 8 // groups, k, k))
    conv = transposed_conv(_Ctx(), w, None, (stride, stride), (padding, padding), (1, 1), groups)
    g = new_graph()
    x = add_op(g, "in", O.Input((4, 5, 6)))
    r = add_op(g, "r", O.IF(), [add_op(g, "c0", O.Conv2d(np.ones((4, 4, 1, 1))), [x])])
    up = add_op(g, "up", conv, [r])
    r2 = add_op(g, "r2", O.IF(), [up])
    n_out = int(np.prod(O.infer_shape(conv, [(4, 5, 6)])))
    add_op(g, "out", O.Output(), [add_op(g, "fc", O.Dense(np.ones((3, n_out))), [add_op(g, "flat", O.Flatten(), [r2])])])
    verify(g)
    net = build_net(g)
    offsets = _offsets(net)
    closed, enumerated = _fanouts(net, "r2", offsets), _fanouts_enumerated(net, "r2", offsets)
    assert np.array_equal(np.sort(closed), np.sort(enumerated))
    # the same count the ANN's transposed conv has: every input pixel times every tap that lands inside
    ones = torch.ones(1, 4, 5, 6)
    per_input = F.conv_transpose2d(ones, torch.ones(4, 8 // groups, k, k), stride=stride, padding=padding,
                                   groups=groups).sum().item()
    assert closed.sum() == per_input


def test_it_maps_onto_loihi2_and_the_checker_agrees():
    from snn_compiler.mapping import partition_graph
    from mapping_helpers import assert_map_ok
    _, q, _ = _compiled(n=8)
    cm = partition_graph(q, "loihi2", 8)
    assert_map_ok(q, cm, "loihi2")


def test_the_artifact_keeps_the_input_dilation(tmp_path):
    from snn_compiler import artifact
    _, q, x = _compiled(n=8)
    path = tmp_path / "decoder.snnc"
    artifact.save(q, path)
    back = artifact.load(path)
    assert [back.nodes[n]["op"].input_dilation for n in back if isinstance(back.nodes[n]["op"], O.Conv2d)] == \
        [q.nodes[n]["op"].input_dilation for n in q if isinstance(q.nodes[n]["op"], O.Conv2d)]
    assert np.array_equal(simulate(back, x, timesteps=16).scores, simulate(q, x, timesteps=16).scores)


def test_nir_export_refuses_it_naming_the_layer():
    from snn_compiler.frontend.nir.export import NIRError, export_nir
    _, q, _ = _compiled(n=8)
    with pytest.raises(NIRError, match="dilates its input"):
        export_nir(q)


@pytest.mark.lava
def test_lava_runs_it_as_sparse_connections_equal_to_the_reference_spike_for_spike():
    from snn_compiler.backends import lava
    if not lava.available():
        pytest.skip("Lava backend needs .venv-lava (Python 3.10, lava-nc 0.10.0); run scripts/bootstrap.sh")
    _, q, x = _compiled(n=4, target="lava")
    ref = simulate(q, x, timesteps=12, record=True)
    got = lava.run(q, x, timesteps=12, record=True)
    assert np.array_equal(ref.scores, got.scores)
    for layer in ref.counts:
        assert np.array_equal(ref.counts[layer], got.counts[layer]), layer
    assert sum(int(c.sum()) for c in ref.counts.values()) > 0


def test_upsampling_and_transposed_convs_lower_from_onnx_and_read_like_torch():
    from snn_compiler.frontend.onnx.graph import from_onnx
    from test_zoo_concat import _onnx
    net = _decoder(3)
    g = from_onnx(_onnx(net, (1, 14, 14)))
    assert sum(isinstance(g.nodes[n]["op"], O.Conv2d) and g.nodes[n]["op"].dilates_input for n in g) == 2
    x = torch.rand(8, 1, 14, 14)
    with torch.no_grad():
        want = net(x).numpy()
    np.testing.assert_allclose(run_ann(g, x.numpy().astype(np.float64)), want, rtol=0, atol=1e-5)
    with pytest.raises(FrontendError, match=r"Resize mode 'linear'.*borders"):
        from_onnx(_onnx(_decoder(mode="bilinear"), (1, 14, 14)))


def test_keras_upsampling2d_and_conv2dtranspose_read_as_keras(tmp_path):
    """A .h5 written by hand (keras_helpers); the reference is torch on Keras' weights, NHWC flattened."""
    pytest.importorskip("h5py")
    from keras_helpers import RNG, conv, dense, simple, write_sequential
    from snn_compiler.frontend.keras import from_keras_h5
    kt = RNG.normal(size=(4, 4, 3, 4)) / 8  # Conv2DTranspose kernel: (kH, kW, filters, in)
    layers = [conv("c0", 3, 4, 3, padding="same", activation="relu"),
              simple("UpSampling2D", "up", size=[2, 2], interpolation="nearest", data_format="channels_last"),
              conv("c1", 4, 4, 3, padding="same", activation="relu"),
              ("Conv2DTranspose", {"name": "t", "filters": 3, "kernel_size": [4, 4], "strides": [2, 2],
                                   "padding": "same", "data_format": "channels_last", "dilation_rate": [1, 1],
                                   "activation": "relu", "use_bias": True, "output_padding": None},
               [("kernel", kt), ("bias", RNG.normal(size=3) * 0.1)]),
              simple("Flatten", "flat"), dense("fc", 24 * 24 * 3, 5)]
    g = from_keras_h5(write_sequential(tmp_path / "m.h5", (6, 6, 3), layers))
    x = RNG.random((4, 6, 6, 3))
    w = {name: {k: torch.from_numpy(np.asarray(v, np.float32).astype(np.float64)) for k, v in ws}
         for _, cfg, ws in layers for name in [cfg["name"]]}
    h = torch.from_numpy(x).permute(0, 3, 1, 2)
    h = torch.relu(F.conv2d(h, w["c0"]["kernel"].permute(3, 2, 0, 1), w["c0"]["bias"], padding=1))
    h = torch.relu(F.conv2d(F.interpolate(h, scale_factor=2), w["c1"]["kernel"].permute(3, 2, 0, 1), w["c1"]["bias"],
                            padding=1))
    h = torch.relu(F.conv_transpose2d(h, w["t"]["kernel"].permute(3, 2, 0, 1), w["t"]["bias"], stride=2, padding=1))
    want = (h.permute(0, 2, 3, 1).reshape(4, -1) @ w["fc"]["kernel"] + w["fc"]["bias"]).numpy()
    np.testing.assert_allclose(run_ann(g, x.transpose(0, 3, 1, 2)), want, rtol=0, atol=1e-6 * np.abs(want).max())
    bilinear = [layers[0], simple("UpSampling2D", "up", size=[2, 2], interpolation="bilinear",
                                  data_format="channels_last")] + layers[2:]
    with pytest.raises(FrontendError, match="interpolation 'bilinear'"):
        from_keras_h5(write_sequential(tmp_path / "b.h5", (6, 6, 3), bilinear))
