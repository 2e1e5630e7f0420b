"""Lowering a torch model through each input format, and comparing the IR's ANN reading with torch."""
import numpy as np
import torch

from snn_compiler.frontend import from_module, load_file
from snn_compiler.sim.emulator import run_ann


def _batch(shape, n=6, seed=0):
    return torch.randn((n,) + tuple(shape), generator=torch.Generator().manual_seed(seed))


def _lower(model, shape, fmt, tmp_path, pass_shape=True):
    """Lower ``model`` through ``fmt``: in memory, or saved to a file and loaded back."""
    example = _batch(shape, n=1, seed=1)
    if fmt == "module":
        return from_module(model, shape)
    if fmt in ("script", "trace"):
        ts = torch.jit.script(model) if fmt == "script" else torch.jit.trace(model, (example,))
        path = tmp_path / f"{fmt}.pt"
        torch.jit.save(ts, str(path))
    else:
        path = tmp_path / "model.pt2"
        torch.export.save(torch.export.export(model, (example,)), str(path))
    return load_file(path, shape if pass_shape else None)


def _assert_matches(graph, model, shape, atol=1e-5):
    x = _batch(shape)
    with torch.no_grad():
        want = model(x).numpy()
    got = run_ann(graph, x.numpy().astype(np.float64))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)
