import json
import os
import zipfile

import numpy as np
import pytest

from snn_compiler import artifact
from snn_compiler.config import CompileConfig
from snn_compiler.compile import compile_model
from snn_compiler.ir import add_op, new_graph
from snn_compiler.ir import ops as O
from snn_compiler.sim.emulator import simulate


def compiled(rng):
    g = new_graph()
    add_op(g, "in", O.Input((2, 6, 6)))
    add_op(g, "conv", O.Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), padding=(1, 1)), ["in"])
    add_op(g, "relu", O.IF(), ["conv"])
    add_op(g, "pool", O.AvgPool2d((2, 2), (2, 2)), ["relu"])
    add_op(g, "flat", O.Flatten(), ["pool"])
    add_op(g, "fc", O.Dense(rng.normal(size=(4, 27)), rng.normal(size=4)), ["flat"])
    add_op(g, "out", O.Output(), ["fc"])
    return compile_model(g, CompileConfig(calibration=rng.random((20, 2, 6, 6))))


def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    q = compiled(rng)
    artifact.save(q, tmp_path / "a.snnc")
    r = artifact.load(tmp_path / "a.snnc")
    assert list(r.nodes) == list(q.nodes) and set(r.edges) == set(q.edges)
    assert r.graph["snnc"] == json.loads(json.dumps(q.graph["snnc"]))
    for n in q.nodes:
        a, b = q.nodes[n]["op"], r.nodes[n]["op"]
        assert type(a) is type(b)
        for k, v in vars(a).items():
            w = getattr(b, k)
            if isinstance(v, np.ndarray):
                assert v.dtype == w.dtype and np.array_equal(v, w)
            else:
                assert v == w
    x = rng.random((5, 2, 6, 6))
    assert np.array_equal(simulate(q, x, timesteps=8).scores, simulate(r, x, timesteps=8).scores)
    # and again: saving the loaded graph gives the same bytes
    assert artifact.to_bytes(r) == artifact.to_bytes(artifact.load(tmp_path / "a.snnc"))


def test_no_pickle_anywhere(tmp_path):
    q = compiled(np.random.default_rng(1))
    artifact.save(q, tmp_path / "a.snnc")
    with zipfile.ZipFile(tmp_path / "a.snnc") as z:
        for name in z.namelist():
            if name.endswith(".npy"):
                import io
                np.load(io.BytesIO(z.read(name)), allow_pickle=False)


@pytest.mark.parametrize("content,match", [(b"hello", "not an snnc artifact"), (None, "not an snnc artifact")])
def test_not_an_artifact(tmp_path, content, match):
    p = tmp_path / "x.snnc"
    if content is None:
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("manifest.json", json.dumps({"format": "other"}))
    else:
        p.write_bytes(content)
    with pytest.raises(artifact.ArtifactError, match=match):
        artifact.load(p)


def test_newer_version_refused(tmp_path):
    p = tmp_path / "x.snnc"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("manifest.json", json.dumps({"format": "snnc-artifact", "version": 99}))
    with pytest.raises(artifact.ArtifactError, match="version 99"):
        artifact.load(p)


def test_failed_write_leaves_nothing(tmp_path):
    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        artifact.atomic_write(tmp_path / "out.snnc", boom)
    assert os.listdir(tmp_path) == []
