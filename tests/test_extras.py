"""A missing optional package is named with the pip extra that brings it, before any work starts."""
import importlib.util

import pytest

from snn_compiler import cli
from snn_compiler.extras import EXTRA_OF, MissingExtra, require


@pytest.fixture
def no_matplotlib(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))


@pytest.mark.parametrize("argv", [
    ["simulate", "missing.snnc", "--data", "missing.npz", "--plot", "p.png"],
    ["report", "missing.snnc", "--data", "missing.npz", "-o", "r.html"],
])
def test_plot_and_report_say_which_extra_before_reading_anything(argv, no_matplotlib, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "needs matplotlib" in err and "pip install 'snnc[plot]'" in err
    assert "missing.snnc" not in err          # refused before the artifact (absent here) was read
    assert not list(tmp_path.iterdir())      # and nothing written


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(EXTRA_OF, "not_a_module_xyz", "interop")
    with pytest.raises(MissingExtra, match=r"^reading X needs not_a_module_xyz, .*pip install 'snnc\[interop\]'"):
        require("not_a_module_xyz", "reading X")
