"""DATA.npz (inputs ``x``, optional integer labels ``y``) and RESULTS.npz files."""
from __future__ import annotations

import io
import os

import numpy as np

from . import zipped_arrays as zipped
from .outputs import write_files
from .sim.input_rule import numba_kernels_or_none


class DataError(ValueError):
    pass


_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK"


def _not_npz(path) -> str:
    """Why ``path`` is not an .npz, from its first bytes, or '' when it may be one."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if head.startswith(_ZIP_MAGIC):
        return ""
    if head.startswith(_NPY_MAGIC):
        return "is a single .npy array, not an .npz archive: save it with np.savez(path, x=x, y=y)"
    if not head:
        return "is empty"
    try:
        head.decode("utf-8")
        return "looks like text, not an .npz archive: save the arrays with np.savez(path, x=x, y=y)"
    except UnicodeDecodeError:
        return "is not an .npz archive (np.savez(path, x=x, y=y) writes one)"


def _fit_shape(path, x, shape, sequences=False):
    """``x`` as (N, *shape), or as given when it is a sequence (N, T, *shape), one frame per step,
    and ``sequences`` are wanted (:func:`snn_compiler.sim.encode.sequence_steps`: the number of axes
    decides, so (N, 1, *shape) is a sequence of one step). Otherwise only the exact shape, one where
    only size-1 axes differ and there is one channel, or a flat (N, prod) with one channel (no axis
    order to guess) are accepted."""
    shape, got = tuple(shape), tuple(x.shape[1:])
    is_sequence = len(got) == len(shape) + 1 and got[1:] == shape
    if got == shape or (sequences and is_sequence):
        return x
    one_channel = len(shape) == 1 or shape[0] == 1
    squeezed = tuple(d for d in got if d != 1) == tuple(d for d in shape if d != 1)
    if one_channel and (squeezed or got == (int(np.prod(shape)),)):
        return x.reshape((len(x),) + shape)
    hint = ""
    if tuple(x.shape) == shape:
        hint = "; this looks like one sample without the batch axis: use x[None]"
    elif len(got) == 3 and len(shape) == 3 and got == (shape[1], shape[2], shape[0]):
        hint = "; this looks channels-last: use x.transpose(0, 3, 1, 2)"
    elif got == (int(np.prod(shape)),):
        hint = "; flat samples are ambiguous with several channels: reshape them in your layout"
    elif len(shape) == 1 and int(np.prod(got)) == shape[0]:
        hint = "; flatten them first: x.reshape(len(x), -1)"
    dims = ", ".join(map(str, shape))
    if sequences:
        raise DataError(f"{path}: samples have shape {got}, the network takes (N, {dims}) or sequences (N, T, {dims}){hint}")
    if is_sequence:
        hint = "; that is a sequence (N, T, ...), which snnc simulate and snnc check take; this needs samples"
    raise DataError(f"{path}: samples have shape {got}, the network takes (N, {dims}){hint}")


PARALLEL_CHECK = 1 << 20  # float32 values from which numba's one-pass check runs (where numba is installed)


# The largest |x| accepted: the ANN reading and the torch engine compute in float32, where a
# larger float64 value becomes inf (and the scores NaN).
FLOAT32_MAX = float(np.finfo(np.float32).max)


def refused_value(v):
    """Whether data refuses ``v``: NaN, infinite or beyond float32's range (``not |v| <= FLOAT32_MAX``), on
    an array (numpy) or on one value in compiled code (the recurrent kernel checks each value it reads:
    numba_kernels.recurrent_frames). Written once; check_values' fast paths test the same for whole arrays."""
    return np.logical_not(np.abs(v) <= FLOAT32_MAX)


def check_values(path, x):
    """Refuse (DataError naming ``path``, one line) input samples ``x`` holding NaN, infinities or
    values beyond float32's range: the one rule for data, whether read from a file or passed in."""
    if x.dtype.kind in "iub":
        return  # (every integer is finite and within float32's range)
    if x.dtype == np.float32 and x.size >= PARALLEL_CHECK and x.flags.c_contiguous \
            and (kernels := numba_kernels_or_none()) is not None and kernels.finite_float32(x.reshape(-1)):
        return  # (a finite float32 is within float32's range: one parallel pass, the common case)
    if x.size and np.isfinite(lo := x.min()) and np.isfinite(hi := x.max()) and max(-lo, hi) <= FLOAT32_MAX:
        return  # (two reductions, no temporary arrays)
    if not refused_value(x).any():
        return
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))
        raise DataError(f"{path}: 'x' holds {int(bad.sum())} NaN or infinite values (first in sample {first}); "
                        f"clean the data first")
    huge = np.abs(x) > FLOAT32_MAX
    if huge.any():
        first = int(np.argmax(huge.reshape(len(x), -1).any(axis=1)))
        n = int(huge.sum())
        raise DataError(f"{path}: 'x' holds {n} value{'s' if n > 1 else ''} beyond float32's range (|x| > {FLOAT32_MAX:.3g}, "
                        f"first in sample {first}, largest {float(np.abs(x).max()):.3g}), which the ANN reading "
                        f"computes in: rescale the data")


def _in_layout(path, x, shape, layout, notes):
    """Channels-last (N, H, W, C) data of a model that declares that layout -> (N, C, H, W), once;
    a channels-last sequence (N, T, H, W, C) -> (N, T, C, H, W) likewise."""
    if layout != "channels_last" or shape is None or len(shape) != 3 or x.ndim not in (4, 5):
        return x
    c, h, w = (int(d) for d in shape)
    lead = x.shape[:x.ndim - 3]  # (N,) or (N, T)
    if tuple(x.shape[len(lead):]) != (h, w, c):
        return x
    if notes is not None:
        t = "" if len(lead) == 1 else "T, "
        notes.append(f"{path}: x is channels-last (N, {t}{h}, {w}, {c}) as the model declares; transposed once "
                     f"to the IR's (N, {t}{c}, {h}, {w})")
    k = len(lead)
    return np.ascontiguousarray(x.transpose(tuple(range(k)) + (k + 2, k, k + 1)))


def _read_npz(path):
    """(x, y or None) of DATA.npz, each member's declared shape and size checked (against the zip's
    sizes and :data:`MAX_ARRAY_BYTES`) before anything is inflated."""
    numeric_x = lambda declared: "x" not in declared or declared["x"][1].kind in "fiub"  # noqa: E731  (else refused by dtype, below)
    try:
        arrays, members = zipped.read_npz(path, ("x", "y"), ".npz data file", "the data", numeric_x)
    except zipped.ZipArrayError as e:
        raise DataError(str(e)) from None
    if "x" not in arrays:
        raise DataError(f"{path}: no array 'x' (found: {', '.join(members) or 'none'})")
    return arrays["x"], arrays.get("y")


def load_data(path, shape=None, n_outputs=None, layout=None, notes=None, sequences=False):
    """(x as float64 (N, *shape), y or None) from an .npz holding ``x`` (N, ...) and optionally
    integer labels ``y`` (N,), each in 0..n_outputs-1 when ``n_outputs`` is given; with
    ``sequences``, x may also be a sequence (N, T, *shape). ``layout`` "channels_last" (a Keras
    model's): (N, H, W, C) data is transposed once, with a line in ``notes``."""
    path = str(path)
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a DATA.npz file (np.savez(path, x=x, y=y) writes one; "
                        f"snnc simulate and snnc sweep also stream a directory of .npz shards or of x.npy and y.npy)")
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    why = _not_npz(path)
    if why:
        raise DataError(f"{path} {why}")
    x, y = _read_npz(path)
    if x.dtype.kind not in "fiub":
        raise DataError(f"{path}: 'x' must be numeric, got {x.dtype}")
    if x.ndim < 1 or len(x) == 0:
        raise DataError(f"{path}: 'x' holds no samples")
    x = fit_samples(path, x, shape, layout, notes, sequences)
    check_labels(path, y, len(x), n_outputs)
    return x, y


def fit_samples(path, x, shape=None, layout=None, notes=None, sequences=False):
    """Numeric samples ``x`` (N, ...) read from ``path`` as float64 (N, *shape): put in the IR's
    layout, shaped for the input and checked finite (the rules of every DATA file and of each
    batch of a streamed one, :mod:`snn_compiler.data_stream`)."""
    if shape is not None:
        x = _fit_shape(path, _in_layout(path, x, shape, layout, notes), shape, sequences)
    x = np.asarray(x, dtype=np.float64)
    check_values(path, x)
    return x


def check_labels(path, y, n, n_outputs=None) -> None:
    """``y`` (None: no labels) must be ``n`` integer labels in 0..n_outputs-1."""
    if y is None:
        return
    if y.shape != (n,) or y.dtype.kind not in "iu":
        raise DataError(f"{path}: 'y' must be {n} integer labels, got {y.dtype} {y.shape}")
    if n_outputs is not None and n and (y.min() < 0 or y.max() >= n_outputs):
        raise DataError(f"{path}: labels 'y' must be in 0..{n_outputs - 1} (the network has {n_outputs} "
                        f"outputs), found {int(y.min())}..{int(y.max())}")


def _one_line(e) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def results_bytes(scores, predictions, decision_time=None, tied=None, **extra) -> bytes:
    """RESULTS.npz: ``scores`` (N, outputs) and ``predictions`` (N,); a latency read-out
    (first-spike, k-spikes) adds ``decision_time`` (N,) int64 (timesteps to the decision, -1:
    undecided) and ``tied`` (N,) bool; ``extra`` arrays as given. None values are left out."""
    arrays = dict(scores=scores, predictions=predictions, decision_time=decision_time, tied=tied, **extra)
    buf = io.BytesIO()
    np.savez(buf, **{k: v for k, v in arrays.items() if v is not None})
    return buf.getvalue()


def result_bytes(result, **extra) -> bytes:
    """RESULTS.npz of a SimResult: its scores and predictions, its decision_time and tied when set,
    and ``spikes/LAYER`` (N, T, neurons) uint8, each step's spikes of the layers it recorded (steps),
    or ``membrane/LAYER`` for a membrane read-out's layer (its membrane after each step)."""
    steps = {f"{'spikes' if a.dtype == np.uint8 else 'membrane'}/{n}": a
             for n, a in (getattr(result, "steps", None) or {}).items()}
    return results_bytes(result.scores, result.predictions, getattr(result, "decision_time", None),
                         getattr(result, "tied", None), **steps, **extra)


def save_results(path, scores, predictions, decision_time=None, tied=None, **extra) -> None:
    write_files({path: results_bytes(scores, predictions, decision_time, tied, **extra)})
