"""Inspect a .pt2 before torch loads it, and refuse what would unpickle or run code from the file.

What torch 2.13's ``torch.export.load`` (and snnc after it) would execute from a .pt2:
- pickles, refused unless ``allow_pickle``: a weight or constant stored with ``use_pickle``
  (``torch.load(weights_only=False)``), TorchScript or Python object constants (``_pickle_load_obj``,
  ``pickle.loads``), sample inputs that the safe loader (``weights_only``) rejects (torch then
  unpickles them in full), and the old (torch <= 2.7) layout, made of such pickles;
- code, refused unless ``trust_code``: symbolic sizes that are not plain arithmetic (torch parses
  them with ``sympy.sympify``, i.e. Python ``eval``), value names that are not identifiers (torch.fx
  pastes them into the ``forward`` source it generates and executes), input/output structures other
  than plain containers (a defaultdict or enum is imported by module name), graph ops outside
  :func:`.pure_ops.is_pure` (snnc folds ops on weights by running them, e.g. ``aten.from_file``),
  guard code, AOTInductor libraries, and members a ``torch.export.save`` archive does not have.
"""
from __future__ import annotations

import ast
import io
import json
import keyword
import re
import zipfile

from .archive_check import CODE_HELP, PICKLE_HELP, Archive, clip, refuse
from ..errors import FrontendError
from .pure_ops import SNNC_OPS, is_pure

_KNOWN = ("archive_format", "archive_version", "byteorder", ".data/", "models/", "data/weights/",
          "data/constants/", "data/sample_inputs/", "extra/")
_LEGACY = {"version", "serialized_exported_program.json", "serialized_state_dict.pt", "serialized_state_dict.json",
           "serialized_constants.pt", "serialized_constants.json", "serialized_example_inputs.pt"}
_SYM_CALLS = frozenset("""Symbol Integer Rational Float Max Min Abs Mod Eq Ne Lt Le Gt Ge And Or Not
Piecewise floor ceiling sqrt Pow Mul Add FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt
FloorToInt CeilDiv LShift RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv
IsNonOverlappingAndDenseIndicator TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat Identity""".split())
_SYM_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Call, ast.keyword, ast.Name,
              ast.Load, ast.Constant, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)
_SYMBOL = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_OPERATOR_OK = frozenset("getitem add sub mul floordiv truediv mod neg pos pow eq ne lt le gt ge and_ or_ not_".split())
_SYM_FN_OK = frozenset("""torch.sym_int torch.sym_float torch.sym_max torch.sym_min torch.sym_not torch.sym_ite
torch.sym_sum torch._sym_sqrt math.ceil math.floor math.trunc math.sqrt""".split())


def _plain_sym_expr(text) -> bool:
    """A symbolic size as torch writes it ("s0", "2*s0 + 1", "Symbol('s77', positive=True)")."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, TypeError):
        return False
    for node in ast.walk(tree):
        if not isinstance(node, _SYM_NODES):
            return False
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _SYM_CALLS):
            return False
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            return False
        # sympy functions sympify string arguments (eval again): only symbol names
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and not _SYMBOL.fullmatch(node.value):
            return False
    return True


def _op_allowed(target: str) -> bool:
    parts = target.split(".")
    if target.startswith("torch.ops."):
        return len(parts) == 5 and ((parts[2] == "aten" and is_pure(parts[3]))
                                    or (parts[2] == "snnc" and parts[3] in SNNC_OPS))
    if target.startswith("_operator."):
        return len(parts) == 2 and parts[1] in _OPERATOR_OK
    return target in _SYM_FN_OK


def _walk(obj):
    """Every dict in a JSON document."""
    todo = [obj]
    while todo:
        obj = todo.pop()
        if isinstance(obj, dict):
            yield obj
            todo.extend(obj.values())
        elif isinstance(obj, list):
            todo.extend(obj)


_TREE_TYPES = frozenset([None, "builtins.tuple", "builtins.list", "builtins.dict", "collections.OrderedDict",
                         "torch.fx.immutable_collections.immutable_list",
                         "torch.fx.immutable_collections.immutable_dict"])


def _no_objects(d):
    raise ValueError(f"an object in a container's context: {d}")  # e.g. an enum, imported by name


def _plain_treespec(text) -> bool:
    """An input/output structure of plain containers: a defaultdict names a module torch imports, and
    an enum in a context is imported by name too."""
    try:
        _, schema = json.loads(text)
        todo = [schema]
        while todo:
            node = todo.pop()
            if node["type"] not in _TREE_TYPES:
                return False
            if node["context"] is not None:
                json.loads(node["context"], object_hook=_no_objects)
            todo.extend(node["children_spec"])
        return True
    except Exception:  # noqa: BLE001 - anything unexpected is not plain
        return False


def _check_program(path, where: str, program) -> None:
    """Code torch would run from a serialized ExportedProgram (models/<name>.json)."""
    for d in _walk(program):
        name = d.get("name")
        if name is not None and not (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)):
            # torch.fx pastes names into the Python source it generates and executes
            refuse(path, f"a value in {where} is named {clip(name)}, not a Python identifier", CODE_HELP)
        for key in ("in_spec", "out_spec"):
            if d.get(key) is not None and not _plain_treespec(d[key]):
                refuse(path, f"an input/output structure in {where} is not plain containers "
                             f"({clip(d[key])})", CODE_HELP)
        expr = d.get("expr_str")
        if expr is not None and not (isinstance(expr, str) and _plain_sym_expr(expr)):
            refuse(path, f"a symbolic size in {where} is not a plain expression ({clip(expr)}), and torch "
                         f"parses it with sympy, i.e. Python eval", CODE_HELP)
        target = d.get("target")
        if target is not None and not (isinstance(target, str) and _op_allowed(target)):
            refuse(path, f"its graph calls {clip(target)[1:-1]}, which is not one of the pure tensor ops "
                         f"snnc runs", CODE_HELP)
    if isinstance(program, dict) and program.get("guards_code"):
        refuse(path, f"{where} carries guard code ({clip(program['guards_code'][0])})", CODE_HELP)


def _weights_only_loads(data: bytes) -> bool:
    import torch
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return True
    except Exception:  # noqa: BLE001 - any failure: torch would retry with a full unpickle
        return False


def _check_payloads(path, name: str, config) -> None:
    """A weights/constants config: the entries torch would unpickle."""
    kind = "weight" if name.startswith("data/weights/") else "constant"
    entries = config.get("config") if isinstance(config, dict) else None
    for fqn, meta in (entries.items() if isinstance(entries, dict) else ()):
        meta = meta if isinstance(meta, dict) else {}
        file = str(meta.get("path_name", ""))
        if meta.get("use_pickle") or file.startswith(("custom_obj_", "opaque_obj_")):
            refuse(path, f"{kind} {fqn} is stored as a pickle ({file}), which torch unpickles in full",
                   PICKLE_HELP)


def _check_legacy(path, z, allow_pickle, trust_code) -> None:
    """Old .pt2: torch.save pickles that torch unpickles in full when the safe loader fails, read with
    Python's zip reader (only after torch's own reader failed on the archive)."""
    if not allow_pickle:
        refuse(path, "it has the old .pt2 layout, whose state dict and inputs torch may unpickle in full",
               PICKLE_HELP)
    if trust_code:
        return
    other = [n for n in z.namelist() if n not in _LEGACY and not n.startswith("extra_files/")]
    if other:  # e.g. a current-layout program next to the old one, which torch would load instead
        refuse(path, f"it mixes the old .pt2 layout with other members ({clip(other[0])})", CODE_HELP)
    try:
        program = json.loads(z.read("serialized_exported_program.json"))
    except ValueError as e:
        raise FrontendError(f"{path}: serialized_exported_program.json is not valid JSON ({e})") from None
    _check_program(path, "serialized_exported_program.json", program)


def check_pt2(path, data: bytes, allow_pickle: bool = False, trust_code: bool = False) -> None:
    """Raise FrontendError if loading the .pt2 ``data`` would unpickle (unless ``allow_pickle``) or run
    code (unless ``trust_code``)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        if "serialized_exported_program.json" in z.namelist():  # the torch <= 2.7 layout
            _check_legacy(path, z, allow_pickle, trust_code)
            return
    if allow_pickle and trust_code:
        return
    archive = Archive(path, data)
    for name in archive.names:
        if name.startswith("data/aotinductor/"):
            if not trust_code:
                refuse(path, f"it holds AOTInductor compiled code ({name}), a native library torch would load",
                       CODE_HELP)
        elif not name.startswith(_KNOWN) or name.startswith("models/") and not name.endswith(".json"):
            if not trust_code:
                refuse(path, f"it holds {clip(name)}, which is not part of a torch.export.save archive", CODE_HELP)
        elif name.startswith("models/"):
            if not trust_code:
                _check_program(path, name, archive.json(name))
        elif allow_pickle:
            continue
        elif name.endswith("_config.json") and name.startswith(("data/weights/", "data/constants/")):
            _check_payloads(path, name, archive.json(name))
        elif name.endswith(".pt") and not _weights_only_loads(archive.read(name)):
            what = "its sample inputs" if name.startswith("data/sample_inputs/") else "member"
            refuse(path, f"{what} {name} is a pickle that torch's safe loader (weights_only) rejects, and torch "
                         f"would then unpickle it in full", PICKLE_HELP)
