"""Through the CLI: `snnc compile` maps a 784-3000-10 MLP onto Loihi 1 cores, `--target truenorth`
writes a corelet."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from snn_compiler import artifact  # noqa: E402
from snn_compiler import backends  # noqa: E402
from snn_compiler.cli import main  # noqa: E402
from snn_compiler.mapping import check_core_map, format_report, report  # noqa: E402
from snn_compiler.passes.partition import partition  # noqa: E402


@pytest.fixture
def targets():
    """The targets as registered in backends/__init__.py: lava maps cores, truenorth writes a corelet."""
    assert partition in backends.get_target("lava").passes and "truenorth" in backends.TARGETS


def mlp_file(tmp_path, sizes, seed=0, binary=False):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).eval()
    x = np.random.default_rng(seed).random((64, sizes[0])).astype(np.float32)
    if binary:
        x = (x > 0.5).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    torch.jit.save(torch.jit.script(model), str(tmp_path / "model.pt"))
    return x


def test_cli_maps_3000_neuron_layer_on_loihi1(tmp_path, targets, capsys):
    mlp_file(tmp_path, [784, 3000, 10])
    out = tmp_path / "net.snnc"
    assert main(["compile", str(tmp_path / "model.pt"), "-o", str(out), "--target", "lava", "--profile", "loihi1",
                 "--input-shape", "784", "--calibration", str(tmp_path / "calib.npz")]) == 0
    q = artifact.load(str(out))
    cm = q.graph["snnc"]["core_map"]
    hidden = [n for n in cm["layers"] if len(cm["layers"][n]) >= 3]
    assert hidden, cm["layers"]
    assert check_core_map(q, cm)["ok"]
    info = report(q)
    assert info["valid"] and info["cores_used"] <= 1.1 * info["lower_bound"]
    assert "cores used" in format_report(info)


def test_cli_truenorth_writes_a_corelet(tmp_path, targets, capsys):
    mlp_file(tmp_path, [16, 20, 4], binary=True)
    out = tmp_path / "tn.snnc"
    assert main(["compile", str(tmp_path / "model.pt"), "-o", str(out), "--target", "truenorth", "--bits", "3",
                 "--input-bits", "1", "--input-shape", "16", "--calibration", str(tmp_path / "calib.npz")]) == 0
    corelet = json.loads((tmp_path / "tn.corelet.json").read_text())
    assert corelet["format"] == "snnc-corelet" and corelet["cores"]
    assert "tn.corelet.json" in capsys.readouterr().out



def test_compile_and_inspect_report_chips_and_inter_chip_links(tmp_path, targets, capsys):
    """A CNN mapped onto several small chips: the compile summary and `snnc inspect` say how many
    chips it uses and how many spike links cross them (the core map's traffic figures)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 4)).eval()
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).random((32, 2, 8, 8)).astype(np.float32))
    torch.jit.save(torch.jit.trace(model, torch.rand(1, 2, 8, 8)), str(tmp_path / "cnn.pt"))
    profile = tmp_path / "small.yaml"
    profile.write_text("name: small\ncore: {neurons: 64, input_axons: 512, output_axons: 1024, "
                       "synapse_memory_bits: 65536}\ncores_per_chip: 4\nchips: 8\n")
    out = tmp_path / "cnn.snnc"
    assert main(["compile", str(tmp_path / "cnn.pt"), "-o", str(out), "--profile", str(profile),
                 "--input-shape", "2,8,8", "--calibration", str(tmp_path / "calib.npz")]) == 0
    cm = artifact.load(str(out)).graph["snnc"]["core_map"]
    t = cm["traffic"]
    assert t["chips_used"] > 1 and 0 < t["inter_chip_links"] <= t["links"]
    line = (f"mapped onto {len(cm['cores'])} cores of small (8 chip(s) x 4 cores): lower bound {cm['lower_bound']}")
    assert line in capsys.readouterr().out
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{t['inter_chip_links']} ({100 * t['inter_chip_links'] / t['links']:.0f}%) between chips on {t['chips_used']} chip(s)" in text
    assert "cores per chip: " in text
