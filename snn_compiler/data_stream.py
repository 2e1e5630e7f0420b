"""Data read a batch at a time, so a run's memory does not grow with its number of samples.

``--data`` of ``snnc simulate`` and ``snnc sweep`` names one of:

* DATA.npz (x, optional y): read whole, as every command reads it (:func:`.data.load_data`);
* a directory of .npz shards, each with x and (in all or none of them) y, read one shard at a
  time in file-name order through the same guarded reader (headers and sizes checked before
  anything is inflated);
* a directory holding x.npy and optionally y.npy, or ``X.npy`` / ``X.npy,Y.npy`` named directly:
  x is read a slice at a time at its offset in the file (not through np.memmap, whose touched
  pages would stay in the process's resident memory), y whole (N labels are small).

Every batch is shaped, laid out and checked by :func:`.data.fit_samples`, the rule of a whole
DATA.npz, and the labels by :func:`.data.check_labels`, so a streamed run sees exactly the samples
an in-memory one does. A source yields ``(first, x)``: the index of the batch's first sample in the
whole data set (Poisson streams are keyed by it) and the batch.
"""
from __future__ import annotations

import math
import os
import zipfile

import numpy as np

from . import zipped_arrays as zipped
from .data import DataError, check_labels, fit_samples, load_data

# Samples read at once from a streamed source: at most this many bytes of stored x (plus its
# float64 copy), whatever the batch size asked for.
READ_BYTES = 64 << 20


class Source:
    """A data set: ``n`` samples of stored shape ``sample_shape``, labels ``y`` (or None), and
    :meth:`batches`. ``streamed``: read a batch at a time (False: held in memory, ``x``)."""

    def __init__(self, path, n, sample_shape, y, fit, streamed, x=None):
        self.path, self.n, self.sample_shape, self.y = path, n, tuple(sample_shape), y
        self._fit, self.streamed, self.x = fit, streamed, x

    def peek(self) -> np.ndarray:
        """No samples, with the per-sample shape the batches will have (T rules read shapes only)."""
        return np.empty((0,) + tuple(self._fit(np.zeros((1,) + self.sample_shape)).shape[1:]))

    def batches(self, size: int):
        """Yield (first sample index, float64 batch of at most ``size`` samples), in order."""
        if self.x is not None:
            for lo in range(0, self.n, size):
                yield lo, self.x[lo:lo + size]
            return
        yield from self._stream(size)


def open_source(path, shape=None, n_outputs=None, layout=None, notes=None, sequences=False) -> Source:
    """The data set at ``path`` (see the module's docstring); a one-line DataError naming the file
    when it is none of them."""
    path = str(path)
    fit = lambda p, x: fit_samples(p, x, shape, layout, _once(notes), sequences)  # noqa: E731
    npy = _npy_pair(path)
    if npy is not None or os.path.isdir(path):
        src = _NpySource(npy[0], npy[1], n_outputs, fit) if npy is not None else _ShardSource(path, n_outputs, fit)
        src.peek()   # a sample shape the network does not take is refused now, before any run (and notes said)
        return src
    x, y = load_data(path, shape, n_outputs, layout, notes, sequences)
    return Source(path, len(x), x.shape[1:], y, lambda x: x, False, x)


def data_files(path) -> list:
    """The files that make up the data set at ``path``, in the order they are read."""
    path = str(path)
    npy = _npy_pair(path)
    if npy is not None:
        return [p for p in npy if p is not None]
    if os.path.isdir(path):
        return [os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith(".npz")]
    return [path]


def _once(notes):
    """A notes list that keeps each line once (a layout note would repeat for every batch)."""
    if notes is None:
        return None

    class Once(list):
        def append(self, line):
            if line not in notes:
                notes.append(line)
    return Once()


def _npy_pair(path):
    """(X.npy, Y.npy or None) when ``path`` names an .npy pair, else None."""
    if os.path.isdir(path):
        x, y = os.path.join(path, "x.npy"), os.path.join(path, "y.npy")
        if os.path.exists(x):
            return x, y if os.path.exists(y) else None
        return None
    parts = path.split(",")
    if not parts[0].endswith(".npy") or len(parts) > 2:
        return None
    for p in parts:
        if not os.path.isfile(p):
            raise DataError(f"{p}: no such file")
    return parts[0], parts[1] if len(parts) == 2 else None


def npy_header(path):
    """(shape, dtype, data offset) of a plain .npy file, its size checked against the header (a
    file cut short or padded is refused before any read)."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format version {version} (np.save writes 1.0 or 2.0)")
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy array ({zipped._one_line(e)})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects (dtype {dtype}); save numeric arrays")
    if fortran and len(shape) > 1:
        raise DataError(f"{path}: is stored in Fortran order, which cannot be read a sample at a time; "
                        f"save it with np.save(path, np.ascontiguousarray(x))")
    size = offset + math.prod(shape) * dtype.itemsize
    if size != os.path.getsize(path):
        raise DataError(f"{path}: its header declares {shape} {dtype} ({size} bytes with the header) but the file "
                        f"holds {os.path.getsize(path)} bytes; it was cut short or altered")
    return tuple(int(d) for d in shape), dtype, offset


def _check_x(path, shape, dtype):
    if dtype.kind not in "fiub":
        raise DataError(f"{path}: 'x' must be numeric, got {dtype}")
    if len(shape) < 1 or shape[0] == 0:
        raise DataError(f"{path}: 'x' holds no samples")


def _rows(sample_shape, itemsize, size):
    """Samples a read takes: ``size`` asked for, fewer when that would pass READ_BYTES."""
    per = max(1, math.prod(sample_shape) * (itemsize + 8))
    return max(1, min(size, READ_BYTES // per))


class _NpySource(Source):
    def __init__(self, xpath, ypath, n_outputs, fit):
        shape, self.dtype, self.offset = npy_header(xpath)
        _check_x(xpath, shape, self.dtype)
        y = None
        if ypath is not None:
            yshape, ydtype, _ = npy_header(ypath)   # its size checked against its header before it is read
            if yshape != (shape[0],) or ydtype.kind not in "iu":   # refused before reading a y of any size
                raise DataError(f"{ypath}: 'y' must be {shape[0]} integer labels, got {ydtype} {yshape}")
            y = np.load(ypath, allow_pickle=False)
            check_labels(ypath, y, shape[0], n_outputs)
        super().__init__(xpath, shape[0], shape[1:], y, lambda x: fit(xpath, x), True)

    def _stream(self, size):
        rows = _rows(self.sample_shape, self.dtype.itemsize, size)
        per = math.prod(self.sample_shape)
        with open(self.path, "rb") as f:
            for lo in range(0, self.n, rows):
                n = min(rows, self.n - lo)
                f.seek(self.offset + lo * per * self.dtype.itemsize)
                x = np.fromfile(f, self.dtype, n * per)
                if len(x) != n * per:
                    raise DataError(f"{self.path}: ended early at sample {lo} (changed while it was read?)")
                yield lo, self._fit(x.reshape((n,) + self.sample_shape))


class _ShardSource(Source):
    def __init__(self, path, n_outputs, fit):
        names = sorted(f for f in os.listdir(path) if f.endswith(".npz"))
        if not names:
            raise DataError(f"{path}: is a directory without .npz shards or x.npy; a streamed data set is a "
                            f"directory of .npz files each with x (and y), or one holding x.npy (and y.npy)")
        self.shards, ys, sample_shape = [], [], None
        for name in names:
            p = os.path.join(path, name)
            shape, dtype, y = _shard_header(p)
            _check_x(p, shape, dtype)
            if sample_shape is not None and shape[1:] != sample_shape:
                raise DataError(f"{p}: samples of shape {shape[1:]}, but {names[0]}'s are {sample_shape}; "
                                f"every shard holds samples of one shape")
            if ys and (y is None) != (ys[0] is None):
                raise DataError(f"{p}: {'has no' if y is None else 'has'} labels 'y' but {names[0]} "
                                f"{'has' if y is None else 'has none'}; give labels in every shard or in none")
            sample_shape = shape[1:]
            check_labels(p, y, shape[0], n_outputs)
            self.shards.append((p, shape[0]))
            ys.append(y)
        labels = None if ys[0] is None else np.concatenate(ys)
        super().__init__(path, sum(n for _, n in self.shards), sample_shape, labels, None, True)
        self._fit_to = fit

    def peek(self):
        return np.empty((0,) + tuple(self._fit_to(self.shards[0][0], np.zeros((1,) + self.sample_shape)).shape[1:]))

    def _stream(self, size):
        first = 0
        for p, n in self.shards:   # one shard in memory at a time, through the guarded reader
            x, _ = load_data(p)
            if len(x) != n:
                raise DataError(f"{p}: changed while it was read ({len(x)} samples, {n} before)")
            for lo in range(0, n, size):
                yield first + lo, self._fit_to(p, x[lo:lo + size])
            first += n
            del x


def _shard_header(path):
    """(x's shape, x's dtype, y or None) of one .npz shard: x's header only, y read whole."""
    try:
        with zipfile.ZipFile(path) as z:
            members = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename: i for i in z.infolist()}
            if "x" not in members:
                raise DataError(f"{path}: no array 'x' (found: {', '.join(members) or 'none'})")
            shape, dtype = zipped.header(z, members["x"], f"{path}: 'x'")
            if "y" in members:   # a y of the wrong length or type is refused before it is inflated
                yshape, ydtype = zipped.header(z, members["y"], f"{path}: 'y'")
                if yshape != shape[:1] or ydtype.kind not in "iu":
                    raise DataError(f"{path}: 'y' must be {shape[0] if shape else 0} integer labels, got {ydtype} {yshape}")
    except zipped.ZipArrayError as e:
        raise DataError(str(e)) from None
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz shard ({zipped._one_line(e)})") from None
    y = None
    if "y" in members:
        try:
            y = zipped.read_npz(path, ("y",), ".npz shard", "the data")[0]["y"]
        except zipped.ZipArrayError as e:
            raise DataError(str(e)) from None
    return shape, dtype, y
