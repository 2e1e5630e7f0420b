"""The Python API's runs show progress as the CLI's do: a bar on stderr when it is a terminal (a
script run by hand), nothing in a log, a pipe or a notebook's captured stream, and progress=False
(per SNN or per call) turns it off."""
import io
import sys

import numpy as np
import pytest

from snn_compiler import SNN
from snn_compiler.progress import wanted

from builders import int_chain


class _Terminal(io.StringIO):
    """stderr as a terminal: what decides the default; tqdm writes its bar into it."""

    def isatty(self):
        return True


def _snn(**kw):
    g = int_chain([np.array([[40, -3, 25], [12, 30, -8]]), np.array([[9, -4]])], thresholds=[60, 9])
    return SNN(g, timesteps=20, readout="count", engine="numpy", **kw)


X = np.random.default_rng(0).random((30, 3))


def _run(monkeypatch, stream, snn, **kw):
    monkeypatch.setattr(sys, "stderr", stream)
    out = snn.run(X, **kw)
    monkeypatch.undo()
    return out, stream.getvalue()


def test_a_terminal_gets_a_bar_by_default_and_nothing_else_does(monkeypatch):
    pytest.importorskip("tqdm")
    quiet, err = _run(monkeypatch, io.StringIO(), _snn())
    assert err == ""
    shown, err = _run(monkeypatch, _Terminal(), _snn())
    assert "simulate" in err and "sample-step" in err
    assert (shown == quiet).all()   # the bar changes nothing of the result


def test_progress_false_turns_it_off_per_snn_or_per_call(monkeypatch):
    pytest.importorskip("tqdm")
    assert _run(monkeypatch, _Terminal(), _snn(progress=False))[1] == ""
    assert _run(monkeypatch, _Terminal(), _snn(), progress=False)[1] == ""
    # a call's True wins over the SNN's False, also through another built-in backend
    assert "simulate" in _run(monkeypatch, io.StringIO(), _snn(progress=False), progress=True)[1]
    assert "simulate" in _run(monkeypatch, io.StringIO(), _snn(), progress=True, backend="float")[1]
    # classify and accuracy go the same way
    snn = _snn()
    monkeypatch.setattr(sys, "stderr", _Terminal())
    snn.accuracy(X, np.zeros(len(X), int))
    assert "simulate" in sys.stderr.getvalue()


def test_a_value_that_is_not_yes_or_no_is_refused():
    assert wanted(True) is True and wanted(False) is False
    for bad in ("no", 0, 1, "auto"):
        with pytest.raises(ValueError, match="progress must be True, False or None"):
            wanted(bad)
    with pytest.raises(ValueError, match="progress must be"):
        _snn(progress="off")
    with pytest.raises(ValueError, match="progress must be"):
        _snn().run(X, progress="off")


def test_convert_takes_progress(monkeypatch):
    torch = pytest.importorskip("torch")
    import snn_compiler
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    snn = snn_compiler.convert(model, X, timesteps=8, progress=False)
    assert snn.progress is False
    assert _run(monkeypatch, _Terminal(), snn)[1] == ""
    with pytest.raises(ValueError, match="progress must be"):
        snn_compiler.convert(model, X, timesteps=8, progress="quiet")
