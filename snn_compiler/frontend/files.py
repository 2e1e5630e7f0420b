"""The one format registry: a model file -> IR graph, whatever frontend reads it.

``FORMATS`` maps each format to its loader; :func:`sniff` tells the format from the file's bytes
(its suffix for ONNX, whose protobuf has no signature), and :func:`load_file` reads the file
once, sniffs it and hands those same bytes to the loader. Options a format does not take
(``dt`` for a torch file) are refused rather than ignored. Nothing here imports torch, onnx, h5py
or nir until a file of that format is loaded.
"""
from __future__ import annotations

import io
import os
import zipfile
from typing import Optional

import networkx as nx

from .errors import FrontendError

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # Keras .h5 and NIR files are HDF5
MAX_FILE_BYTES = 1 << 31           # 2 GiB: no network snnc maps comes near


def _load_torch(path, data, input_shape, **options):
    from .torch.files import load
    return load(path, data, input_shape, **options)


def _load_onnx(path, data, input_shape, **options):
    from .onnx.graph import from_onnx
    return from_onnx(data, input_shape=input_shape, name=path)


def _load_keras(path, data, input_shape, **options):
    from .keras import from_keras_h5
    return from_keras_h5(data, input_shape=input_shape, name=path)


def _load_nir(path, data, input_shape, dt=None, discretization=None):
    from .nir.lower import from_nir
    from .nir.read import parse_nir_bytes
    extra = {} if discretization is None else {"discretization": discretization}
    return from_nir(parse_nir_bytes(data, path), dt, input_shape=input_shape, **extra)


FORMATS = {"torch": _load_torch, "onnx": _load_onnx, "keras": _load_keras, "nir": _load_nir}
NAMES = {"torch": "a torch model file", "onnx": "an ONNX model", "keras": "a Keras .h5 model", "nir": "a NIR file"}
# The options each format reads; a value given for another format is refused. allow_pickle and
# trust_code are permissions, not values: a file that needs neither ignores them.
OPTIONS = {"torch": ("allow_pickle", "trust_code"), "nir": ("dt", "discretization")}
PERMISSIONS = ("allow_pickle", "trust_code")
LOAD_OPTIONS = ("allow_pickle", "trust_code", "dt", "discretization")  # load_file's keywords besides input_shape


def load_file(path, input_shape: Optional[tuple] = None, allow_pickle: bool = False, trust_code: bool = False,
              dt: Optional[float] = None, discretization: Optional[str] = None) -> nx.DiGraph:
    """IR graph of a saved model: TorchScript (torch.jit.save), torch.export (.pt2), an ONNX model
    (.onnx), a Keras .h5 file (model.save("model.h5")), a NIR file (``dt``: the timestep its time
    constants are discretised at; ``discretization`` euler or exact), or, only with
    ``allow_pickle=True``, a pickled module (torch.save(model)). ``allow_pickle`` also admits .pt2
    members torch unpickles; ``trust_code`` admits files whose code torch would run beyond pure
    tensor ops (see frontend/torch/pt2_check.py, torchscript_check.py)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise FrontendError(f"{path} is a directory, not a model file")
    if not os.path.isfile(path):
        raise FrontendError(f"{path}: no such file (it does not exist)")
    if os.path.getsize(path) > MAX_FILE_BYTES:
        raise FrontendError(f"{path}: larger than {MAX_FILE_BYTES >> 30} GiB; not a model file snnc reads")
    with open(path, "rb") as f:
        data = f.read()  # once: what is sniffed and checked is what the loader reads
    fmt = sniff(path, data)
    given = dict(zip(LOAD_OPTIONS, (allow_pickle, trust_code, dt, discretization)))
    for key, value in given.items():
        if value is not None and value is not False and key not in OPTIONS.get(fmt, ()) \
                and key not in PERMISSIONS:
            owner = next(f for f, keys in OPTIONS.items() if key in keys)
            raise FrontendError(f"{path} is {NAMES[fmt]}; {key} (--{key.replace('_', '-')}) applies to "
                                f"{NAMES[owner].split(' ', 1)[1]}s only")
    options = {k: v for k, v in given.items() if k in OPTIONS.get(fmt, ())}
    try:
        return FORMATS[fmt](path, data, input_shape, **options)
    except FrontendError as e:
        if path in str(e):
            raise
        raise type(e)(f"{path}: {e}") from None  # every refusal names the file (the class stays: NeedsInputShape)


def sniff(path: str, data: bytes) -> str:
    """The format of the file ``path`` with bytes ``data`` (a key of FORMATS), else a FrontendError
    saying what the file is."""
    head = data[:8]
    if path.lower().endswith(".onnx"):  # protobuf has no magic bytes: the suffix says ONNX (parsing runs no
        return "onnx"                    # code; the ONNX reader names any other content it finds)
    if head.startswith(HDF5_MAGIC):
        return _hdf5_format(path, data)
    if head.startswith(ZIP_MAGIC) and zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
        if "config.json" in names and "model.weights.h5" in names:
            raise FrontendError(f"{path} is a Keras 3 .keras archive; snnc reads Keras models saved as .h5: "
                                f"load it in Keras and save it with model.save('model.h5')")
        if names and all(n.endswith(".npy") for n in names):
            raise FrontendError(f"{path} is a numpy archive (.npz), not a model")
        return "torch"
    if head[:1] == b"\x80":  # a pickle stream: torch.save's legacy format, or a plain pickle (refused there)
        return "torch"
    raise FrontendError(f"{path} is not a model file ({_what_it_is(data)}); expected a TorchScript file "
                        f"(torch.jit.save), a torch.export file (torch.export.save, .pt2), an ONNX model (.onnx), "
                        f"a Keras .h5 file (model.save('model.h5')) or a NIR file (.nir)")


def _hdf5_format(path: str, data: bytes) -> str:
    """NIR (a top-level ``node`` group) or Keras (anything else) for an HDF5 file; a file h5py
    cannot open (truncated, corrupt) goes by its suffix, and that loader says why it cannot read it."""
    try:
        import h5py
        with h5py.File(io.BytesIO(data), "r") as f:
            return "nir" if "node" in f else "keras"
    except (ImportError, OSError, ValueError, RuntimeError):
        pass  # h5py absent, or the file unreadable
    return "nir" if path.lower().endswith(".nir") else "keras"


def _what_it_is(data: bytes) -> str:
    if data.startswith(b"\x93NUMPY"):
        return "it is a numpy .npy array"
    if not data:
        return "it is empty"
    from .onnx.read import looks_like_onnx
    if looks_like_onnx(data):
        return "it looks like an ONNX model: give it the .onnx suffix"
    try:
        data[:4096].decode("utf-8")
        return "it looks like text"
    except UnicodeDecodeError:
        return "unrecognised binary content"
