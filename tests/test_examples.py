"""examples/train_lif_mnist.py --quick end to end, on MNIST-format files written from scikit-learn's
digits (so the test needs nothing from ../shared): it trains, compiles to int8, saves, finds the
numba and numpy engines equal, and prints the accuracy table with the float SNN reproducing torch."""
import importlib.util
import re
from pathlib import Path

from mnist_files import digits_as_mnist  # noqa: F401  (the fixture)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train_lif_mnist.py"


def test_train_lif_mnist_quick(digits_as_mnist, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_lif_mnist", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(["--quick", "--data-dir", str(digits_as_mnist), "--out", str(tmp_path / "lif")])
    out = capsys.readouterr().out
    print(out)  # shown when an assertion below fails
    assert (tmp_path / "lif.pt").exists() and (tmp_path / "lif.snnc").exists()
    assert f"saved the model to {tmp_path / 'lif.pt'}" in out
    assert re.search(r"bit-exact: numba engine == numpy engine on 20 images, .* layers: yes", out)
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)%$", out, re.M)
    assert [r[0] for r in rows] == ["4"]
    *_, agree, same_counts = rows[0]
    assert float(same_counts) >= 99.0  # the float SNN is torch's own run (tests/test_lif.py's bound)
    assert float(agree) >= 90.0        # int8 vs float: beta to 1/4096, 8-bit weights
