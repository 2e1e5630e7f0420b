"""The PyTorch frontend's file handling: TorchScript and .pt2 files, input shapes, pickles refused
unless allowed, and files that are not models at all."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.dirname(__file__))
from frontend_helpers import _assert_matches, _batch, _lower  # noqa: E402
from models import zoo  # noqa: E402

from snn_compiler import ir  # noqa: E402
from snn_compiler.frontend import FrontendError, load_file  # noqa: E402


# torch 2.13 deprecates torch.jit; the frontend still reads TorchScript files
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


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
