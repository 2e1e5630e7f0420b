"""Registers never wrap: at compile time, when an artifact is loaded, and when a profile is loaded.

Every refusal goes through the real CLI: a non-zero exit, one line on stderr naming the layer or
node and the field, no traceback, nothing written. On artifacts the loader accepts, the numpy
and numba engines agree exactly (a property test over hand-built integer networks).
"""
import io
import json
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .tools import assert_refused, snnc

torch = pytest.importorskip("torch")

from models import zoo  # noqa: E402  (tests/ is on sys.path, see tests/conftest.py)

from snn_compiler import artifact  # noqa: E402
from snn_compiler.ir import add_op, new_graph, verify  # noqa: E402
from snn_compiler.ir import ops as O  # noqa: E402
from snn_compiler.mapping import ProfileError, load_profile_dict  # noqa: E402
from snn_compiler.sim import fast  # noqa: E402
from snn_compiler.sim.emulator import simulate  # noqa: E402

IF_LAYER = "features.2"     # the CNN's first neuron layer (read back from `snnc inspect --json` below)
CONV = "features.0"         # the connection into it, reading the Input


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("registers")
    model, shape = zoo()["cnn"]
    rng = np.random.default_rng(0)
    x = rng.random((20,) + shape).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(d / "calib.npz", x=x)
    np.savez(d / "data.npz", x=x, y=y)
    torch.jit.save(torch.jit.script(model), str(d / "model.pt"))
    proc = snnc("compile", "model.pt", "--input-shape", "1,8,8", "--calibration", "calib.npz", "-o", "base.snnc", cwd=d)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(snnc("inspect", "--json", "base.snnc", cwd=d).stdout)
    kinds = {r["name"]: r["op"] for r in info["layer_info"]}
    assert kinds[IF_LAYER] == "IF" and kinds[CONV] == "Conv2d" and kinds["input"] == "Input", kinds
    return d


def compile_args(*extra):
    return ("compile", "model.pt", "--input-shape", "1,8,8", "--calibration", "calib.npz", "-o", "out.snnc") + extra


# ---- compile time: every integer the quantizer writes fits its register ---------------------------

@pytest.mark.parametrize("args, words", [
    (("--norm", "scale:1e-300"), ["--norm", "scale:1e-300"]),
    (("--layer-scale", f"{IF_LAYER}=1e-300"), [IF_LAYER, "--layer-scale"]),
    (("--layer-scale", f"{IF_LAYER}=inf"), [IF_LAYER, "--layer-scale"]),
    # in range for the option, but b / scale does not fit the 24-bit register (int64 wrapped it before)
    (("--layer-scale", f"{IF_LAYER}=1e-20"), [IF_LAYER, "bias", "24-bit current register"]),
    # a scale so large that every weight of the layer rounds to zero at the largest threshold
    (("--layer-scale", f"{IF_LAYER}=1e12"), [IF_LAYER, CONV, "quantize to zero"]),
])
def test_compile_refuses_what_would_wrap(files, unchanged, args, words):
    with unchanged(files):
        proc = snnc(*compile_args(*args), cwd=files)
    assert_refused(proc, *words)


# ---- load time: a tampered artifact is refused by every command -----------------------------------

def rewrite(src, dst, change):
    """Copy artifact ``src`` to ``dst`` with ``change(manifest, arrays)`` applied; ``arrays`` maps
    (node name, field) -> the array to store (read lazily from the original)."""
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(members["manifest.json"])
    index = {n["name"]: i for i, n in enumerate(manifest["nodes"])}

    class Arrays(dict):
        def __missing__(self, key):
            return np.load(io.BytesIO(members[f"arrays/{index[key[0]]}/{key[1]}.npy"]))

    arrays = Arrays()
    change(manifest, arrays, {n["name"]: n for n in manifest["nodes"]})
    for (node, field), arr in dict.items(arrays):
        b = io.BytesIO()
        np.save(b, arr)
        members[f"arrays/{index[node]}/{field}.npy"] = b.getvalue()
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def _set(node, field, value):
    def change(m, arrays, nodes):
        nodes[node]["attrs"][field] = value
    return change


def _state(**kv):
    def change(m, arrays, nodes):
        m["graph"].update(kv)
    return change


def _array(node, field, fn):
    def change(m, arrays, nodes):
        arrays[node, field] = fn(arrays[node, field])
    return change


def _node(node, key, value):
    """Set (or, with value None, remove) a node's own key beside attrs and arrays (weight_step)."""
    def change(m, arrays, nodes):
        nodes[node].pop(key, None) if value is None else nodes[node].update({key: value})
    return change


def _nan(a):
    a = a.copy()
    a.flat[0] = np.nan
    return a


def _both(*changes):
    def change(m, arrays, nodes):
        for c in changes:
            c(m, arrays, nodes)
    return change


TAMPERED = {
    "threshold 2**40": (_set(IF_LAYER, "threshold", 2 ** 40), [IF_LAYER, "threshold"]),
    "threshold 1.5": (_set(IF_LAYER, "threshold", 1.5), [IF_LAYER, "threshold"]),
    "threshold 0": (_set(IF_LAYER, "threshold", 0), [IF_LAYER, "threshold"]),
    "input bits 32": (_set("input", "bits", 32), ["input", "bits"]),
    "input scale inf": (_set("input", "scale", float("inf")), ["input", "scale"]),
    "signed 1-bit input": (_both(_set("input", "signed", True), _set("input", "bits", 1)), ["input", "bits", "signed"]),
    "membrane_bits 64, large bias": (_both(_state(membrane_bits=64),
                                           _array(IF_LAYER, "bias", lambda a: np.full(a.shape, 2 ** 40))),
                                     ["graph", "membrane_bits"]),
    # int32 (the 24-bit current register's dtype) holds it, the register does not
    "bias beyond the register": (_array(IF_LAYER, "bias", lambda a: np.full_like(a, 2 ** 30)), [IF_LAYER, "bias"]),
    "bias widened to int64": (_array(IF_LAYER, "bias", lambda a: a.astype(np.int64)),
                              [IF_LAYER, "bias", "dtype int64", "expected int32"]),
    "v_init beyond the membrane": (_set(IF_LAYER, "v_init", 2 ** 30), [IF_LAYER, "v_init"]),
    # -128: the one int8 value beyond 8-bit weights' ±127
    "weight_int out of bits": (_array(CONV, "weight_int", lambda a: np.full_like(a, -128)),
                               [CONV, "weight_int", "8-bit weight range"]),
    "weight_int widened to int16": (_array(CONV, "weight_int", lambda a: np.full(a.shape, 300, np.int16)),
                                    [CONV, "weight_int", "dtype int16", "expected int8"]),
    "float16 weight without its step": (_node(CONV, "weight_step", None), [CONV, "weight", "float16", "weight_step"]),
    "weight_step on a neuron layer": (_node(IF_LAYER, "weight_step", 0.5), [IF_LAYER, "weight_step"]),
    "weight_step NaN": (_node(CONV, "weight_step", float("nan")), [CONV, "weight_step", "finite"]),
    "weight_step overflowing": (_node(CONV, "weight_step", 1e308), [CONV, "weight", "non-finite"]),
    "weight residuals of another shape": (_array(CONV, "weight", lambda a: a[:1]), [CONV, "weight", "shape"]),
    "weight residuals as float32": (_array(CONV, "weight", lambda a: a.astype(np.float32)), [CONV, "weight", "float16"]),
    "weight_exp 40": (_set(CONV, "weight_exp", 40), [CONV, "weight_exp"]),
    "weight_exp beyond the register": (_both(_state(registers={"weight_exp_max": 3}), _set(CONV, "weight_exp", 5)),
                                       [CONV, "weight_exp"]),
    "registers out of range": (_state(registers={"membrane_bits": 64}), ["graph", "registers", "membrane_bits"]),
    "bad reset mode": (_state(reset="explode"), ["graph", "reset"]),
    "bad v_init mode": (_state(v_init="full"), ["graph", "v_init"]),
    "weight bits 40": (_state(bits=40), ["graph", "bits"]),
    "float array with NaN": (_array(CONV, "weight", _nan), [CONV, "weight", "non-finite"]),
    "weight_int as float": (_array(CONV, "weight_int", lambda a: a.astype(np.float64) + 0.5), [CONV, "weight_int", "dtype"]),
    "bias as uint64": (_array(IF_LAYER, "bias", lambda a: a.astype(np.uint64)), [IF_LAYER, "bias", "dtype"]),
    "weight as strings": (_array(CONV, "weight", lambda a: a.astype(str)), [CONV, "weight", "dtype"]),
    "unknown field": (_set(IF_LAYER, "gain", 3), [IF_LAYER, "gain"]),
    "broken range": (_state(ranges={IF_LAYER: {"current": [5, -5], "membrane": [0, 1]}}), ["graph", "ranges"]),
}


CLI_CASES = ("threshold 2**40", "input bits 32", "membrane_bits 64, large bias", "weight_int out of bits", "weight_exp 40",
             "bad reset mode", "float array with NaN", "weight_int as float", "bias beyond the register")


@pytest.mark.parametrize("case", CLI_CASES)
def test_tampered_artifact_is_refused_by_every_command(files, unchanged, case):
    change, words = TAMPERED[case]
    bad = files / f"tampered-{case.replace(' ', '_').replace('*', '')}.snnc"
    rewrite(files / "base.snnc", bad, change)
    with unchanged(files):
        for args in (("simulate", bad.name, "--data", "data.npz", "--output", "res.npz"), ("inspect", bad.name)):
            assert_refused(snnc(*args, cwd=files), bad.name, *words)


@pytest.mark.parametrize("case", [c for c in TAMPERED if c not in CLI_CASES])
def test_tampered_artifact_is_refused_on_load(files, case):
    change, words = TAMPERED[case]
    bad = files / f"tampered-{case.replace(' ', '_').replace('*', '')}.snnc"
    rewrite(files / "base.snnc", bad, change)
    with pytest.raises(artifact.ArtifactError) as e:
        artifact.load(bad)
    message = str(e.value)
    assert "\n" not in message and bad.name in message
    for w in words:
        assert w.lower() in message.lower(), (w, message)


def test_untampered_rewrite_still_loads(files):  # control: the rewrite itself breaks nothing
    rewrite(files / "base.snnc", files / "same.snnc", lambda m, a, n: None)
    proc = snnc("simulate", "same.snnc", "--data", "data.npz", cwd=files)
    assert proc.returncode == 0, proc.stderr


# ---- profiles: bounded widths, no unknown keys, no alias expansion --------------------------------

LOIHI = """name: mine
registers: {membrane_bits: 24, current_bits: 24, threshold_bits: 17, bias_mantissa_bits: 13,
            bias_exponent_bits: 3, weight_bits: 9, weight_exp_max: 7}
core: {neurons: 1024, input_axons: 4096, output_axons: 4096, synapse_memory_bits: 1048576}
cores_per_chip: 128
chips: 1
"""


def alias_bomb():
    """Under 1 KB of YAML whose last key expands to 9**9 strings (a "billion laughs")."""
    rows = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    rows += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return LOIHI + "\n".join(rows) + "\n"


PROFILES = {
    "membrane_bits 100": (LOIHI.replace("membrane_bits: 24", "membrane_bits: 100"), ["membrane_bits", "2..32"]),
    "weight_exp_max 40": (LOIHI.replace("weight_exp_max: 7", "weight_exp_max: 40"), ["weight_exp_max", "0..31"]),
    "threshold_bits 0": (LOIHI.replace("threshold_bits: 17", "threshold_bits: 0"), ["threshold_bits"]),
    "unknown top-level key": (LOIHI + "bogus: 1\n", ["unknown", "bogus"]),
    "unknown register": (LOIHI.replace("current_bits", "curent_bits"), ["unknown", "curent_bits"]),
    "neurons 2**50": (LOIHI.replace("neurons: 1024", f"neurons: {2 ** 50}"), ["neurons"]),
    "alias bomb": (alias_bomb(), ["alias"]),
}


@pytest.mark.parametrize("case", list(PROFILES))
def test_bad_profile_is_refused_when_it_loads(files, unchanged, case):
    text, words = PROFILES[case]
    path = files / f"profile-{case.split()[0]}.yaml"
    path.write_text(text)
    with unchanged(files):
        t0 = time.perf_counter()
        proc = snnc(*compile_args("--profile", path.name), cwd=files)
        elapsed = time.perf_counter() - t0
    assert_refused(proc, path.name, *words)
    assert elapsed < 30, f"took {elapsed:.1f} s"


def test_alias_bomb_is_refused_in_milliseconds(tmp_path):
    text = alias_bomb()
    assert len(text) < 2000
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ProfileError, match=r"alias \*l0 is not allowed"):
        load_profile_dict(str(path))
    assert time.perf_counter() - t0 < 1.0


def test_only_the_validated_profile_reaches_the_artifact(files):
    path = files / "profile-ok.yaml"
    path.write_text("# a comment\n" + LOIHI)
    proc = snnc(*compile_args("--profile", path.name), cwd=files)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(files / "out.snnc") as z:
        spec = json.loads(z.read("manifest.json"))["graph"]["core_map"]["profile_spec"]
    assert spec == load_profile_dict(str(path))
    assert set(spec) == {"name", "registers", "core", "cores_per_chip", "chips"}


# ---- reproducible artifacts ---------------------------------------------------------------------------

def test_two_compiles_give_identical_bytes(files):
    first = snnc(*compile_args()[:-1], "one.snnc", cwd=files, env={"PYTHONHASHSEED": "1"})
    assert first.returncode == 0, first.stderr
    time.sleep(2.1)  # zip timestamps have a 2-second resolution
    second = snnc(*compile_args()[:-1], "two.snnc", cwd=files, env={"PYTHONHASHSEED": "2"})
    assert second.returncode == 0, second.stderr
    assert (files / "one.snnc").read_bytes() == (files / "two.snnc").read_bytes()
    with zipfile.ZipFile(files / "one.snnc") as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}


# ---- on every accepted artifact the engines agree ------------------------------------------------------

@st.composite
def networks(draw):
    """A 2-layer integer network with fields drawn across and beyond every register's range."""
    def wide(lo, hi, beyond_lo, beyond_hi):
        inside = st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi]))
        return draw(st.integers(beyond_lo, beyond_hi)) if draw(st.integers(0, 7)) == 7 else draw(inside)

    bits = draw(st.integers(2, 16))
    wmax = (1 << (bits - 1)) - 1
    membrane = wide(2, 32, 1, 64)
    in_bits = wide(1, 16, 1, 32)
    signed = draw(st.booleans())
    fan_in, hidden = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    layers = []
    for shape in ((hidden, fan_in), (3, hidden)):
        top = wmax if draw(st.integers(0, 7)) < 7 else 1 << 31
        w = np.array(draw(st.lists(st.integers(-top, top), min_size=shape[0] * shape[1],
                                   max_size=shape[0] * shape[1])), np.int64).reshape(shape)
        exp = wide(0, 31, 0, 40)
        theta = wide(1, (1 << 17) - 1, -3, 1 << 41)
        top = (1 << 23) - 1 if draw(st.integers(0, 7)) < 7 else 1 << 62
        bias = np.array(draw(st.lists(st.integers(-top, top), min_size=shape[0], max_size=shape[0])), np.int64)
        v0 = wide(0, theta // 2 if theta > 0 else 0, -(1 << 40), 1 << 40)
        layers.append((w, exp, theta, bias, v0))
    state = {"normalized": True, "quantized": True, "bits": bits, "membrane_bits": membrane,
             "reset": draw(st.sampled_from(["subtract", "zero"])), "v_init": "half"}
    if draw(st.booleans()):
        state["registers"] = {"membrane_bits": membrane, "threshold_bits": wide(1, 31, 1, 33),
                              "weight_exp_max": wide(0, 31, 0, 40)}
    return state, in_bits, signed, layers


def build(state, in_bits, signed, layers):
    g = new_graph()
    g.graph["snnc"] = dict(state)
    prev = add_op(g, "in", O.Input((layers[0][0].shape[1],), scale=1.0, bits=in_bits, signed=signed))
    for i, (w, exp, theta, bias, v0) in enumerate(layers):
        d = add_op(g, f"fc{i}", O.Dense(w.astype(float), weight_int=w.astype(np.int64), weight_exp=exp), [prev])
        cls = O.Output if i == len(layers) - 1 else O.IF
        prev = add_op(g, "out" if i == len(layers) - 1 else f"if{i}",
                      cls(scale=1.0, threshold=theta, bias=bias, v_init=v0, step=1.0), [d])
    return g


@pytest.mark.skipif(not fast.available(), reason="needs numba")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(net=networks(), readout=st.sampled_from(["membrane", "count"]), encoding=st.sampled_from(["constant", "poisson"]),
       seed=st.integers(0, 3))
def test_engines_agree_on_every_accepted_artifact(tmp_path, net, readout, encoding, seed):
    g = build(*net)
    try:
        verify(g)
        data = artifact.to_bytes(g)
    except (ValueError, OverflowError):
        return  # not even a graph
    path = tmp_path / "net.snnc"
    path.write_bytes(data)
    try:
        q = artifact.load(path)
    except artifact.ArtifactError as e:
        assert "\n" not in str(e)
        return
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, (6, q.nodes["in"]["op"].shape[0]))
    kw = dict(timesteps=7, readout=readout, encoding=encoding, seed=seed)
    a = simulate(q, x, engine="numpy", **kw)
    b = simulate(q, x, engine="numba", **kw)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.predictions, b.predictions)
    assert a.rates == b.rates


@pytest.mark.skipif(not fast.available(), reason="needs numba")
@pytest.mark.parametrize("membrane, in_bits, exp, bias", [(32, 16, 21, (1 << 23) - 1), (2, 2, 0, 0), (32, 16, 0, -(1 << 23) + 1)])
def test_engines_agree_at_the_edges_of_the_registers(tmp_path, membrane, in_bits, exp, bias):
    # 3 * 32767 * 32767 << 21 is just below 2**53: the largest sum the loader accepts here
    w = np.array([[32767, -32767, 32767]]), np.array([[32767], [-32767]])
    layers = [(w[0], exp, (1 << 17) - 1, np.array([bias]), 0), (w[1], 0, 1, np.array([bias, -bias]), 0)]
    g = build({"normalized": True, "quantized": True, "bits": 16, "membrane_bits": membrane, "reset": "subtract",
               "v_init": "half"}, in_bits, True, layers)
    verify(g)
    path = tmp_path / "edge.snnc"
    path.write_bytes(artifact.to_bytes(g))
    q = artifact.load(path)
    x = np.random.default_rng(0).uniform(-1, 1, (5, 3))
    for readout in ("membrane", "count"):
        a = simulate(q, x, engine="numpy", timesteps=9, readout=readout)
        b = simulate(q, x, engine="numba", timesteps=9, readout=readout)
        assert np.array_equal(a.scores, b.scores)
