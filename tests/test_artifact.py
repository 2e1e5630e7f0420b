import io
import json
import zipfile
import zlib

import numpy as np
import pytest

from snn_compiler import artifact
from snn_compiler.config import CompileConfig
from snn_compiler.compile import compile_model
from snn_compiler.ir import add_op, new_graph
from snn_compiler.ir import ops as O
from snn_compiler.sim.emulator import run_ann, simulate


def compiled(rng, bits=8, neuron=O.IF, norm=None):
    g = new_graph()
    add_op(g, "in", O.Input((2, 6, 6)))
    add_op(g, "conv", O.Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), padding=(1, 1)), ["in"])
    add_op(g, "relu", neuron(), ["conv"])
    add_op(g, "pool", O.AvgPool2d((2, 2), (2, 2)), ["relu"])
    add_op(g, "flat", O.Flatten(), ["pool"])
    add_op(g, "fc", O.Dense(rng.normal(size=(4, 27)), rng.normal(size=4)), ["flat"])
    add_op(g, "out", O.Output(), ["fc"])
    return compile_model(g, CompileConfig(bits=bits, calibration=rng.random((20, 2, 6, 6)), norm=norm))


def readings(g, x):
    out = {mode: simulate(g, x, mode=mode, timesteps=8).scores for mode in ("int", "float")}
    return dict(out, ann=run_ann(g, x))


def assert_same_graph(q, r, weights_within=0.0):
    """Same nodes, edges, facts and fields (dtypes included); float weights within
    ``weights_within`` integer steps (0: bit-identical)."""
    assert list(r.nodes) == list(q.nodes) and set(r.edges) == set(q.edges)
    assert r.graph["snnc"] == json.loads(json.dumps(q.graph["snnc"]))
    for n in q.nodes:
        a, b = q.nodes[n]["op"], r.nodes[n]["op"]
        assert type(a) is type(b)
        for k, v in vars(a).items():
            w = getattr(b, k)
            if k == "weight" and weights_within:
                step = np.abs(v).max() / np.abs(a.weight_int).max()
                assert v.dtype == w.dtype and np.abs(v - w).max() <= weights_within * step
            elif isinstance(v, np.ndarray):
                assert v.dtype == w.dtype and np.array_equal(v, w), (n, k)
            else:
                assert v == w


def test_round_trip_is_exact_but_for_the_float_weights_copy(tmp_path):
    """Integers, facts and every other field come back bit-identical, in the dtypes the compiler
    works in; the float weights (kept for the float and ANN readings) within 2**-12 of an integer
    step, a fixed point: saving the loaded graph gives the same bytes, so every reading of every
    later load is bit-identical."""
    rng = np.random.default_rng(0)
    q = compiled(rng)
    artifact.save(q, tmp_path / "a.snnc")
    r = artifact.load(tmp_path / "a.snnc")
    assert_same_graph(q, r, weights_within=2.0 ** -12 * (1 + 1e-9))
    x = rng.random((5, 2, 6, 6))
    before, after = readings(q, x), readings(r, x)
    assert np.array_equal(before["int"], after["int"])
    # the float readings, with weights 4096x finer than the integer SNN's: the same spikes, scores
    # within 1e-5 of their size, the same predictions
    for mode in ("float", "ann"):
        assert np.allclose(before[mode], after[mode], rtol=0, atol=1e-5 * np.abs(before[mode]).max()), mode
        assert np.array_equal(before[mode].argmax(1), after[mode].argmax(1)), mode
    assert artifact.to_bytes(r) == (tmp_path / "a.snnc").read_bytes()
    again = artifact.load(tmp_path / "a.snnc")
    assert_same_graph(r, again)
    for mode, v in readings(again, x).items():
        assert np.array_equal(v, after[mode]), mode


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16])
def test_residual_encoding_is_a_fixed_point_of_decode_then_encode(bits):
    """Saving a loaded artifact gives the same bytes for any weights, not only the ones above: the
    step re-derived from the decoded weights is the stored one, and a residual of 0 is never
    written as -0 (numpy 2.4 rounds tiny negative residuals to -0; the decoded weight gives +0)."""
    top = 2 ** (bits - 1) - 1
    for seed in range(300):
        rng = np.random.default_rng(seed)
        w = rng.normal(size=int(rng.integers(1, 200))) * 10.0 ** rng.uniform(-6, 3)
        wi = np.round(w / (np.abs(w).max() / top)).astype(np.int64)
        step, r = artifact._residuals(w, wi)
        assert not np.signbit(r[r == 0]).any()
        again = artifact._residuals(artifact._from_residuals(step, r, wi), wi)
        assert again[0] == step and again[1].tobytes() == r.tobytes(), seed


def test_integer_float_weights_round_trip_bit_identical_on_all_readings(tmp_path):
    from builders import int_chain
    g = int_chain([np.array([[3, -2, 7]]), np.array([[1]])], [100, 1], biases=[np.array([5]), np.array([0])])
    (tmp_path / "a.snnc").write_bytes(artifact.to_bytes(g))
    r = artifact.load(tmp_path / "a.snnc")
    assert_same_graph(g, r)
    x = np.random.default_rng(1).random((6, 3))
    for mode, v in readings(g, x).items():
        assert np.array_equal(v, readings(r, x)[mode]), mode


def _members(path):
    with zipfile.ZipFile(path) as z:
        return {i.filename: (i, z.read(i.filename)) for i in z.infolist()}


def _stored(path, node, field):
    members = _members(path)
    m = json.loads(members["manifest.json"][1])
    i = [n["name"] for n in m["nodes"]].index(node)
    return np.load(io.BytesIO(members[f"arrays/{i}/{field}.npy"][1]), allow_pickle=False), m["nodes"][i]


@pytest.mark.parametrize("bits, weights", [(8, np.int8), (4, np.int8), (12, np.int16), (16, np.int16)])
def test_integers_are_stored_in_the_narrowest_dtype_of_their_register(tmp_path, bits, weights):
    q = compiled(np.random.default_rng(5), bits=bits, neuron=lambda: O.LIF(0.75), norm="model")  # a LIF: decay_v
    artifact.save(q, tmp_path / "a.snnc")
    for node in ("conv", "fc"):
        wi, info = _stored(tmp_path / "a.snnc", node, "weight_int")
        assert wi.dtype == weights and np.array_equal(wi, q.nodes[node]["op"].weight_int)
        w, _ = _stored(tmp_path / "a.snnc", node, "weight")
        assert w.dtype == np.float16 and info["weight_step"] > 0
    assert _stored(tmp_path / "a.snnc", "relu", "bias")[0].dtype == np.int32    # the 24-bit current register
    assert _stored(tmp_path / "a.snnc", "relu", "decay_v")[0].dtype == np.int16  # 0..4096
    assert _stored(tmp_path / "a.snnc", "conv", "bias")[0].dtype == np.float64   # per channel: kept as computed
    r = artifact.load(tmp_path / "a.snnc")
    assert r.nodes["conv"]["op"].weight_int.dtype == np.int32 and r.nodes["relu"]["op"].decay_v.dtype == np.int64
    x = np.random.default_rng(6).random((4, 2, 6, 6))
    assert np.array_equal(simulate(q, x, timesteps=8).scores, simulate(r, x, timesteps=8).scores)


def test_integers_beyond_their_register_dtype_are_refused_when_saving():
    from builders import int_chain
    g = int_chain([np.array([[40000, 1]]), np.array([[1]])], [100, 1])  # no bits recorded: 16-bit weights
    with pytest.raises(ValueError, match="node 'fc0': weight_int \\[0, 40000\\] does not fit int16"):
        artifact.to_bytes(g)


def test_members_are_deflated_where_it_pays(tmp_path):
    q = compiled(np.random.default_rng(7))
    artifact.save(q, tmp_path / "a.snnc")
    for name, (info, data) in _members(tmp_path / "a.snnc").items():
        deflated = info.compress_type == zipfile.ZIP_DEFLATED
        assert deflated == (len(zlib.compress(data[:1 << 20], 1)) < 0.9 * len(data[:1 << 20])), name
    assert _members(tmp_path / "a.snnc")["manifest.json"][0].compress_type == zipfile.ZIP_DEFLATED


def old_format(graph, version):
    """The bytes an snnc of artifact ``version`` (1 or 2) wrote for ``graph``: every array in its
    memory dtype (int32 weights, float64 weights, int64 biases), all deflated; version 1 with IF
    and Output kinds and the reset and membrane width on the graph."""
    nodes, arrays = [], {}
    state = dict(graph.graph["snnc"])
    for i, n in enumerate(graph.nodes):
        op = graph.nodes[n]["op"]
        attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(op).items()
                 if not isinstance(v, np.ndarray)}
        names = [k for k, v in vars(op).items() if isinstance(v, np.ndarray)]
        arrays.update({f"arrays/{i}/{k}.npy": getattr(op, k) for k in names})
        kind = type(op).__name__
        if version == 1 and kind == "Neuron":
            kind = "Output" if attrs.pop("readout") else "IF"
            state.update(reset=attrs.pop("reset"), membrane_bits=attrs.pop("membrane_bits"))
        nodes.append({"name": n, "kind": kind, "attrs": attrs, "arrays": names})
    manifest = {"format": "snnc-artifact", "version": version, "graph": state, "nodes": nodes,
                "edges": [[s, d, graph.edges[s, d]["port"]] for s, d in graph.edges]}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
        for name, arr in arrays.items():
            b = io.BytesIO()
            np.save(b, arr, allow_pickle=False)
            z.writestr(name, b.getvalue())
    return buf.getvalue()


@pytest.mark.parametrize("version", [1, 2])
def test_versions_1_and_2_still_load_bit_identical(tmp_path, version):
    rng = np.random.default_rng(8)
    q = compiled(rng)
    (tmp_path / "old.snnc").write_bytes(old_format(q, version))
    r = artifact.load(tmp_path / "old.snnc")
    assert_same_graph(q, r)
    x = rng.random((5, 2, 6, 6))
    for mode, v in readings(q, x).items():
        assert np.array_equal(v, readings(r, x)[mode]), mode
    # saved again it is a version-3 file, 8-bit weights in int8
    artifact.save(r, tmp_path / "new.snnc")
    assert json.loads(_members(tmp_path / "new.snnc")["manifest.json"][1])["version"] == 3
    assert _stored(tmp_path / "new.snnc", "conv", "weight_int")[0].dtype == np.int8


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
    assert artifact.to_bytes(compiled(np.random.default_rng(2))) == first  # a second compile of the same model
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


@pytest.mark.parametrize("fn, words", [(_npz, "not a (readable )?.npy array"), (_missing, "is missing"), (_duplicate, "appears twice"),
                                       (_edge, "edge"), (_name, "printable")])
def test_malformed_members_are_refused_on_one_line(tmp_path, fn, words):
    q = compiled(np.random.default_rng(4))
    artifact.save(q, tmp_path / "a.snnc")
    _rewrite(tmp_path / "a.snnc", tmp_path / "b.snnc", fn)
    with pytest.raises(artifact.ArtifactError, match=words) as e:
        artifact.load(tmp_path / "b.snnc")
    assert "\n" not in str(e.value)


def _change_array(node, field, fn):
    def change(members):
        m = json.loads(members["manifest.json"])
        i = [n["name"] for n in m["nodes"]].index(node)
        name = f"arrays/{i}/{field}.npy"
        b = io.BytesIO()
        np.save(b, fn(np.load(io.BytesIO(members[name]))))
        members[name] = b.getvalue()
    return change


@pytest.mark.parametrize("fn, words", [
    (_change_array("conv", "weight_int", lambda a: np.where(a == a.max(), 100, a)), "outside the 4-bit weight range ±7"),
    (_change_array("conv", "weight_int", lambda a: a.astype(np.int32)), "weight_int has dtype int32, expected int8"),
    (_change_array("fc", "weight_int", lambda a: a.astype(np.uint8)), "weight_int has dtype uint8"),
    (_change_array("relu", "bias", lambda a: a.astype(np.int64)), "bias has dtype int64, expected int32"),
    (_change_array("conv", "weight", lambda a: a.astype(np.float64)), "weight stored as residuals must be float16"),
])
def test_a_wrong_dtype_or_a_value_beyond_its_bits_is_refused(tmp_path, fn, words):
    q = compiled(np.random.default_rng(9), bits=4)
    artifact.save(q, tmp_path / "a.snnc")
    _rewrite(tmp_path / "a.snnc", tmp_path / "b.snnc", fn)
    with pytest.raises(artifact.ArtifactError, match=words) as e:
        artifact.load(tmp_path / "b.snnc")
    assert "\n" not in str(e.value) and "b.snnc" in str(e.value)
