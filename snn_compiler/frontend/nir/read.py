"""Reading a NIR file. NIR files are HDF5: :func:`read_nir` reads the file once and checks those
bytes before ``nir`` parses them: no external, soft or virtual links or external storage (nothing
outside the file is read), only numeric and string datasets, bounded size and depth.
"""
from __future__ import annotations

import io
import os

from ..files import HDF5_MAGIC
from .common import NIRError, nir_package

MAX_FILE_BYTES = 1 << 31        # 2 GiB
MAX_VALUE_BYTES = 1 << 32       # all datasets together, uncompressed
MAX_OBJECTS = 1_000_000
MAX_DEPTH = 32


def _check_hdf5(f, label) -> None:
    """Refuse anything in the file that would make h5py read outside it, or read without bound."""
    import h5py
    if "node" not in f:
        raise NIRError(f"{label}: an HDF5 file without NIR's 'node' group, so not a NIR file")
    total = objects = 0
    stack = [(f, 0)]
    while stack:
        grp, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise NIRError(f"{label}: groups nested deeper than {MAX_DEPTH} ({grp.name}); not a NIR file snnc reads")
        for key in grp:
            where = f"{grp.name.rstrip('/')}/{key}"
            link = grp.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise NIRError(f"{label}: {where} is a {type(link).__name__}; snnc reads only self-contained NIR "
                               "files (no external or soft links)")
            obj = grp[key]
            objects += 1
            if objects > MAX_OBJECTS:
                raise NIRError(f"{label}: more than {MAX_OBJECTS} HDF5 objects")
            if isinstance(obj, h5py.Group):
                stack.append((obj, depth + 1))
            elif isinstance(obj, h5py.Dataset):
                if obj.is_virtual or obj.external:
                    raise NIRError(f"{label}: dataset {where} reads its data from other files; refused")
                if not (obj.dtype.kind in "biufS" or h5py.check_string_dtype(obj.dtype) is not None):
                    raise NIRError(f"{label}: dataset {where} has dtype {obj.dtype}; NIR stores numbers and strings")
                total += int(obj.size or 0) * obj.dtype.itemsize
                if total > MAX_VALUE_BYTES:
                    raise NIRError(f"{label}: its datasets hold more than {MAX_VALUE_BYTES >> 30} GiB uncompressed")
            else:
                raise NIRError(f"{label}: {where} is neither a group nor a dataset")


def parse_nir_bytes(data: bytes, label: str = "the NIR file"):
    """A ``nir.NIRGraph`` from the bytes of a NIR file, checked first (see :func:`read_nir`)."""
    nir = nir_package()
    import h5py
    if not bytes(data[:8]) == HDF5_MAGIC:
        raise NIRError(f"{label} is not a NIR file (NIR files are HDF5, which start with \\x89HDF)")
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except Exception as e:  # noqa: BLE001 - h5py raises OSError and others on a damaged file
        raise NIRError(f"{label}: not a readable NIR file: its HDF5 structure cannot be read, the file is truncated "
                       f"or corrupt ({' '.join(str(e).split()) or type(e).__name__})") from None
    try:
        with f:
            _check_hdf5(f, label)
        g = nir.read(io.BytesIO(data), type_check=False)
    except NIRError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py and nir raise anything on a malformed file
        why = " ".join(str(e).split()) or (f"a node type or field nir {getattr(nir, 'version', '')} does not know"
                                           if isinstance(e, AssertionError) else type(e).__name__)
        raise NIRError(f"{label}: not a readable NIR file ({why})") from None
    if not isinstance(g, nir.NIRGraph):
        raise NIRError(f"{label}: holds a single {type(g).__name__} node, not a NIR graph")
    return g


def read_nir(path):
    """The ``nir.NIRGraph`` in the NIR file ``path``: read once, the bytes checked (no links or
    storage outside the file, only numeric and string data, bounded size), then parsed by ``nir``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NIRError(f"{path}: no such file")
    if os.path.getsize(path) > MAX_FILE_BYTES:
        raise NIRError(f"{path}: larger than {MAX_FILE_BYTES >> 30} GiB; not a NIR file snnc reads")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    return parse_nir_bytes(data, path)
