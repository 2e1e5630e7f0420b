"""Load-time validation of an artifact (.snnc): nothing from the file reaches an engine unchecked.

:func:`snn_compiler.artifact.load` calls these in three steps, each refusing with one
:class:`ArtifactError` line naming the node (or ``graph``) and the field:

1. :func:`check_state` -- the manifest's ``graph`` facts: ``bits`` (2..16), ``membrane_bits``
   (the bounds of :data:`snn_compiler.ir.registers.WIDTHS`), ``reset`` and ``v_init`` in their sets,
   the ``registers`` the quantize pass recorded (absent: :data:`hardware.REFERENCE`), ``ranges``.
2. :func:`node_fields` -- per node, before any op is built: only the fields of its kind, JSON
   types (integers are integers, floats finite), array dtypes (integer fields integer, float
   fields finite floats) and dimensions; in version 3 also each integer array in exactly the
   narrowest signed dtype of its register (:func:`stored_dtype`) and a weight stored as float16
   residuals consistent with its ``weight_int`` and ``weight_step`` (:func:`check_residual`).
3. :func:`check_graph` -- after :func:`snn_compiler.ir.verify`, on quantized graphs: SNN form,
   ``weight_int`` within ``±(2**(bits-1)-1)``, ``weight_exp`` in 0..weight_exp_max, threshold in
   1..threshold_max, ``v_init`` within the membrane, bias within the bias register, Input bits in
   1..16, and the worst-case sums the engines rely on: every connection below 2**53 (float64
   BLAS exact), every pooled input below 2**31 (int32), every layer's ``|v| + |I| + |bias|``
   below 2**62 (int64). An artifact that passes runs identically on the numpy and numba engines.
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import MISSING, fields

import numpy as np

from .ir import registers as hardware
from .config import RESETS, V_INITS
from .ir import ops as O
from .ir.neuron import DECAY_ONE

INPUT_BITS = (1, 16)
WEIGHT_BITS = (2, 16)
MAX_DIM = 1 << 31
POOL_MAX = 1 << 31          # the numba engine sums pooled inputs in int32
RECOMPILE = "the artifact is corrupt or was edited: recompile the model"


class ArtifactError(ValueError):
    pass


def short(v, n=80) -> str:
    """repr(v), cut to ``n`` characters (a tampered field may be megabytes long)."""
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


def _fail(where, what):
    raise ArtifactError(f"{where}: {what}; {RECOMPILE}")


def is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---- per-field specs: JSON attributes and arrays of each node kind --------------------------------

def _int_in(lo, hi=None):
    def check(v):
        if not is_int(v):
            return "must be an integer"
        if v < lo or (hi is not None and v > hi):
            return f"must be in {lo}..{hi}" if hi is not None else f"must be >= {lo}"
        return None
    return check


def _opt(check):
    return lambda v: None if v is None else check(v)


def _float_pos(v):
    return None if _is_num(v) and v > 0 else "must be a finite number > 0"


def _float_nonneg(v):
    return None if _is_num(v) and v >= 0 else "must be a finite number >= 0"


def _bool(v):
    return None if isinstance(v, bool) else "must be true or false"


def _pair(lo):
    def check(v):
        if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(is_int(x) and lo <= x < MAX_DIM for x in v)):
            return f"must be two integers >= {lo}"
        return None
    return check


def _shape(v):
    if not (isinstance(v, (list, tuple)) and len(v) in (1, 3) and all(is_int(x) and 1 <= x < MAX_DIM for x in v)):
        return "must be 1 or 3 positive integers (F or C,H,W)"
    return None


def _reset(v):
    return None if v in RESETS else f"must be one of {', '.join(RESETS)}"


_NEURON = {"scale": _opt(_float_pos), "threshold": _opt(_int_in(1)), "v_init": _opt(_int_in(-(1 << 62), 1 << 62)),
           "step": _opt(_float_pos), "readout": _bool, "reset": _reset, "spike_value": _opt(_float_pos),
           "decay_u": _int_in(0, DECAY_ONE), "membrane_bits": _int_in(*hardware.WIDTHS["membrane_bits"]),
           "levels": _opt(_int_in(1)), "qcfs_theta": _opt(_float_pos), "clip": _opt(_float_pos)}
_WEIGHTED = {"weight_exp": _int_in(0, hardware.WIDTHS["weight_exp_max"][1])}
ATTRS = {
    "Input": {"shape": _shape, "scale": _opt(_float_pos), "bits": _int_in(*INPUT_BITS), "signed": _bool},
    "Dense": _WEIGHTED,
    "Conv2d": dict(_WEIGHTED, stride=_pair(1), padding=_pair(0), dilation=_pair(1), groups=_int_in(1, MAX_DIM),
                   input_dilation=_pair(1)),
    "AvgPool2d": {"kernel_size": _pair(1), "stride": _pair(1), "padding": _pair(0)},
    "BatchNorm": {"eps": _float_nonneg},
    "Affine": {}, "Flatten": {}, "Add": {},
    "Neuron": _NEURON,
}
# array fields: (dtype kind "f" or "i", allowed ndim)
_W = {"weight": ("f", None), "bias": ("f", (1,)), "weight_int": ("i", None)}
ARRAYS = {
    "Dense": dict(_W, weight=("f", (2,))), "Conv2d": dict(_W, weight=("f", (4,))),
    "BatchNorm": {k: ("f", (1,)) for k in ("mean", "var", "weight", "bias")},
    "Affine": {"scale": ("f", (1,)), "shift": ("f", (1,))},
    "Neuron": {"bias": ("i", (0, 1, 2, 3)), "beta": ("f", (1,)), "decay_v": ("i", (1,)),
               "clip": ("f", (1,))},  # per channel after channel-wise normalization, else a number
}


def check_name(v, where):
    if not isinstance(v, str) or not v or len(v) > 200 or any(unicodedata.category(c)[0] == "C" for c in v):
        _fail(where, f"node name {short(v)} must be a non-empty printable string of at most 200 characters")
    return v


def node_fields(cls, name, attrs, array_names, where):
    """Check a node's JSON attributes and the list of its array fields against its kind."""
    kind = cls.__name__
    node = f"{where}: node {name!r}"
    if not isinstance(attrs, dict) or not isinstance(array_names, list):
        _fail(node, "'attrs' must be a mapping and 'arrays' a list")
    known = {f.name for f in fields(cls)}
    arr_spec, attr_spec = ARRAYS.get(kind, {}), ATTRS.get(kind, {})
    for f in array_names:
        if f not in arr_spec or f not in known:
            _fail(node, f"{kind} has no array field {short(f)}")
    if len(set(array_names)) != len(array_names):
        _fail(node, "an array field is listed twice")
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    for f, v in attrs.items():
        if f not in known:
            _fail(node, f"{kind} has no field {short(f)}")
        if f in arr_spec:
            if v is None and f not in required:
                continue  # an optional array that is absent
            if f not in attr_spec:  # (a field that is an array or a number, like a clip, is checked below)
                _fail(node, f"{f} must be an array, not {short(v)}")
        problem = attr_spec[f](v) if f in attr_spec else None
        if problem:
            _fail(node, f"{f} {problem}, got {short(v)}")
    for f in sorted(required - set(attrs) - set(array_names)):
        _fail(node, f"{kind} needs the field {f!r}")


def check_array(cls, name, field, arr, where):
    node = f"{where}: node {name!r}"
    if not isinstance(arr, np.ndarray):
        _fail(node, f"{field} is not a .npy array")
    kind, ndims = ARRAYS[cls.__name__][field]
    if arr.dtype.kind != kind or arr.dtype.itemsize > 8:
        want = "a float (float16/32/64)" if kind == "f" else "a signed integer (int8..int64)"
        _fail(node, f"{field} has dtype {arr.dtype}, expected {want} array")
    if ndims is not None and arr.ndim not in ndims:
        _fail(node, f"{field} has {arr.ndim} dimensions, expected {' or '.join(map(str, ndims))}")
    if kind == "f" and not np.all(np.isfinite(arr)):
        _fail(node, f"{field} has non-finite values (NaN or inf)")


# ---- the graph facts ---------------------------------------------------------------------------

def _range(v):
    return isinstance(v, list) and len(v) == 2 and all(is_int(x) for x in v) and v[0] <= v[1]


def check_state(state, where) -> hardware.Registers:
    """Check the manifest's graph facts; return the registers the artifact was quantized for."""
    g = f"{where}: graph"
    if not isinstance(state, dict):
        _fail(where, "the manifest's 'graph' must be a mapping")
    for key in ("normalized", "quantized"):
        if key in state and not isinstance(state[key], bool):
            _fail(g, f"{key} must be true or false, got {short(state[key])}")
    checks = {"bits": _int_in(*WEIGHT_BITS), "membrane_bits": _int_in(*hardware.WIDTHS["membrane_bits"]),
              "timesteps": _int_in(1)}
    for key, check in checks.items():
        if key in state and check(state[key]):
            _fail(g, f"{key} {check(state[key])}, got {short(state[key])}")
    for key, allowed in (("reset", RESETS), ("v_init", V_INITS)):
        if key in state and state[key] not in allowed:
            _fail(g, f"{key} must be one of {', '.join(allowed)}, got {short(state[key])}")
    if state.get("input_layout") not in (None, "channels_last", "channels_first"):
        _fail(g, f"input_layout must be channels_last or channels_first, got {short(state['input_layout'])}")
    for key in ("norm", "target"):
        if key in state and state[key] is not None and not isinstance(state[key], str):
            _fail(g, f"{key} must be a string, got {short(state[key])}")
    regs = hardware.REFERENCE
    if state.get("registers") is not None:
        raw = state["registers"]
        if not isinstance(raw, dict) or set(raw) - set(hardware.NAMES):
            _fail(g, f"registers must be a mapping of {', '.join(hardware.NAMES)}, got {short(raw)}")
        try:
            regs = hardware.Registers(**raw)
        except hardware.RegisterError as e:
            _fail(g, f"registers.{e}")
        if "membrane_bits" in state and state["membrane_bits"] != regs.membrane_bits:
            _fail(g, f"membrane_bits {short(state['membrane_bits'])} differs from registers.membrane_bits "
                     f"{regs.membrane_bits}")
    ranges = state.get("ranges", {})
    if not isinstance(ranges, dict):
        _fail(g, "ranges must be a mapping of layer -> ranges")
    for layer, r in ranges.items():
        if not (isinstance(r, dict) and _range(r.get("current")) and _range(r.get("membrane"))
                and isinstance(r.get("current_fits", True), bool) and isinstance(r.get("membrane_saturates", True), bool)):
            _fail(g, f"ranges[{short(layer)}] must hold current and membrane as [low, high] integers, got {short(r)}")
    rates = state.get("expected_rates", {})
    if not isinstance(rates, dict) or not all(_is_num(v) for v in rates.values()):
        _fail(g, "expected_rates must map layers to finite numbers")
    mods = state.get("modules", {})
    if not (isinstance(mods, dict) and all(isinstance(k, str) and isinstance(v, list) and len(v) == 2 and all(
            isinstance(p, str) and len(p) <= 200 for p in v) for k, v in mods.items())):
        _fail(g, "modules must be a mapping of layer -> [module path, kind] strings")
    return regs


# ---- the quantized graph: every integer against its register, every sum within the engines' range --

def check_graph(g, regs, where) -> None:
    """Check a verified graph's integer fields against ``regs`` and the engines' exact ranges."""
    from .ir import op_of, topo_order
    from .ir.layers import incoming, input_range, source_and_area, sum_abs_bound
    from .passes.check_snn_form import check_snn_form

    state = g.graph.get("snnc", {})
    order = topo_order(g)
    for n in order:
        if min(g.nodes[n]["shape"], default=1) < 1:
            _fail(f"{where}: node {n!r}", f"output shape {g.nodes[n]['shape']} is empty")
    for n in order:
        op = op_of(g, n)
        if isinstance(op, O.Input) and op.signed and op.bits < 2:
            _fail(f"{where}: node {n!r}", f"bits {op.bits} cannot hold a signed input (needs >= 2)")
    layers = [n for n in order if isinstance(op_of(g, n), O.NEURONS)]
    extra = set(state.get("ranges", {})) - set(layers)
    if extra:
        _fail(f"{where}: graph", f"ranges name no neuron layer: {', '.join(map(repr, sorted(extra)))}")
    if not state.get("quantized"):
        return
    try:
        check_snn_form(g, None)
    except ValueError as e:
        _fail(where, str(e))
    bits = state.get("bits", WEIGHT_BITS[1])
    wmax = hardware.signed_max(bits)
    bounds = {}
    for n in order:
        op, node = op_of(g, n), f"{where}: node {n!r}"
        if isinstance(op, O.Input):
            if op.scale is None:
                _fail(node, "scale is missing from a quantized Input")
        elif isinstance(op, O.WEIGHTED):
            w = op.weight_int
            lo, hi = int(w.min(initial=0)), int(w.max(initial=0))
            if max(-lo, hi) > wmax:
                _fail(node, f"weight_int [{lo}, {hi}] is outside the {bits}-bit weight range ±{wmax}")
            if op.weight_exp > regs.weight_exp_max:
                _fail(node, f"weight_exp {op.weight_exp} is outside 0..{regs.weight_exp_max} (weight_exp_max)")
            in_max = input_range(g, n)[0]
            if in_max >= POOL_MAX:
                _fail(node, f"pooled input reaches {in_max} (pool area {source_and_area(g, n)[1]}), beyond the "
                            "engines' int32 sums")
            bound = sum_abs_bound(w, 2.0 ** op.weight_exp * in_max)
            if bound >= hardware.MAX_EXACT_SUM:
                _fail(node, f"worst-case sum {bound:.3g} of weight_int << weight_exp reaches 2**53, beyond the "
                            "engines' exact range")
            bounds[n] = bound
        elif isinstance(op, O.NEURONS):
            if op.membrane_bits != regs.membrane_bits:
                _fail(node, f"membrane_bits {op.membrane_bits} differs from registers.membrane_bits {regs.membrane_bits}")
            vmax = op.v_max
            if op.beta is not None and not (np.all(op.beta >= 0) and np.all(op.beta <= 1)):
                _fail(node, "beta must lie in 0..1")
            if op.decay_v is not None and (op.decay_v.min(initial=0) < 0 or op.decay_v.max(initial=0) > DECAY_ONE):
                _fail(node, f"decay_v must lie in 0..{DECAY_ONE}")
            if op.threshold > regs.threshold_max:
                _fail(node, f"threshold {op.threshold} is outside the {regs.threshold_bits}-bit threshold register "
                            f"(1..{regs.threshold_max})")
            if abs(op.v_init) > vmax:
                _fail(node, f"v_init {op.v_init} is outside the membrane (±{vmax})")
            b = op.bias.astype(np.int64) if op.bias.dtype.itemsize == 8 else op.bias
            big = int(np.abs(b.astype(np.float64)).max(initial=0))
            if big > regs.bias_max or not regs.bias_fits(b).all():
                _fail(node, f"bias {big} does not fit the {regs.bias_register()} (max {regs.bias_max})")
            total = sum(bounds.get(k, 0.0) for k in incoming(g, n)) + big + vmax
            if total >= hardware.MAX_LAYER_SUM:
                _fail(node, f"worst-case |membrane| + |current| + |bias| ({total:.3g}) reaches 2**62, beyond the "
                            "engines' int64 arithmetic")


# ---- version 3: the dtypes integers are stored in, and the float16 form of quantized weights -----

# The dtypes the quantize pass computes in: a loaded array is widened back to these (exactly, after
# its values were checked), so no engine or backend does arithmetic in int8 and wraps.
MEMORY_DTYPES = {"weight_int": np.dtype(np.int32), "bias": np.dtype(np.int64), "decay_v": np.dtype(np.int64)}
# One float16 residual per weight, |r| <= 1 step: its rounding error is at most 2**-12 steps; an
# encoding that would err more (weights not quantized from these float weights) is not used.
RESIDUAL_ERROR = 2.0 ** -11


def narrowest(limit: int) -> np.dtype:
    """The narrowest signed integer dtype holding ``-limit..limit``."""
    return next(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64) if np.iinfo(t).max >= limit)


def stored_dtype(kind: str, field: str, bits: int, regs: hardware.Registers):
    """The dtype a version-3 artifact stores an integer field in: the narrowest signed dtype of its
    register (``bits``-bit weights, the bias register, 0..4096 decays); None for a float field."""
    if ARRAYS[kind][field][0] != "i":
        return None
    if field == "weight_int":
        return narrowest(hardware.signed_max(bits))
    return narrowest(regs.bias_max if field == "bias" else DECAY_ONE)


def check_stored(cls, name, field, arr, want, where) -> None:
    """A version-3 integer array in exactly its register's dtype (a wider or unsigned one is refused,
    so a value beyond the register can never hide in spare bits of the file)."""
    if want is not None and arr.dtype != want:
        _fail(f"{where}: node {name!r}", f"{field} has dtype {arr.dtype}, expected {want} (the narrowest signed "
                                         f"dtype of its register)")


def check_residual(cls, name, step, arrays, where) -> None:
    """A weight stored as float16 residuals of ``weight_int`` in steps of ``step`` (version 3)."""
    node = f"{where}: node {name!r}"
    if cls not in O.WEIGHTED or "weight" not in arrays or "weight_int" not in arrays:
        _fail(node, "weight_step needs a Dense or Conv2d node storing weight and weight_int")
    if _float_pos(step):
        _fail(node, f"weight_step {_float_pos(step)}, got {short(step)}")
    w, wi = arrays["weight"], arrays["weight_int"]
    if w.dtype != np.float16 or w.shape != wi.shape:
        _fail(node, f"weight stored as residuals must be float16 of weight_int's shape {wi.shape}, got {w.dtype} "
                    f"{w.shape}")


def check_plain_weight(name, arr, where) -> None:
    if arr.dtype == np.float16:
        _fail(f"{where}: node {name!r}", "weight is float16 but the node has no weight_step")
