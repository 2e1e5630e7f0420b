"""examples/nmnist_saccades.py --quick end to end, on MNIST-format files written from scikit-learn's
digits (the test reads nothing from ../shared): events -> frames -> a recurrent CUBA network trained
-> exported .pt2 -> int8 SNN; the integer engines agree, the float SNN is torch's own run and the
int8 SNN keeps the float SNN's predictions."""
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from snn_compiler import artifact, events
from snn_compiler.cli import main as cli_main
from snn_compiler.ir import is_recurrent

from mnist_files import digits_as_mnist  # noqa: F401  (the fixture)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "nmnist_saccades.py"


@pytest.mark.slow  # 10-20 s on 2 shared cores
def test_nmnist_saccades_quick(digits_as_mnist, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("nmnist_saccades", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    prefix = tmp_path / "out" / "nm"
    example.main(["--quick", "--data-dir", str(digits_as_mnist), "--out", str(prefix)])
    out = capsys.readouterr().out
    print(out)  # shown when an assertion below fails
    ev = re.findall(r"^(train|test): (\d+) digits -> (\d+) events", out, re.M)
    assert [(s, int(n)) for s, n, _ in ev] == [("train", 300), ("test", 100)]
    assert all(int(c) > 100 * int(n) for _, n, c in ev)  # a digit's edges give thousands of events

    # the files: events bin into the frames the example used, the .pt2 and the artifact are recurrent
    x, y, dropped = events.bin_file(f"{prefix}_test_events.npz", 10, window=(0, 300_000))  # what snnc bin-events does
    with np.load(f"{prefix}_test_frames.npz") as f:
        assert np.array_equal(f["x"], x) and np.array_equal(f["y"], y) and dropped == 0
    q = artifact.load(f"{prefix}.snnc")
    assert is_recurrent(q) and q.graph["snnc"]["timesteps"] == 10
    assert (prefix.parent / "nm.pt2").exists()
    # the CLI runs the artifact on the frames file as written
    assert cli_main(["simulate", f"{prefix}.snnc", "--data", f"{prefix}_test_frames.npz", "--readout", "count"]) == 0

    assert re.search(r"bit-exact: numba engine == numpy engine on 20 test digits, .* 2 layers: yes", out)
    row = re.search(r"^\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)%$", out, re.M)
    torch_acc, float_acc, int_acc, agree, same_counts = map(float, row.groups())
    assert same_counts >= 99.0     # the float SNN is torch's own run of the sequence (its ties differ:
    assert abs(torch_acc - float_acc) <= 10.0  # torch takes the lower index, snnc the higher membrane)
    assert agree >= 90.0           # int8: 8-bit weights and thresholds, one recurrent cycle
    assert float_acc > 20.0        # it learned something in three quick epochs (chance: 10)
