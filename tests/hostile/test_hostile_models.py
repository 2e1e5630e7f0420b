"""Model files that would run code while loading are refused before torch reads them.

Each hostile file is built here from a real save (a rewritten ``torch.export.save`` zip, a scripted
module) and carries a payload that would create a marker file or overwrite a victim file. The CLI
must refuse it with one line, and nothing in the folder may change (no marker, victim intact, no
output). The opt-in flags (--allow-pickle, --trust-code) load such files: that is the user's consent.
"""
import io
import json
import pickle
import zipfile
from typing import Tuple

import numpy as np
import pytest

from .tools import assert_refused, snnc

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

SHAPE = (1, 8, 8)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 3)).eval()


def _calibration(folder):
    path = folder / "calib.npz"
    np.savez(path, x=np.random.default_rng(0).random((8,) + SHAPE).astype(np.float32))
    return path


def _compile(folder, model, *flags, shape="1,8,8"):
    return snnc("compile", model, "--input-shape", shape, "--calibration", folder / "calib.npz", *flags,
                "-o", folder / "out.snnc", cwd=folder)


class _Payload:
    """Unpickling it evaluates ``expr`` (which creates the marker, then returns what torch expects)."""

    def __init__(self, expr):
        self.expr = expr

    def __reduce__(self):
        return eval, (self.expr,)


def _touch_then(marker, value: str) -> str:
    return f"(__import__('pathlib').Path({str(marker)!r}).touch(), {value})[1]"


def _torch_save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _rewrite(src, dst, edit, add=()):
    """Copy the zip ``src`` to ``dst``; ``edit(name without the archive folder, bytes)`` returns new bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for name in zin.namelist():
            zout.writestr(name, edit(name.split("/", 1)[1], zin.read(name)))
        for name, data in add:
            zout.writestr(f"{root}/{name}", data)


def _exported(folder, model=None, dynamic=False):
    """A real torch.export.save file of ``model`` (default: the small conv net)."""
    path = folder / "real.pt2"
    x = torch.zeros((2 if dynamic else 1,) + SHAPE)
    spec = ({0: torch.export.Dim("batch", min=1, max=64)},) if dynamic else None
    torch.export.save(torch.export.export(model or _net(), (x,), dynamic_shapes=spec), str(path))
    return path


def _hostile(folder, edit=lambda name, data: data, add=(), **export):
    """A real export rewritten by ``edit(member name, bytes)`` (``add``: extra members) -> evil.pt2."""
    real = _exported(folder, **export)
    _rewrite(real, folder / "evil.pt2", edit, add)
    real.unlink()
    return folder / "evil.pt2"


def _json_edit(member_prefix, change):
    """An ``edit`` that runs ``change(parsed JSON)`` on the members whose name starts with the prefix."""
    def edit(name, data):
        if not name.startswith(member_prefix):
            return data
        j = json.loads(data)
        change(j)
        return json.dumps(j).encode()
    return edit


def _dicts(obj):
    if isinstance(obj, dict):
        yield obj
        obj = list(obj.values())
    for v in obj if isinstance(obj, list) else ():
        yield from _dicts(v)


# ---- .pt2: pickled members --------------------------------------------------------------------------

def test_pt2_pickled_weight_is_refused(tmp_path, unchanged):
    """A weight stored pickled (use_pickle: true), which torch reads with torch.load(weights_only=False)."""
    _calibration(tmp_path)
    marker = tmp_path / "MARKER"
    weight = "__import__('torch').nn.Parameter(__import__('torch').ones(2, 1, 3, 3))"
    payload = _torch_save(_Payload(_touch_then(marker, weight)))

    def edit(name, data):
        if name == "data/weights/weight_0":  # 0.weight's payload (checked below)
            return payload
        if name.endswith("_weights_config.json"):
            cfg = json.loads(data)
            assert cfg["config"]["0.weight"]["path_name"] == "weight_0"
            cfg["config"]["0.weight"]["use_pickle"] = True
            return json.dumps(cfg).encode()
        return data

    evil = _hostile(tmp_path, edit)
    with unchanged(tmp_path):
        assert_refused(_compile(tmp_path, evil), "evil.pt2", "0.weight", "pickle", "--allow-pickle")
    # the user's explicit consent: torch unpickles it, the payload runs, and it still compiles
    proc = _compile(tmp_path, evil, "--allow-pickle")
    assert proc.returncode == 0 and marker.exists(), proc.stderr


def test_pt2_pickled_sample_inputs_are_refused(tmp_path, unchanged):
    """Sample inputs the safe loader rejects, after which torch unpickles them in full."""
    _calibration(tmp_path)
    marker = tmp_path / "MARKER"
    payload = _torch_save(_Payload(_touch_then(marker, "((__import__('torch').zeros(1, 1, 8, 8),), {})")))
    evil = _hostile(tmp_path, lambda name, data: payload if name.startswith("data/sample_inputs/") else data)
    with unchanged(tmp_path):
        assert_refused(_compile(tmp_path, evil), "evil.pt2", "sample inputs", "--allow-pickle")
    proc = _compile(tmp_path, evil, "--allow-pickle")
    assert proc.returncode == 0 and marker.exists(), proc.stderr


def test_pt2_pickled_constant_object_is_refused(tmp_path, unchanged):
    """An 'opaque object' constant, which torch reads with a bare pickle.loads."""
    _calibration(tmp_path)
    payload = pickle.dumps(_Payload(_touch_then(tmp_path / "MARKER", "None")))

    def add_constant(cfg):
        cfg["config"]["obj"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                "tensor_meta": None}

    evil = _hostile(tmp_path, _json_edit("data/constants/model_constants_config", add_constant),
                    add=[("data/constants/opaque_obj_0", payload)])
    with unchanged(tmp_path):
        assert_refused(_compile(tmp_path, evil), "evil.pt2", "pickle", "--allow-pickle")


# ---- .pt2: code without pickles (each also shown to run under --trust-code) -------------------------

def test_pt2_symbolic_expression_is_not_evaluated(tmp_path, unchanged):
    """torch parses a symbolic size with sympy.sympify, i.e. Python eval."""
    _calibration(tmp_path)
    expr = f"__import__('pathlib').Path({str(tmp_path / 'MARKER')!r}).touch()"

    def replace_sizes(j):
        found = [d for d in _dicts(j) if "expr_str" in d]
        assert found
        for d in found:
            d["expr_str"] = expr

    evil = _hostile(tmp_path, _json_edit("models/", replace_sizes), dynamic=True)
    with unchanged(tmp_path):
        assert_refused(_compile(tmp_path, evil), "evil.pt2", "symbolic", "--trust-code")
    _compile(tmp_path, evil, "--trust-code")
    assert (tmp_path / "MARKER").exists()


def test_pt2_value_names_are_not_code(tmp_path, unchanged):
    """torch.fx pastes placeholder names into the forward() it generates and executes."""
    _calibration(tmp_path)
    bad = f"x=__import__('pathlib').Path({str(tmp_path / 'MARKER')!r}).touch()"

    def rename_input(j):
        spec = next(s for s in j["graph_module"]["signature"]["input_specs"] if "user_input" in s)
        old = spec["user_input"]["arg"]["as_tensor"]["name"]
        for d in _dicts(j):
            if isinstance(d.get("as_tensor"), dict) and d["as_tensor"].get("name") == old:
                d["as_tensor"]["name"] = bad
        values = j["graph_module"]["graph"]["tensor_values"]
        values[bad] = values.pop(old)

    evil = _hostile(tmp_path, _json_edit("models/", rename_input))
    with unchanged(tmp_path):
        assert_refused(_compile(tmp_path, evil), "evil.pt2", "identifier", "--trust-code")
    _compile(tmp_path, evil, "--trust-code")
    assert (tmp_path / "MARKER").exists()


def test_pt2_input_structure_does_not_import_modules(tmp_path, unchanged):
    """A defaultdict in the input structure names a module that torch imports (here one planted in the
    working directory, which `python -m` puts on sys.path)."""
    _calibration(tmp_path)
    (tmp_path / "snnc_payload.py").write_text(f"import pathlib\npathlib.Path({str(tmp_path / 'MARKER')!r}).touch()\n"
                                              f"factory = list\n")
    context = {"default_factory_module": "snnc_payload", "default_factory_name": "factory", "dict_context": []}
    spec = json.dumps([1, {"type": "collections.defaultdict", "context": context, "children_spec": []}])

    def change_spec(j):
        j["graph_module"]["module_call_graph"][0]["signature"]["in_spec"] = spec

    evil = _hostile(tmp_path, _json_edit("models/", change_spec))
    with unchanged(tmp_path):
        assert_refused(_compile(tmp_path, evil), "evil.pt2", "input/output structure", "--trust-code")
    _compile(tmp_path, evil, "--trust-code")
    assert (tmp_path / "MARKER").exists()


class _WeightExpression(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 64))

    def forward(self, x):
        return nn.functional.linear(torch.flatten(x, 1), self.w.t().t())


def test_pt2_graph_op_with_side_effects_is_refused(tmp_path, unchanged):
    """aten.from_file in the graph: snnc folds ops on weights by running them, and from_file with
    shared=True resizes (and maps) any file."""
    _calibration(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")

    def map_the_victim(j):
        node = next(n for n in j["graph_module"]["graph"]["nodes"] if n["target"] == "torch.ops.aten.t.default")
        node["target"] = "torch.ops.aten.from_file.default"
        node["inputs"] = [{"name": "filename", "arg": {"as_string": str(victim)}, "kind": 1},
                          {"name": "shared", "arg": {"as_bool": True}, "kind": 1},
                          {"name": "size", "arg": {"as_int": 64}, "kind": 1}]

    evil = _hostile(tmp_path, _json_edit("models/", map_the_victim), model=_WeightExpression().eval())
    with unchanged(tmp_path):
        assert_refused(_compile(tmp_path, evil), "evil.pt2", "from_file", "--trust-code")
    _compile(tmp_path, evil, "--trust-code")
    assert victim.read_bytes() != b"precious"  # grown to 64 floats


def test_pt2_aotinductor_library_is_refused(tmp_path, unchanged):
    """torch.export.load loads an AOTInductor package's native library."""
    _calibration(tmp_path)
    evil = _hostile(tmp_path, add=[("data/aotinductor/model/model.so", b"\x7fELF")])
    with unchanged(tmp_path):
        assert_refused(_compile(tmp_path, evil), "evil.pt2", "aotinductor", "--trust-code")


# ---- TorchScript ------------------------------------------------------------------------------------

class _Hook(nn.Module):
    """No parameters; loading it runs its scripted __setstate__, which writes through torch.from_file."""

    def __init__(self, victim: str, marker: str):
        super().__init__()
        self.victim = victim
        self.marker = marker
        self.seen = torch.zeros(1, dtype=torch.uint8)

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, str, bool]:
        return (self.victim, self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, str, bool]) -> None:
        self.victim, self.marker, self.training = state[0], state[1], state[2]
        # the results are kept so that TorchScript does not drop the calls as dead code
        self.seen = torch.from_file(self.victim, shared=True, size=4, dtype=torch.uint8).fill_(88)
        self.seen = self.seen + torch.from_file(self.marker, shared=True, size=1, dtype=torch.uint8)


class _Hooked(nn.Module):
    def __init__(self, victim, marker):
        super().__init__()
        self.hook = _Hook(str(victim), str(marker))
        self.body = _net()

    def forward(self, x):
        return self.body(self.hook(x))


def test_torchscript_setstate_is_refused(tmp_path, unchanged):
    _calibration(tmp_path)
    victim, marker = tmp_path / "victim.txt", tmp_path / "MARKER"
    victim.write_bytes(b"precious-bytes")
    torch.jit.save(torch.jit.script(_Hooked(victim, marker).eval()), str(tmp_path / "evil.pt"))
    with unchanged(tmp_path):
        assert_refused(_compile(tmp_path, tmp_path / "evil.pt"), "evil.pt", "__setstate__", "--trust-code")
    # the user's explicit consent: torch.jit.load runs the file's code
    proc = _compile(tmp_path, tmp_path / "evil.pt", "--trust-code")
    assert proc.returncode == 0 and marker.exists() and victim.read_bytes() != b"precious-bytes", proc.stderr


class _ReadsAFile(nn.Module):
    def __init__(self, victim: str):
        super().__init__()
        self.victim = victim
        self.body = _net()

    def forward(self, x):
        mapped = torch.from_file(self.victim, shared=True, size=64, dtype=torch.uint8)
        return self.body(x) + mapped[:1].float() * 0


def test_torchscript_forward_with_side_effects_is_refused(tmp_path, unchanged):
    """snnc runs forward to convert it; an op outside the allowlist (here from_file) is refused."""
    _calibration(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    torch.jit.save(torch.jit.script(_ReadsAFile(str(victim)).eval()), str(tmp_path / "evil.pt"))
    with unchanged(tmp_path):
        assert_refused(_compile(tmp_path, tmp_path / "evil.pt"), "evil.pt", "from_file", "--trust-code")


# ---- what must keep working -------------------------------------------------------------------------

def _legit(folder, fmt):
    model, example = _net(), torch.zeros((1,) + SHAPE)
    if fmt == "pt2":
        torch.export.save(torch.export.export(model, (example,)), str(folder / "m.pt2"))
        return folder / "m.pt2"
    ts = torch.jit.script(model) if fmt == "script" else torch.jit.trace(model, (example,))
    torch.jit.save(ts, str(folder / "m.pt"))
    return folder / "m.pt"


@pytest.mark.parametrize("fmt", ["pt2", "script", "trace"])
def test_ordinary_files_compile_and_a_wrong_shape_is_one_line(tmp_path, fmt):
    _calibration(tmp_path)
    model = _legit(tmp_path, fmt)
    proc = _compile(tmp_path, model)
    assert proc.returncode == 0 and "warning" not in proc.stderr and "torch" not in proc.stderr, proc.stderr
    for shape in ("3,5,5", "1,12,12"):
        assert_refused(_compile(tmp_path, model, shape=shape), "shape")


def test_models_the_lowering_refuses_reach_the_lowering(tmp_path):
    """The allowlist of ops is wider than what snnc lowers: an unsupported layer in a file is named by
    the lowering (op and module path), not refused as untrusted code."""
    from models import unsupported

    from snn_compiler.frontend import FrontendError, load_file
    for name in ("sigmoid", "tanh", "elu", "mul", "cat", "lstm"):
        model, shape, op, _ = unsupported()[name]
        example = torch.zeros((1,) + shape)
        for fmt in ("script", "trace", "pt2"):
            path = tmp_path / f"{name}_{fmt}.{'pt2' if fmt == 'pt2' else 'pt'}"
            if fmt == "pt2":
                torch.export.save(torch.export.export(model, (example,)), str(path))
            else:
                ts = torch.jit.script(model) if fmt == "script" else torch.jit.trace(model, (example,))
                torch.jit.save(ts, str(path))
            with pytest.raises(FrontendError) as e:
                load_file(path, shape)
            assert op in str(e.value) and "--trust-code" not in str(e.value), (name, fmt, str(e.value))
