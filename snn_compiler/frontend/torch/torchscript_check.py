"""Check a TorchScript archive before torch.jit.load compiles and runs its code.

torch.jit.load runs code from the file: the unpickler calls each object's scripted ``__setstate__``
(which can, e.g., write any file through ``torch.from_file(path, shared=True)``) and rebuilds
torchbind objects (``__torch__.torch.classes.*``) with their C++ ``__setstate__``; snnc then runs
``forward`` and whatever it calls to convert it. So, without ``trust_code``, snnc parses the archive's
code (``code/**.py``, TorchScript in Python syntax) and its pickles first, and refuses:
- a ``__setstate__`` / ``__getstate__`` method (custom pickling: code that runs while loading);
- torchbind classes, in code or pickles;
- any call or name that is not a local variable, a function or method the archive defines (whose
  code is checked alike), a tensor op that :func:`.pure_ops.is_pure` names (``torch.relu``,
  ``ops.aten.relu``), or one of the TorchScript builtins listed here (``len``, ``ops.prim.dtype``...).
Type annotations are not checked: they name types, they do not run.
"""
from __future__ import annotations

import ast
import pickletools

from .archive_check import CODE_HELP, Archive, refuse
from ..errors import FrontendError
from .pure_ops import is_pure

_PICKLING_HOOKS = ("__setstate__", "__getstate__")
# bare names TorchScript's serializer writes: builtins, types, its helpers
_NAMES = frozenset("""annotate unchecked_cast uninitialized isinstance getattr hasattr int float bool str len
range list tuple dict min max abs enumerate zip round divmod sum all any Tensor List Dict Optional Tuple
NoneType Any Union Final Device Module NamedTuple Enum inf nan""".split())
# torch.<name> that are TorchScript builtins on lists, strings, scalars rather than tensor ops
_TORCH_BUILTINS = frozenset("""__contains__ __is__ __isnot__ __not__ __and__ __or__ __xor__ __getitem__
__range_length __derive_index __round_to_zero_floordiv len list dict append extend insert pop clear keys
values items get format join startswith endswith warn device dtype layout str Int Float Bool ScalarImplicit
tensor floordiv _unwrap_optional""".split())
_PRIM = frozenset("""NumToTensor RaiseException device dtype layout unchecked_unwrap_optional unchecked_cast
is_nested type min max abs shape is_cuda is_cpu requires_grad data Uninitialized TupleIndex""".split())
_ROOTS = ("torch", "ops", "__torch__", "CONSTANTS", "math")
_TYPE_ARG = {"annotate": 0, "unchecked_cast": 0, "isinstance": 1}  # the argument that is a type


def _chain(node):
    """``a.b.c`` -> ["a", "b", "c"] when it starts at a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id] + parts[::-1] if isinstance(node, ast.Name) else None


def _root_ok(parts) -> bool:
    root, rest = parts[0], parts[1:]
    if root == "torch":
        return len(rest) == 1 and (is_pure(rest[0]) or rest[0] in _TORCH_BUILTINS)
    if root == "ops":
        return len(rest) == 2 and (rest[0] == "aten" and is_pure(rest[1]) or rest[0] == "prim" and rest[1] in _PRIM)
    if root == "__torch__":
        return rest[:2] != ["torch", "classes"]
    return bool(rest)  # CONSTANTS.c0, math.inf


def _declares_type(stmt) -> bool:
    """``__annotations__["0"] = __torch__...Linear`` in a class body: an attribute's type."""
    return isinstance(stmt, ast.Assign) and all(
        isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id == "__annotations__"
        for t in stmt.targets)


class _Checker:
    def __init__(self, path, file, defined):
        self.path, self.file, self.defined = path, file, defined
        self.local = set()

    def fail(self, node, what):
        refuse(self.path, f"its TorchScript code {what} ({self.file}, line {getattr(node, 'lineno', '?')})", CODE_HELP)

    def module(self, tree):
        self.local = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        self.local |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
        for stmt in tree.body:
            self.visit(stmt)

    def visit(self, node):
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal)):
            self.fail(node, "has an import or global statement")
        if isinstance(node, ast.FunctionDef):
            if node.name in _PICKLING_HOOKS:
                self.fail(node, f"defines {node.name} (custom pickling: torch.jit.load runs __setstate__ "
                                f"while loading)")
            for d in node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d]:
                self.visit(d)
            for stmt in node.body:
                self.visit(stmt)
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if not _declares_type(stmt):
                    self.visit(stmt)
        elif isinstance(node, ast.AnnAssign):
            for part in (node.target, node.value):
                if part is not None:
                    self.visit(part)
        elif isinstance(node, ast.Call):
            self.call(node)
        elif isinstance(node, ast.Attribute):
            self.attribute(node, called=False)
        elif isinstance(node, ast.Name):
            self.name(node)
        else:
            for child in ast.iter_child_nodes(node):
                self.visit(child)

    def name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id not in self.local and node.id not in _NAMES \
                and node.id not in self.defined:
            self.fail(node, f"refers to {node.id}" + (" itself" if node.id in _ROOTS else ""))

    def attribute(self, node, called):
        parts = _chain(node)
        if parts and parts[0] in _ROOTS:
            if not _root_ok(parts):
                dotted = ".".join(parts)
                torchbind = parts[:3] == ["__torch__", "torch", "classes"]
                self.fail(node, f"uses the torchbind class {dotted}" if torchbind else
                          f"{'calls' if called else 'refers to'} {dotted}, which is not one of the pure tensor ops "
                          f"snnc allows")
            return
        if called and node.attr not in self.defined and not is_pure(node.attr) \
                and node.attr not in _TORCH_BUILTINS:
            self.fail(node, f"calls the method {node.attr}, which neither the file defines nor is a pure tensor op")
        self.visit(node.value)

    def call(self, node):
        func = node.func
        if isinstance(func, ast.Attribute):
            self.attribute(func, called=True)
        else:
            self.visit(func)
        skip = _TYPE_ARG.get(func.id) if isinstance(func, ast.Name) else None
        for i, arg in enumerate(node.args):
            if i != skip or any(isinstance(n, ast.Call) for n in ast.walk(arg)):  # a type has no calls
                self.visit(arg)
        for kw in node.keywords:
            self.visit(kw.value)


def _check_pickle(path, name: str, data: bytes) -> None:
    """TorchScript's unpickler rebuilds torchbind objects by name (their C++ __setstate__ runs)."""
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("STACK_GLOBAL", "INST", "OBJ"):
                refuse(path, f"{name} uses pickle opcodes ({op.name}) TorchScript does not write", CODE_HELP)
            if op.name == "GLOBAL" and arg.replace(" ", ".").startswith("__torch__.torch.classes."):
                refuse(path, f"{name} holds a torchbind object ({arg.replace(' ', '.')}), which loading rebuilds "
                             f"by running its __setstate__", CODE_HELP)
            if op.name == "STOP":
                return
    except FrontendError:
        raise
    except Exception as e:  # noqa: BLE001 - a pickle pickletools cannot read cannot be checked
        refuse(path, f"{name} is not a readable pickle ({type(e).__name__})", CODE_HELP)


def check_torchscript(path, data: bytes) -> None:
    """Raise FrontendError if torch.jit.load of ``data`` (or converting its forward) would run code
    beyond pure tensor ops."""
    archive = Archive(path, data)
    trees = {}
    for name in archive.names:
        if name.endswith("pkl"):
            _check_pickle(path, name, archive.read(name))
        elif name.startswith("code/") and name.endswith(".py"):
            try:
                trees[name] = ast.parse(archive.read(name).decode("utf-8"))
            except (SyntaxError, ValueError) as e:
                refuse(path, f"its TorchScript code in {name} cannot be parsed for checking ({type(e).__name__})",
                       CODE_HELP)
    defined = {n.name for tree in trees.values() for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    for name, tree in trees.items():
        _Checker(path, name, defined).module(tree)
