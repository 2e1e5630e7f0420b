import io
import json
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


def test_bytes_depend_only_on_the_graph(monkeypatch):
    import time
    q = compiled(np.random.default_rng(2))
    monkeypatch.setattr(time, "time", lambda: 1_000_000_000.0)
    first = artifact.to_bytes(q)
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    assert artifact.to_bytes(q) == first
    with zipfile.ZipFile(io.BytesIO(first)) as z:
        infos = z.infolist()
    assert infos[0].filename == "manifest.json"
    assert {(i.date_time, i.external_attr >> 16, i.create_system) for i in infos} == {((1980, 1, 1, 0, 0, 0), 0o644, 3)}


def test_quantize_records_the_registers_the_loader_checks(tmp_path):
    q = compiled(np.random.default_rng(3))
    assert q.graph["snnc"]["registers"]["threshold_bits"] == 17
    q.graph["snnc"]["registers"]["threshold_bits"] = 4  # a narrower register than the thresholds
    layer = next(n for n in q if isinstance(q.nodes[n]["op"], O.Neuron))
    (tmp_path / "a.snnc").write_bytes(artifact.to_bytes(q))
    with pytest.raises(artifact.ArtifactError, match=f"node '{layer}': threshold .* 4-bit threshold register") as e:
        artifact.load(tmp_path / "a.snnc")
    assert "\n" not in str(e.value)


def test_hand_built_graph_without_registers_loads_with_the_reference_ones(tmp_path):
    from builders import int_chain
    g = int_chain([np.array([[3, -2]]), np.array([[1]])], [100, 1], biases=[np.array([5]), np.array([0])])
    (tmp_path / "a.snnc").write_bytes(artifact.to_bytes(g))
    r = artifact.load(tmp_path / "a.snnc")
    assert r.nodes["if0"]["op"].threshold == 100
    g.nodes["if0"]["op"].threshold = 1 << 17  # beyond the reference 17-bit register
    (tmp_path / "b.snnc").write_bytes(artifact.to_bytes(g))
    with pytest.raises(artifact.ArtifactError, match="node 'if0': threshold 131072 is outside the 17-bit"):
        artifact.load(tmp_path / "b.snnc")


def _rewrite(src, dst, fn):
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    fn(members)
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def _npz(members):
    b = io.BytesIO()
    np.savez(b, w=np.zeros(3))
    name = next(n for n in members if n.endswith("weight.npy"))
    members[name] = b.getvalue()


def _missing(members):
    del members[next(n for n in members if n.endswith("weight_int.npy"))]


def _duplicate(members):
    m = json.loads(members["manifest.json"])
    m["nodes"].append(m["nodes"][0])
    members["manifest.json"] = json.dumps(m).encode()


def _edge(members):
    m = json.loads(members["manifest.json"])
    m["edges"][0][2] = "zero"
    members["manifest.json"] = json.dumps(m).encode()


def _name(members):
    m = json.loads(members["manifest.json"])
    old = m["nodes"][0]["name"]
    m["nodes"][0]["name"] = "in\nput"
    m["edges"] = [[("in\nput" if s == old else s), d, p] for s, d, p in m["edges"]]
    members["manifest.json"] = json.dumps(m).encode()


@pytest.mark.parametrize("fn, words", [(_npz, "not a .npy array"), (_missing, "is missing"), (_duplicate, "appears twice"),
                                       (_edge, "edge"), (_name, "printable")])
def test_malformed_members_are_refused_on_one_line(tmp_path, fn, words):
    q = compiled(np.random.default_rng(4))
    artifact.save(q, tmp_path / "a.snnc")
    _rewrite(tmp_path / "a.snnc", tmp_path / "b.snnc", fn)
    with pytest.raises(artifact.ArtifactError, match=words) as e:
        artifact.load(tmp_path / "b.snnc")
    assert "\n" not in str(e.value)
