"""DATA.npz (inputs ``x``, optional integer labels ``y``) and RESULTS.npz files."""
from __future__ import annotations

import zipfile

import numpy as np

from .artifact import atomic_write


class DataError(ValueError):
    pass


def load_data(path, shape=None):
    """(x, y or None) from an .npz holding ``x`` (N, ...) and optionally ``y`` (N,) integers."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise DataError(f"{path}: no array 'x' (found: {', '.join(z.files) or 'none'})")
            x, y = z["x"], (z["y"] if "y" in z.files else None)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz data file ({e})") from None
    if x.dtype.kind not in "fiub":
        raise DataError(f"{path}: 'x' must be numeric, got {x.dtype}")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        if int(np.prod(x.shape[1:])) == int(np.prod(shape)):
            x = x.reshape((len(x),) + tuple(shape))
        else:
            raise DataError(f"{path}: samples have shape {x.shape[1:]}, the network takes {tuple(shape)}")
    if y is not None:
        if y.shape != (len(x),) or y.dtype.kind not in "iu":
            raise DataError(f"{path}: 'y' must be {len(x)} integer labels, got {y.dtype} {y.shape}")
    return x.astype(np.float64), y


def save_results(path, scores, predictions, **extra) -> None:
    def write(f):
        np.savez(f, scores=scores, predictions=predictions, **extra)
    atomic_write(path, write)
