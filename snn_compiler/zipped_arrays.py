""".npy arrays inside zip files (DATA.npz, the .snnc artifact), read only after their declared sizes
are checked, so a small file that inflates to gigabytes (a decompression bomb) costs nothing.

A member's .npy header states its shape and dtype in its first bytes, and the zip directory
states the member's inflated size: both are read (inflating one block, not the member) and
refused unless they agree exactly (``np.save`` writes the header and then exactly the data) and
the arrays a file declares fit :data:`MAX_ARRAY_BYTES` once in memory. Only then is a member
inflated, straight into its array (no second copy of the bytes). A member that does not inflate
(a CRC or deflate error) or memory that runs out is refused naming the file, the member and the
cause, never numpy's or zlib's bare message.
"""
from __future__ import annotations

import math
import zipfile
import zlib

import numpy as np

# The most bytes the arrays of one file may take once read, counting the widest copy the
# compiler makes of each (float64 data, int64/float64 artifact fields: 8 bytes a value) beside the
# stored array: 4 GiB holds CIFAR-10's 50,000 training images or a 16-bit VGG-16 with room to spare.
MAX_ARRAY_BYTES = 4 << 30
WIDEST_ITEMSIZE = 8
DAMAGED = "its compressed bytes do not inflate to what was stored"


class ZipArrayError(ValueError):
    """A member that is not a readable .npy array, or declares more than may be read."""


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _one_line(e) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def header(z: zipfile.ZipFile, info: zipfile.ZipInfo, where: str):
    """(shape, dtype) of member ``info`` from its .npy header, checked against the zip's declared
    size; ZipArrayError naming ``where`` when they disagree or the header is not one."""
    fmt = np.lib.format
    try:
        with z.open(info) as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f".npy format version {version} (np.save writes 1.0 or 2.0)")
            start = f.tell()
    except (zlib.error, zipfile.BadZipFile) as e:
        raise ZipArrayError(f"{where} is damaged: {DAMAGED} ({_one_line(e)}); the file was cut short or altered") from None
    except (ValueError, OSError, EOFError, NotImplementedError) as e:
        raise ZipArrayError(f"{where} is not a readable .npy array ({_one_line(e)})") from None
    if dtype.hasobject:
        raise ZipArrayError(f"{where} holds Python objects (dtype {dtype}), which load only by unpickling; "
                            "save numeric arrays")
    if any(d < 0 for d in shape):
        raise ZipArrayError(f"{where} declares a negative dimension {shape}")
    declared = start + math.prod(shape) * dtype.itemsize
    if declared != info.file_size:
        raise ZipArrayError(f"{where} is damaged: its header declares {shape} {dtype} ({_size(declared)} with the "
                            f"header) but the zip member holds {_size(info.file_size)}")
    return tuple(int(d) for d in shape), dtype


def memory_bytes(shape, dtype) -> int:
    """Bytes an array takes read and widened (its stored copy and an 8-byte-a-value one)."""
    return math.prod(shape) * (dtype.itemsize + WIDEST_ITEMSIZE)


def check_budget(declared: dict, path, what: str, limit=None) -> None:
    """Refuse ``path`` when the arrays it declares ({member: (shape, dtype)}) would take more than
    ``limit`` bytes in memory, naming the largest; nothing has been inflated yet."""
    limit = MAX_ARRAY_BYTES if limit is None else limit
    need = {m: memory_bytes(s, d) for m, (s, d) in declared.items()}
    total = sum(need.values())
    if total > limit:
        big = max(need, key=need.get)
        shape, dtype = declared[big]
        raise ZipArrayError(f"{path}: {what} declares {_size(total)} of arrays once read (largest: {big}, "
                            f"{shape} {dtype}), over the {_size(limit)} snnc reads from one file (MAX_ARRAY_BYTES); "
                            f"refused before inflating anything" +
                            ("; split the data into smaller files" if what == "the data" else
                             "; the artifact is corrupt or was edited: recompile the model"))


def read(z: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """Member ``info`` (its header already checked) inflated straight into its array."""
    try:
        with z.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except MemoryError:
        raise ZipArrayError(f"{where}: not enough memory to read it ({_size(info.file_size)})") from None
    except (zlib.error, zipfile.BadZipFile, EOFError) as e:
        raise ZipArrayError(f"{where} is damaged: {DAMAGED} ({_one_line(e)}); the file was cut short or "
                            "altered") from None
    except (ValueError, OSError, NotImplementedError) as e:
        raise ZipArrayError(f"{where} is not a readable .npy array ({_one_line(e)})") from None


def read_npz(path, keys, readable_as: str, budget_as: str, budget_applies=None):
    """({key: array} for the ``keys`` the .npz at ``path`` holds, the names of all its members):
    every wanted member's header checked against its zip size and all of them against the budget
    (``budget_applies(declared)`` may waive it) before anything is inflated. Any failure is a
    ZipArrayError naming the file (``readable_as``: what a readable one is called)."""
    try:
        with zipfile.ZipFile(path) as z:
            members = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename: i for i in z.infolist()}
            wanted = [k for k in keys if k in members]
            declared = {k: header(z, members[k], f"{path}: '{k}'") for k in wanted}
            if budget_applies is None or budget_applies(declared):
                check_budget(declared, path, budget_as)
            return {k: read(z, members[k], f"{path}: '{k}'") for k in wanted}, list(members)
    except ZipArrayError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ZipArrayError(f"{path}: not a readable {readable_as} ({_one_line(e)})") from None
