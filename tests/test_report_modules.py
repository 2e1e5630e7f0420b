"""The user's module names beside the IR's: every node a frontend lowers remembers the layer it came
from (torch module path, ONNX node name, Keras layer name), nodes the passes split off inherit it,
and the table survives the artifact, `snnc inspect` and the report."""
import json
import re
import warnings

import numpy as np
import pytest

from snn_compiler import artifact, origins
from snn_compiler.ir import input_node, output_node

from keras_helpers import conv, dense, pool, simple, write_sequential

torch = pytest.importorskip("torch")
nn = torch.nn


class _PoolNet(nn.Module):
    """A max pool (lowered by a pass into several IF layers ``features.2.max1`` ...) in a Sequential,
    a functional flatten at the top level, and a ReLU called from a custom module's forward."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


@pytest.fixture(scope="module")
def pooled():
    import snn_compiler
    torch.manual_seed(0)
    x = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    return snn_compiler.convert(_PoolNet().eval(), x, timesteps=8, bits=6), x


def test_torch_nodes_name_their_module_and_pass_made_nodes_inherit_it(pooled, tmp_path):
    snn, _ = pooled
    g = snn.graph
    lowered = [n for n in g if n.startswith("features.2.")]
    assert len(lowered) >= 3, "the max pool should have been lowered into several nodes"
    for n in lowered + ["features.2"]:
        assert origins.label(g, n) == "features.2 (MaxPool2d)", n
    assert origins.label(g, "features.0") == "features.0 (Conv2d)"
    assert origins.label(g, "fc") == "fc (Linear)"
    assert origins.label(g, "flatten") == "_PoolNet.forward (flatten)"
    unnamed = [n for n in g if not origins.label(g, n) and n not in (input_node(g), output_node(g))]
    assert unnamed == []
    # the artifact keeps the table as it is
    snn.save(tmp_path / "net.snnc")
    loaded = artifact.load(tmp_path / "net.snnc")
    assert origins.labels(loaded, list(loaded)) == origins.labels(g, list(g))


def test_inspect_and_the_report_show_the_module(pooled, tmp_path, capsys):
    from snn_compiler.cli import main
    from snn_compiler.report import build_report
    from snn_compiler.report.html import render
    snn, x = pooled
    snn.save(tmp_path / "net.snnc")
    assert main(["inspect", str(tmp_path / "net.snnc")]) == 0
    out = capsys.readouterr().out
    head = next(line for line in out.splitlines() if line.startswith("layer "))
    assert "from module" in head
    row = next(line for line in out.splitlines() if line.startswith("features.2.max1 "))
    assert "features.2 (MaxPool2d)" in row
    with warnings.catch_warnings():   # rate warnings of this untrained net are not what is tested here
        warnings.simplefilter("ignore")
        info = build_report(snn.graph, x, None, timesteps=[8], samples=20)
    assert info["modules"]["features.2.max1"] == "features.2 (MaxPool2d)"
    page = render(info)
    assert "<th>from module</th>" in page and "<td>features.2 (MaxPool2d)</td>" in page
    assert {L["module"] for L in info["raster"]["layers"]} >= {"features.1 (ReLU)", "features.2 (MaxPool2d)"}
    # the CLI's one-line summary and its JSON name the worst layer's module too
    np.savez(tmp_path / "data.npz", x=x[:20])
    args = ["report", str(tmp_path / "net.snnc"), "--data", str(tmp_path / "data.npz"), "--timesteps", "8",
            "-o", str(tmp_path / "r.html")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
        line = capsys.readouterr().out.splitlines()[0]
        assert main(args + ["--json"]) == 0
    worst = re.search(r"layer introducing most error: (\S+) \(from (.+)\)$", line)
    assert worst and worst.group(2) == info["modules"][worst.group(1)], line
    obj = json.loads(capsys.readouterr().out)
    assert obj["worst_module"] == info["modules"][obj["worst_layer"]]


def test_an_edited_table_is_ignored_not_trusted(pooled):
    """The table comes from the file: a malformed entry is no label (never a crash), and what is
    shown is printable text of bounded length."""
    snn, _ = pooled
    g = snn.graph.copy()
    g.graph = {"snnc": dict(snn.graph.graph["snnc"])}
    g.graph["snnc"]["modules"] = {"fc": "not a pair", "features.0": ["a\x1b[2J" + "x" * 500, "Conv2d"],
                                  "features.2": [1, 2]}
    assert origins.label(g, "fc") == "" and origins.label(g, "features.2.max1") == ""
    path = origins.label(g, "features.0")
    assert "\x1b" not in path and len(path) <= 2 * 200 + 3
    g.graph["snnc"]["modules"] = ["not", "a", "mapping"]
    assert origins.labels(g, list(g)) == {}


def test_onnx_nodes_keep_their_node_names(tmp_path):
    pytest.importorskip("onnx")
    from snn_compiler.frontend.onnx.graph import from_onnx
    torch.manual_seed(0)
    path = tmp_path / "m.onnx"
    torch.onnx.export(_PoolNet().eval(), torch.zeros(1, 1, 8, 8), str(path), dynamo=False)
    g = from_onnx(str(path))
    mods = origins.labels(g, list(g))
    assert any(v.endswith("(MaxPool)") for v in mods.values()) and any(v.endswith("(Gemm)") for v in mods.values())
    # torch's exporter names nodes by scope: the user's module path is in them
    assert any("features.2" in v for v in mods.values())


def test_keras_nodes_keep_their_layer_names(tmp_path):
    from snn_compiler.frontend.keras.load import from_keras_h5
    layers = [conv("conv_a", 1, 2, 3, activation="relu"), pool("MaxPooling2D", "pool_a"),
              simple("Flatten", "flat"), dense("head", 2 * 3 * 3, 4)]
    write_sequential(tmp_path / "m.h5", (8, 8, 1), layers)
    g = from_keras_h5(str(tmp_path / "m.h5"))
    mods = origins.labels(g, list(g))
    assert "conv_a (Conv2D)" in mods.values() and "head (Dense)" in mods.values()
    assert "pool_a (MaxPooling2D)" in mods.values()


def test_nir_nodes_keep_their_ids(pooled, tmp_path):
    """A NIR file snnc wrote, read back: each node names the NIR node (id and type) it came from."""
    pytest.importorskip("nir")
    from snn_compiler.frontend.nir import from_nir
    from snn_compiler.frontend.nir.export import write_nir
    snn, _ = pooled
    with pytest.warns(UserWarning, match="NIR cannot express reset by subtraction"):
        write_nir(snn.graph, tmp_path / "m.nir")
    g = from_nir(str(tmp_path / "m.nir"))
    mods = origins.labels(g, list(g))
    assert "fc (Affine)" in mods.values(), mods
    assert any(v.startswith("features.2.max1") and v.endswith("(IF)") for v in mods.values()), mods
