"""NIR (the Neuromorphic Intermediate Representation, ``nir`` package) out of and into snnc.

**Export** (:func:`export_nir`, :func:`nir_bytes`, :func:`write_nir`; ``snnc export ARTIFACT
--format nir [--form float|int] [--dt DT] -o net.nir``) writes a compiled graph in one of two forms:

- ``float``: the float SNN (``simulate(mode="float")``): the normalised weights (the first
  layer's divided by the input scale, so the graph takes the raw input ``x`` as a current every
  step), threshold 1, spikes worth 1, the trained ``beta``. Synaptic pools are ``AvgPool2d``.
- ``int``: the integer SNN: weights ``weight_int << weight_exp`` (int64), the neuron's integer
  bias on the bias of its first connection, ``v_threshold = theta - 1/2`` (NIR fires on
  ``v > v_threshold``, snnc on ``v >= theta``: on integer membranes the two agree), synaptic pools
  are ``SumPool2d``, and the graph takes the graded integer input ``x_q`` (``metadata['snnc']``:
  ``input_scale``, ``input_levels``; :func:`snn_compiler.sim.encode.quantize_input`).

Neurons: a layer without leak is ``IF(r=1)``; a leaky layer is ``LIF(tau = dt/(1-beta),
r = tau/dt, v_leak = 0)`` (snnTorch's convention; the int form uses ``beta = 1 - decay_v/4096``);
one with current memory (``decay_u < 4096``) is ``CubaLIF`` with ``tau_syn = dt/(decay_u/4096)``,
``w_in = tau_syn/dt``. Forward-Euler with the same ``dt`` gives back exactly ``v = beta v + I``
(and ``u = alpha u + I``). ``dt`` defaults to 1e-4 (snnTorch's) and is recorded in the graph's
metadata; other tools must be told it.

What NIR cannot say is recorded, per node, in ``metadata['snnc']`` (read back by snnc) and
warned about (``strict=True`` refuses instead):

- **Reset.** NIR's IF/LIF reset *to* ``v_reset`` (exported 0); snnc's default is reset by
  subtraction (``v -= theta``). ``metadata['snnc']['reset']`` says which; a NIR tool ignoring it
  resets to zero. Only ``reset="zero"`` layers are described by the NIR equations themselves.
- **Initial membrane.** NIR has no initial state (tools start at 0); converted layers under
  ``--v-init half`` start at threshold/2: ``metadata['snnc']['v_init']`` (0.5 float, ``theta // 2`` int).
- **Integer leak** (int form): the integer LIF decays with products rounded toward zero
  (``metadata['snnc']['decay_v']``); NIR's LIF decays exactly. Membranes also saturate at
  ``+-v_max`` (``membrane_bits`` in the graph's metadata).

So a network compiled with ``--reset zero --v-init zero`` (trained LIF layers: ``reset="zero"``)
is described exactly by its float form (up to ``>=`` vs ``>`` at exact equality) and, for IF
layers, exactly by its int form.

**Import** (:func:`from_nir`, :func:`load_nir`; ``snnc compile net.nir --dt DT``) maps a NIR graph
written by any library onto the IR ops the torch frontend emits. Every neuron is a trained
spiking layer (spikes worth 1, ``scale`` = threshold, initial membrane 0, reset "zero" as NIR
defines it), fed by weighted ops; its input gain is folded into their weights (and a per-neuron
threshold, when thresholds differ, is folded in the same way, leaving threshold 1):

    IF       v[t] = v[t-1] + r I[t]                 gain r (per step: snnTorch, Norse and sinabs
                                                    all integrate IF this way, without dt)
    LIF      v[t] = beta v[t-1] + (r dt/tau) I[t]   beta = 1 - dt/tau        (euler)
                                                    beta = exp(-dt/tau), gain r (1 - beta)  (exact)
    CubaLIF  u[t] = alpha u[t-1] + (w_in dt/tau_syn) I[t],  alpha = 1 - dt/tau_syn (euler only)
             v[t] = beta v[t-1] + (r dt/tau_mem) u[t]
             alpha must be k/4096 (the Neuron's ``decay_u``): else refused with the nearest tau_syn
    LI, I, CubaLI   the same without spikes: only as the read-out (``--readout membrane``)

spiking on ``v >= v_threshold`` (NIR: ``>``; they differ only at exact equality) and resetting to
0 (``v_reset`` and ``v_leak`` must be 0, else refused). The last neuron layer (the one the graph's
``Output`` reads) becomes the read-out; an Output reading a current gets a non-spiking
accumulator (``--readout membrane``). NIR stores no timestep: ``dt`` must be given. Library
conventions (each exports and imports with its own):

    snnTorch 1.0  LIF/CubaLIF with dt = 1e-4 hard-coded, tau = dt/(1-beta), r = tau/dt,
                  tau_syn = dt/(1-alpha), w_in = tau_syn/dt; Euler            ->  --dt 1e-4
    Norse 1.1     LIF with r = 1, tau in seconds, Euler with dt = 1e-3 (its default)
                                                                              ->  --dt 1e-3
    sinabs 3.1    IF with r = 1; LIF/LI with tau in timesteps and r = 1; its LIF decays by
                  exp(-1/tau) and, with norm_input (its default), scales the input by
                  1 - exp(-1/tau): ``discretization="exact"``                ->  --dt 1
                  (its own from_nir builds norm_input=False layers, gain 1; its IAF resets by
                  subtraction, which its export does not record; its Conv2d export leaves
                  input_shape None, which nir 1.0.8 cannot write)

Also mapped: Affine/Linear -> Dense, Conv2d (int, pair or 'same'/'valid' padding), Flatten (of a
whole sample; ``start_dim=1`` is read as including the batch axis, as sinabs writes it), Scale
(per channel: folded into the weighted op before it, or by ``fold_batchnorm`` into the one after
it), AvgPool2d/SumPool2d: between a neuron layer (or the Input) and weighted ops a synaptic pool
(kernel = stride, no padding, the map divisible); into a neuron, a depthwise Conv2d; after a
Conv2d, composed into it. Several edges into a neuron are summed; a neuron fed straight by the
Input or another neuron gets an identity synapse. Refused with the reason: recurrent graphs and
subgraphs, Delay, Threshold, Conv1d, several inputs or outputs.

nir 1.0.8 caveats (measured): its type-checking read (``nir.read``'s default) refuses grouped
Conv2d (it types their input as ``C / groups`` channels), which snnc's exports hold for lowered
pools and residual skips, and it cannot write ``Conv2d(input_shape=None)`` nor gzip 0-d
parameters (``nir.write(..., compression=None)`` writes them). snnc reads with
``type_check=False`` and infers every shape itself, so 0-d parameters (snnTorch's scalar beta)
import too.

A graph snnc exported (``metadata['snnc']['format'] == 'snnc-nir'``) comes back with what its
metadata records: the input scale, bits and sign, ``dt``, each layer's reset, and (float form)
which layers were converted ReLUs (they take ``--reset``/``--v-init`` again). Compiled with the
same ``--bits`` (``--reset``/``--v-init`` for converted layers), the float form gives back the
same integer weights, thresholds and decays, so the same integer spikes (tests/test_nir.py).

NIR files are HDF5. :func:`read_nir` reads the file once and checks those bytes before ``nir``
parses them: no external, soft or virtual links or external storage (nothing outside the file is
read), only numeric and string datasets, bounded size and depth.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import Optional

import networkx as nx
import numpy as np

from ... import ir
from ...ir import neuron as N
from ...ir import ops as O
from ...ir.layers import incoming, source_and_area

FORMS = ("float", "int")
DISCRETIZATIONS = ("euler", "exact")
DEFAULT_DT = 1e-4               # snnTorch's hard-coded export timestep
FORMAT, FORMAT_VERSION = "snnc-nir", 1
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MAX_FILE_BYTES = 1 << 31        # 2 GiB
MAX_VALUE_BYTES = 1 << 32       # all datasets together, uncompressed
MAX_OBJECTS = 1_000_000
MAX_DEPTH = 32
UNIT_TOL = 1e-6                 # an input gain within this of 1 is 1 (float32 files: tau/dt * dt/tau)
DECAY_TOL = 1e-3                # |4096 dt/tau_syn - k| that still counts as decay_u = k
NEEDS_DT = ("NIR stores no timestep: give it (--dt, or dt= from Python); snnTorch exports with dt = 1e-4, "
            "Norse simulates with dt = 1e-3, sinabs counts time in steps (dt = 1)")

_SPIKING = ("IF", "LIF", "CubaLIF")
_READOUT_ONLY = ("LI", "I", "CubaLI")
_WEIGHTED_NIR = ("Affine", "Linear", "Conv2d")
_SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten", "Scale") \
    + _SPIKING + _READOUT_ONLY


class NIRError(ValueError):
    """A graph snnc cannot write as NIR, or a NIR file/graph it cannot import; says which and why."""


def _nir():
    try:
        import nir
    except ImportError:  # pragma: no cover - nir is a dev/interop dependency
        raise NIRError("NIR files need the nir package (pip install nir)") from None
    return nir


def _check_dt(dt) -> float:
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise NIRError(f"dt must be a number, got {dt!r}") from None
    if not (np.isfinite(dt) and dt > 0):
        raise NIRError(f"dt must be a finite number > 0, got {dt!r}")
    return dt


# ---- export ------------------------------------------------------------------------------------

def _nir_names(graph, order) -> dict:
    """A NIR node name per IR node (HDF5 group names: no '/', not empty, unique)."""
    names, used = {}, set()
    for n in order:
        base = str(n).replace("/", "_") or "node"
        name, i = base, 1
        while name in used:
            name, i = f"{base}_{i}", i + 1
        names[n] = name
        used.add(name)
    return names


def _fed_by(graph, n) -> list:
    """The inputs of ``n`` with Add nodes expanded (NIR sums every edge into a node)."""
    out = []
    for s in ir.inputs_of(graph, n):
        out.extend(_fed_by(graph, s) if isinstance(ir.op_of(graph, s), O.Add) else [s])
    return out


def _int_biases(graph) -> dict:
    """{weighted op: the integer bias of the layer it feeds}: each layer's bias rides on its first connection."""
    out = {}
    for layer in ir.topo_order(graph):
        op = ir.op_of(graph, layer)
        if not isinstance(op, O.Neuron):
            continue
        shape = graph.nodes[layer]["shape"]
        b = np.broadcast_to(np.asarray(op.bias, np.int64), shape)
        b = b[(slice(None),) + (0,) * (len(shape) - 1)] if len(shape) > 1 else b  # per channel (C, 1, 1) -> (C,)
        if b.any():
            out[incoming(graph, layer)[0]] = np.array(b, np.int64)
    return out


def _weighted_node(nir, graph, n, op, form, in_name, in_scale, int_bias):
    if form == "float":
        w = np.array(op.weight, np.float64)
        if source_and_area(graph, n)[0] == in_name:
            w = w / in_scale  # the float SNN sees x / scale: the NIR graph takes x itself
        b = None if op.bias is None else np.array(op.bias, np.float64)
    else:
        w = O.effective_weights(op)
        b = int_bias.get(n)
    if isinstance(op, O.Dense):
        return nir.Linear(weight=w) if b is None else nir.Affine(weight=w, bias=b)
    if b is None:
        b = np.zeros(w.shape[0], w.dtype)
    in_shape = graph.nodes[ir.inputs_of(graph, n)[0]]["shape"]
    # nir 1.0.8 cannot write input_shape=None, and types a grouped Conv2d's input as weight.shape[1]
    # (C / groups) channels, so its type-checking read (nir.read's default) refuses grouped convs
    # (depthwise pools and skips); snnc reads with type_check=False and infers shapes itself.
    return nir.Conv2d(input_shape=tuple(int(v) for v in in_shape[1:]), weight=w,
                      stride=tuple(int(v) for v in op.stride), padding=tuple(int(v) for v in op.padding),
                      dilation=tuple(int(v) for v in op.dilation), groups=int(op.groups), bias=b)


def _neuron_node(nir, graph, n, op, shape, form, dt, half, notes):
    def full(v):
        return np.array(np.broadcast_to(np.asarray(v, np.float64), shape), np.float64)

    zeros = np.zeros(shape)
    if form == "float":
        threshold, v0 = full(1.0), float(N.initial_v(op, "float", half, True))
        beta = None if op.beta is None else full(N.beta_of(op, shape))
    else:
        threshold, v0 = full(int(op.threshold) - 0.5), int(op.v_init)
        beta = full(1.0 - N.decays_of(op, shape) / N.DECAY_ONE) if op.leaky else None
    leak = beta is not None and bool(np.any(beta != 1.0))
    if leak and np.any(beta == 1.0):
        raise NIRError(f"layer {n!r}: some channels have beta 1 (no leak) and others leak; NIR's LIF cannot "
                       "express tau = infinity per channel")
    meta = {"layer": str(n), "kind": op.label, "reset": op.reset, "v_init": v0, "readout": bool(op.readout),
            "trained": op.spike_value is not None, "spike_rule": "v >= threshold"}
    if op.scale is not None:
        meta["scale"] = float(op.scale)
    if op.levels is not None:  # a QCFS layer: its spikes are exported exactly; the levels only name its ANN reading
        meta["qcfs_levels"] = int(op.levels)
    if form == "int":
        meta.update(threshold=int(op.threshold), membrane_bits=int(op.membrane_bits), decay_u=int(op.decay_u))
        if op.leaky:
            meta["decay_v"] = np.asarray(op.decay_v, np.int64)
    if op.reset == "subtract":
        notes["reset by subtraction"].append(n)
    if v0:
        notes["an initial membrane"].append(n)
    if form == "int" and (leak or op.decay_u != N.DECAY_ONE):
        notes["integer decays rounded toward zero"].append(n)
    md = {"snnc": meta}
    if op.decay_u != N.DECAY_ONE:
        if not leak:
            raise NIRError(f"layer {n!r}: current memory without a membrane leak has no NIR neuron "
                           "(CubaLIF needs tau_mem)")
        tau_syn = full(dt / (op.decay_u / N.DECAY_ONE))
        tau_mem = dt / (1.0 - beta)
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=zeros, v_threshold=threshold,
                           v_reset=zeros, w_in=tau_syn / dt, metadata=md)
    if leak:
        tau = dt / (1.0 - beta)
        return nir.LIF(tau=tau, r=tau / dt, v_leak=zeros, v_threshold=threshold, v_reset=zeros, metadata=md)
    return nir.IF(r=np.ones(shape), v_threshold=threshold, v_reset=zeros, metadata=md)


def export_nir(graph, form: str = "float", dt: float = DEFAULT_DT, strict: bool = False):
    """The compiled ``graph`` as a ``nir.NIRGraph`` in ``form`` ``float`` or ``int`` (module docstring).

    ``dt``: the timestep the LIF time constants are written for (``tau = dt / (1 - beta)``).
    What NIR cannot express (reset by subtraction, initial membranes, integer decays) is recorded
    in each node's ``metadata['snnc']`` and warned about once (a UserWarning), or refused with
    ``strict=True``."""
    nir = _nir()
    if form not in FORMS:
        raise NIRError(f"form must be one of {FORMS}, got {form!r}")
    dt = _check_dt(dt)
    state = graph.graph.get("snnc", {})
    if not state.get("quantized" if form == "int" else "normalized"):
        raise NIRError(f"the {form} form is written from a compiled graph (an .snnc artifact, or compile_model's "
                       "result); this graph is not " + ("quantized" if form == "int" else "normalized"))
    ir.verify(graph)
    order = ir.topo_order(graph)
    in_name = ir.input_node(graph)
    in_op = ir.op_of(graph, in_name)
    names = _nir_names(graph, order)
    int_bias = _int_biases(graph) if form == "int" else {}
    half = state.get("v_init", "half") == "half"
    notes = {"reset by subtraction": [], "an initial membrane": [], "integer decays rounded toward zero": []}
    nodes, edges = {}, []
    for n in order:
        op, shape = ir.op_of(graph, n), graph.nodes[n]["shape"]
        if isinstance(op, O.Add):
            continue  # NIR sums the edges into a node
        if isinstance(op, O.Input):
            node = nir.Input(input_type=np.array(shape))
        elif isinstance(op, O.WEIGHTED):
            node = _weighted_node(nir, graph, n, op, form, in_name, in_op.scale, int_bias)
        elif isinstance(op, O.AvgPool2d):
            pool = nir.AvgPool2d if form == "float" else nir.SumPool2d  # the integer SNN sums the window
            node = pool(kernel_size=np.array(op.kernel_size), stride=np.array(op.stride), padding=np.array(op.padding))
        elif isinstance(op, O.Flatten):
            src_shape = graph.nodes[ir.inputs_of(graph, n)[0]]["shape"]
            node = nir.Flatten(input_type={"input": np.array(src_shape)}, start_dim=0, end_dim=-1)
        elif isinstance(op, O.Neuron):
            node = _neuron_node(nir, graph, n, op, shape, form, dt, half, notes)
        else:
            raise NIRError(f"node {n!r}: {O.kind(op)} has no NIR form; export a compiled graph")
        nodes[names[n]] = node
        edges += [(names[s], names[n]) for s in _fed_by(graph, n)]
    out = ir.output_node(graph)
    oname, i = "output", 1
    while oname in nodes:
        oname, i = f"output_{i}", i + 1
    nodes[oname] = nir.Output(output_type=np.array(graph.nodes[out]["shape"]))
    edges.append((names[out], oname))
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "form": form, "dt": dt, "input_scale": float(in_op.scale),
            "input_bits": int(in_op.bits), "input_signed": bool(in_op.signed), "input_levels": int(in_op.levels),
            "spike_rule": "v >= threshold" if form == "float" else "v >= threshold (= v > v_threshold)"}
    for key in ("bits", "reset", "v_init", "membrane_bits", "timesteps"):
        if state.get(key) is not None:
            meta[key] = state[key]
    lost = [f"{what} (layers {', '.join(map(str, layers))})" for what, layers in notes.items() if layers]
    if lost:
        msg = (f"NIR cannot express {'; '.join(lost)}: recorded in each node's metadata['snnc'], which snnc reads "
               "back exactly; other NIR tools reset to 0, start at 0 and decay exactly (for a network NIR's own "
               "equations describe, compile converted layers with --reset zero --v-init zero and train LIF layers "
               "with reset='zero')")
        if strict:
            raise NIRError(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"snnc": meta}, type_check=False)


def nir_bytes(graph, form: str = "float", dt: float = DEFAULT_DT, strict: bool = False) -> bytes:
    """The NIR file (HDF5) of :func:`export_nir`, as bytes (the CLI commits them with outputs.py).
    The same graph gives the same bytes."""
    nir = _nir()
    g = export_nir(graph, form=form, dt=dt, strict=strict)
    buf = io.BytesIO()
    nir.write(buf, g)
    return buf.getvalue()


def write_nir(graph, path, form: str = "float", dt: float = DEFAULT_DT, strict: bool = False) -> None:
    """Write :func:`nir_bytes` to ``path`` (checked and committed like every snnc output)."""
    from ...outputs import write_files
    write_files({os.fspath(path): nir_bytes(graph, form=form, dt=dt, strict=strict)})


# ---- reading a file ----------------------------------------------------------------------------

def is_nir_file(path) -> bool:
    """Whether ``path`` is an HDF5 file holding a NIR graph (a top-level ``node`` group; a Keras
    .h5 file is HDF5 too, without one)."""
    try:
        with open(path, "rb") as f:
            if f.read(len(HDF5_MAGIC)) != HDF5_MAGIC:
                return False
        import h5py
        with h5py.File(path, "r") as f:
            return "node" in f
    except (OSError, ValueError):
        return False


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
    nir = _nir()
    import h5py
    if not bytes(data[:8]) == HDF5_MAGIC:
        raise NIRError(f"{label} is not a NIR file (NIR files are HDF5, which start with \\x89HDF)")
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
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


# ---- import ------------------------------------------------------------------------------------

def _pair(v, what, node):
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2 or not np.all(np.isfinite(a.astype(np.float64))) or np.any(a != np.rint(a)):
        raise NIRError(f"node {node!r}: {what} must be an integer or a pair, got {v!r}")
    return int(a[0]), int(a[1])


def _is_str(v) -> bool:
    return isinstance(v, (str, bytes)) or (isinstance(v, np.ndarray) and v.dtype.kind in "SUO" and v.size == 1)


def _text(v) -> str:
    v = v.item() if isinstance(v, np.ndarray) else v
    return v.decode() if isinstance(v, bytes) else str(v)


def _plain(v):
    """A metadata value as Python (numpy scalars from h5py -> float/int/bool/str)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return v if v.ndim else _plain(v.item())
    if isinstance(v, np.generic):
        return v.item()
    return v


class _Importer:
    def __init__(self, nir, ng, dt, input_shape, discretization):
        if discretization not in DISCRETIZATIONS:
            raise NIRError(f"discretization must be one of {DISCRETIZATIONS}, got {discretization!r}")
        self.nir, self.ng, self.disc = nir, ng, discretization
        meta = _plain(getattr(ng, "metadata", None) or {})
        snnc = meta.get("snnc") if isinstance(meta, dict) else None
        self.meta = snnc if isinstance(snnc, dict) and snnc.get("format") == FORMAT else {}
        self.form = self.meta.get("form") if self.meta.get("form") in FORMS else None
        if dt is None:
            dt = self.meta.get("dt")
        self.dt = None if dt is None else _check_dt(dt)
        self.input_shape = input_shape
        self.g = ir.new_graph()
        self.map = {}          # NIR node -> the IR node that carries its output
        self.nir_of = {}       # IR node -> the NIR node whose consumers read it (for folding)
        self.sum_area = {}     # IR AvgPool2d from a NIR SumPool2d -> its window area
        self.lost_v_init = []
        self.readout_only = set()

    # -- helpers
    def kind(self, name) -> str:
        return type(self.ng.nodes[name]).__name__

    def shape(self, n) -> tuple:
        return self.g.nodes[n]["shape"]

    def emit(self, name, op, inputs=()):
        name = ir.unique_name(self.g, str(name))
        ir.add_op(self.g, name, op, list(inputs))
        try:
            self.g.nodes[name]["shape"] = O.infer_shape(op, [self.shape(i) for i in inputs])
        except ValueError as e:
            raise NIRError(f"node {name!r}: {e}") from None
        return name

    def fail(self, name, why):
        raise NIRError(f"NIR node {name!r} ({self.kind(name)}): {why}")

    def per_neuron(self, name, attr, shape):
        v = getattr(self.ng.nodes[name], attr)
        try:
            a = np.asarray(v, np.float64)
        except (TypeError, ValueError):
            self.fail(name, f"{attr} is not numeric")
        if a.size == 1:
            a = np.full(shape, a.reshape(-1)[0])
        elif a.shape == tuple(shape):
            a = a.copy()
        elif len(shape) == 3 and a.shape in ((shape[0],), (shape[0], 1, 1)):
            a = np.broadcast_to(a.reshape(-1, 1, 1), shape).copy()
        elif a.shape == (1,) + tuple(shape):
            a = a.reshape(shape).copy()
        else:
            self.fail(name, f"{attr} has shape {a.shape}, the layer has {tuple(shape)}")
        if not np.all(np.isfinite(a)) and attr not in ("tau", "tau_mem", "tau_syn"):
            self.fail(name, f"{attr} has non-finite values")
        return a

    def through(self, n):
        """Walk back through Flatten and pools: (the IR node reached, product of SumPool areas)."""
        area = 1
        while isinstance(ir.op_of(self.g, n), (O.Flatten, O.AvgPool2d)):
            area *= self.sum_area.get(n, 1)
            (n,) = ir.inputs_of(self.g, n)
        return n, area

    def input_gain(self, x):
        """What a weighted op reading IR node ``x`` multiplies its weights by: SumPool areas, and for
        an snnc int-form file reading the Input, levels / scale (it took the graded x_q)."""
        src, area = self.through(x)
        gain = float(area)
        if self.form == "int" and isinstance(ir.op_of(self.g, src), O.Input):
            inp = ir.op_of(self.g, src)
            gain *= inp.levels / inp.scale
        return gain

    # -- the driver
    def run(self):
        ng = self.ng
        nodes, edges = dict(ng.nodes), [(str(a), str(b)) for a, b in ng.edges]
        for name, node in nodes.items():
            k = type(node).__name__
            if k == "NIRGraph":
                raise NIRError(f"NIR node {name!r} is a nested graph (a recurrent layer such as snnTorch's RLeaky or "
                               "RSynaptic); snnc compiles feed-forward networks only")
            if k not in _SUPPORTED:
                raise NIRError(f"NIR node {name!r}: {k} is not supported (snnc maps {', '.join(_SUPPORTED)})")
        d = nx.DiGraph()
        d.add_nodes_from(nodes)
        for a, b in edges:
            if a not in nodes or b not in nodes:
                raise NIRError(f"NIR edge ({a!r}, {b!r}) names a node the graph does not have")
            d.add_edge(a, b)
        if not nx.is_directed_acyclic_graph(d):
            cycle = " -> ".join(a for a, _ in nx.find_cycle(d))
            raise NIRError(f"the NIR graph is recurrent ({cycle}); snnc compiles feed-forward networks only")
        self.d = d
        ins = [n for n in nodes if self.kind(n) == "Input"]
        outs = [n for n in nodes if self.kind(n) == "Output"]
        if len(ins) != 1 or len(outs) != 1:
            raise NIRError(f"need exactly one Input and one Output node, the NIR graph has {len(ins)} and {len(outs)}")
        needs_dt = [n for n in nodes if self.kind(n) in ("LIF", "CubaLIF", "LI", "CubaLI")]
        if needs_dt and self.dt is None:
            raise NIRError(NEEDS_DT)
        for name in nx.lexicographical_topological_sort(d):
            self.node(name)
        out_src = self.finish(outs[0])
        g = self.g
        keep = nx.ancestors(g, out_src) | {out_src}
        g.remove_nodes_from([n for n in list(g) if n not in keep])
        if not any(isinstance(ir.op_of(g, n), O.Input) for n in g):
            raise NIRError("the NIR graph's output does not depend on its input")
        try:
            ir.verify(g)
        except ir.IRError as e:
            raise NIRError(f"the NIR graph does not map onto snnc's IR: {e}") from None
        g.graph["snnc"]["source"] = {"format": "nir", "dt": self.dt, "discretization": self.disc,
                                     "snnc_form": self.form}
        if self.lost_v_init:
            warnings.warn(f"layers {', '.join(self.lost_v_init)} started at a non-zero membrane in the compiled "
                          "network; an int-form NIR file brings them back as trained layers starting at 0 (the "
                          "float form keeps them converted, so --v-init applies again)", UserWarning, stacklevel=3)
        return g

    def node(self, name):
        k = self.kind(name)
        preds = [p for p, _ in sorted(((p, i) for i, (p, q) in enumerate(self.ng.edges) if str(q) == name),
                                      key=lambda t: t[1])]
        preds = list(dict.fromkeys(str(p) for p in preds))
        ins = [self.map[p] for p in preds if p in self.map]
        if k == "Input":
            if preds:
                self.fail(name, "an Input cannot have inputs")
            return self.input(name)
        if k == "Output":
            return None
        if not ins:
            return None  # fed by nothing reachable: pruned with the dead code
        if len(ins) > 1 and k not in _SPIKING + _READOUT_ONLY:
            self.fail(name, f"it sums {len(ins)} inputs; snnc sums currents only into neurons")
        if k in ("Affine", "Linear"):
            return self.linear(name, ins[0])
        if k == "Conv2d":
            return self.conv(name, ins[0])
        if k in ("AvgPool2d", "SumPool2d"):
            return self.pool(name, ins[0])
        if k == "Flatten":
            return self.flatten(name, ins[0])
        if k == "Scale":
            return self.scale(name, ins[0])
        return self.neuron(name, ins)

    def set(self, name, ir_name):
        self.map[name] = ir_name
        self.nir_of[ir_name] = name

    def input(self, name):
        node = self.ng.nodes[name]
        if self.input_shape is not None:
            shape = tuple(int(v) for v in self.input_shape)
        else:
            t = node.input_type.get("input") if isinstance(node.input_type, dict) else None
            if t is None:
                raise NIRError(f"NIR Input {name!r} records no shape; give the input shape (--input-shape)")
            shape = tuple(int(v) for v in np.asarray(t).reshape(-1))
            if len(shape) in (2, 4) and shape[0] == 1:
                shape = shape[1:]  # a batch axis of 1
        if len(shape) not in (1, 3) or min(shape, default=0) < 1:
            raise NIRError(f"NIR Input {name!r} has shape {shape}; snnc takes (F,) or (C, H, W) samples (give "
                           "--input-shape)")
        m = self.meta
        fields = {}
        if "input_scale" in m:  # an snnc export: the input as it was compiled
            try:
                fields = dict(scale=float(m["input_scale"]), bits=int(m.get("input_bits", 8)),
                              signed=bool(m.get("input_signed", False)))
            except (TypeError, ValueError):
                fields = {}
            if not (fields and np.isfinite(fields["scale"]) and fields["scale"] > 0
                    and 1 + fields["signed"] <= fields["bits"] <= 16):
                raise NIRError(f"the file's metadata['snnc'] input fields are not valid: scale "
                               f"{m.get('input_scale')!r}, bits {m.get('input_bits')!r}, "
                               f"signed {m.get('input_signed')!r}")
        elif self.form == "int":
            raise NIRError("an int-form snnc file without metadata['snnc']['input_scale']: its integer input cannot "
                           "be related to the data")
        self.set(name, self.emit(name, O.Input(shape=shape, **fields)))

    def linear(self, name, x):
        node = self.ng.nodes[name]
        w = np.asarray(node.weight, np.float64)
        shape = self.shape(x)
        if w.ndim != 2:
            self.fail(name, f"weight must be 2-D (out, in), got shape {w.shape}")
        if shape != (w.shape[1],):
            self.fail(name, f"weight {w.shape} does not take input {shape}"
                      + (" (a map needs a Flatten first)" if len(shape) == 3 else ""))
        b = None
        if self.kind(name) == "Affine" and node.bias is not None:
            b = np.array(np.broadcast_to(np.asarray(node.bias, np.float64), (w.shape[0],)))
        w = w * self.input_gain(x)
        self.set(name, self.emit(name, O.Dense(weight=w, bias=b), [x]))

    def conv(self, name, x):
        node = self.ng.nodes[name]
        w = np.asarray(node.weight, np.float64)
        shape = self.shape(x)
        if w.ndim != 4:
            self.fail(name, f"weight must be 4-D (out, in / groups, kH, kW), got shape {w.shape}")
        groups = int(np.asarray(node.groups).reshape(-1)[0])
        if len(shape) != 3 or groups < 1 or w.shape[1] * groups != shape[0]:
            self.fail(name, f"weight {w.shape} (groups {groups}) does not take input {shape}")
        stride, dilation = _pair(node.stride, "stride", name), _pair(node.dilation, "dilation", name)
        if _is_str(node.padding):
            pad = _text(node.padding)
            if pad == "valid":
                padding = (0, 0)
            elif pad == "same":
                total = [dilation[i] * (w.shape[2 + i] - 1) for i in range(2)]
                if stride != (1, 1) or any(t % 2 for t in total):
                    self.fail(name, "padding 'same' needs stride 1 and an odd kernel (symmetric padding)")
                padding = (total[0] // 2, total[1] // 2)
            else:
                self.fail(name, f"padding {pad!r} is not 'same', 'valid' or a number")
        else:
            padding = _pair(node.padding, "padding", name)
        b = None if node.bias is None else np.array(np.broadcast_to(np.asarray(node.bias, np.float64), (w.shape[0],)))
        w = w * self.input_gain(x)
        op = O.Conv2d(weight=w, bias=b, stride=stride, padding=padding, dilation=dilation, groups=groups)
        self.set(name, self.emit(name, op, [x]))

    def pool(self, name, x):
        node = self.ng.nodes[name]
        k, s = _pair(node.kernel_size, "kernel_size", name), _pair(node.stride, "stride", name)
        p = _pair(node.padding, "padding", name)
        shape = self.shape(x)
        if len(shape) != 3:
            self.fail(name, f"needs a (C, H, W) input, got {shape}")
        area, is_sum = k[0] * k[1], self.kind(name) == "SumPool2d"
        xop = ir.op_of(self.g, x)
        succ = [self.kind(s_) for s_ in self.d.successors(name)]
        if isinstance(xop, O.Conv2d) and len(list(self.d.successors(self.nir_of[x]))) == 1 and not any(p):
            # conv then pool (before the neuron): one conv with a wider kernel and a larger stride
            self.g.nodes[x]["op"] = _conv_then_pool(xop, k, s, 1.0 if is_sum else 1.0 / area)
            self.g.nodes[x]["shape"] = O.infer_shape(self.g.nodes[x]["op"], [self.shape(ir.inputs_of(self.g, x)[0])])
            self.set(name, x)
            return
        if not (O.is_hidden_neuron(xop) or isinstance(xop, O.Input)):
            self.fail(name, "a pool reads a neuron layer, the Input, or a Conv2d with no other consumer "
                      f"(here {O.kind(xop)})")
        if succ and all(t in _SPIKING + _READOUT_ONLY for t in succ):
            c = shape[0]  # pooled currents into a neuron: a depthwise conv
            op = O.Conv2d(weight=np.full((c, 1) + k, 1.0 if is_sum else 1.0 / area), bias=None, stride=s, padding=p,
                          groups=c)
            self.set(name, self.emit(name, op, [x]))
            return
        if not all(t in _WEIGHTED_NIR + ("Flatten",) for t in succ):
            self.fail(name, "a pool must feed neurons, or weighted ops (through Flatten); it feeds " + ", ".join(succ))
        if s != k or any(p) or shape[1] % k[0] or shape[2] % k[1]:
            self.fail(name, f"a pool between a neuron layer and weighted ops must tile its input exactly (kernel = "
                      f"stride, no padding, {shape[1]}x{shape[2]} divisible by the kernel); got kernel {k}, stride "
                      f"{s}, padding {p}")
        n = self.emit(name, O.AvgPool2d(kernel_size=k, stride=s, padding=p), [x])
        if is_sum:
            self.sum_area[n] = area
        self.set(name, n)

    def flatten(self, name, x):
        node = self.ng.nodes[name]
        shape = self.shape(x)
        nd = len(shape)
        start, end = int(np.asarray(node.start_dim).reshape(-1)[0]), int(np.asarray(node.end_dim).reshape(-1)[0])
        lo, hi = start + nd if start < 0 else start, end + nd if end < 0 else end
        whole = (lo, hi) == (0, nd - 1) or (start == 1 and end in (-1, nd))  # start_dim 1: counted with a batch axis
        if nd == 1 and (lo <= 0 or start == 1):
            self.set(name, x)  # already flat
            return
        if not whole:
            self.fail(name, f"flattens dims {start}..{end} of {shape}; snnc flattens whole samples only")
        self.set(name, self.emit(name, O.Flatten(), [x]))

    def scale(self, name, x):
        shape = self.shape(x)
        s = self.per_neuron(name, "scale", shape)
        c = s.reshape(shape[0], -1)
        if np.any(c != c[:, :1]):
            self.fail(name, "scales must be the same over a channel's positions (per channel) to fold into a conv")
        op = ir.op_of(self.g, x)
        if isinstance(op, (O.Dense, O.Conv2d)) and len(list(self.d.successors(self.nir_of[x]))) == 1:
            _scale_rows(op, c[:, 0])  # into the weighted op before it
            self.set(name, x)
            return
        # else fold_batchnorm folds it forward into the Dense/Conv2d after it (or a neuron's identity synapse takes it)
        self.set(name, self.emit(name, O.Affine(scale=c[:, 0].copy(), shift=np.zeros(shape[0])), [x]))

    def synapse(self, x):
        """``x`` as a weighted op or Add (SNN form); a neuron or the Input gets an identity synapse."""
        op = ir.op_of(self.g, x)
        if isinstance(op, (O.Dense, O.Conv2d, O.Add)):
            return x
        shape = self.shape(x)
        if isinstance(op, O.Affine):  # a Scale straight into the neuron: the identity synapse carries it
            (src,) = ir.inputs_of(self.g, x)
            idn = self.synapse(src)
            if idn == src:
                self.fail(self.nir_of[x], "a Scale between a weighted op with other consumers and a neuron cannot fold")
            _scale_rows(ir.op_of(self.g, idn), op.scale)
            return idn
        if isinstance(op, O.Flatten) or len(shape) == 1:
            f = int(np.prod(shape))
            idn = O.Dense(weight=np.eye(f) * self.input_gain(x), bias=None)
        else:
            src, _ = self.through(x)
            if src != x:
                raise NIRError(f"IR node {x!r} ({O.kind(op)}) feeds a neuron directly; snnc needs a weighted op there")
            idn = O.Conv2d(weight=np.full((shape[0], 1, 1, 1), self.input_gain(x)), bias=None, groups=shape[0])
        n = self.emit(f"{x}.identity", idn, [x])
        self.nir_of[n] = None
        return n

    def weighted_behind(self, x) -> list:
        out, todo = [], [x]
        while todo:
            n = todo.pop()
            if isinstance(ir.op_of(self.g, n), O.Add):
                todo.extend(ir.inputs_of(self.g, n))
            else:
                out.append(n)
        return out

    def fold(self, name, x, gain):
        """Multiply the currents into neuron ``name`` (IR node ``x`` sums them) by ``gain`` (its shape)."""
        for w in self.weighted_behind(x):
            op = ir.op_of(self.g, w)
            owner = self.nir_of.get(w)
            if owner is not None and len(list(self.d.successors(owner))) > 1:
                self.fail(name, f"its input gain (r, dt/tau, w_in, threshold) cannot fold into {owner!r}, which "
                          "also feeds other nodes")
            c = gain.reshape(gain.shape[0], -1)
            if isinstance(op, O.Conv2d) and np.any(c != c[:, :1]):
                self.fail(name, "its input gain varies within a channel of the conv feeding it; snnc folds it "
                          "into the conv per output channel")
            _scale_rows(op, c[:, 0] if isinstance(op, O.Conv2d) else gain.reshape(-1))

    def decay(self, name, tau, what):
        if np.any(~(tau > 0)):
            self.fail(name, f"{what} must be > 0")
        k = self.dt / tau
        if self.disc == "exact":
            beta = np.exp(-k)
            return beta, 1.0 - beta
        if np.any(k > 1):
            self.fail(name, f"dt {self.dt:g} exceeds {what} (min {float(tau.min()):g}): forward Euler's "
                      f"1 - dt/{what} is negative; check --dt")
        return 1.0 - k, k

    def neuron(self, name, ins):
        k = self.kind(name)
        node = self.ng.nodes[name]
        syn = [self.synapse(x) for x in ins]
        shapes = {self.shape(s) for s in syn}
        if len(shapes) != 1:
            self.fail(name, f"its inputs have different shapes {sorted(shapes)}")
        x = syn[0] if len(syn) == 1 else self.emit(f"{name}.sum", O.Add(), syn)
        shape = self.shape(x)
        P = lambda attr: self.per_neuron(name, attr, shape)  # noqa: E731
        if k in ("LIF", "CubaLIF", "LI", "CubaLI") and np.any(P("v_leak") != 0):
            self.fail(name, "v_leak != 0 (a leak toward a non-zero potential) is not mapped; snnc's neurons leak "
                      "toward 0")
        if k in _SPIKING and np.any(P("v_reset") != 0):
            self.fail(name, "v_reset != 0; snnc's neurons reset to 0 (or by subtraction)")
        md = _plain(getattr(node, "metadata", None) or {}).get("snnc", {}) if self.meta else {}
        md = md if isinstance(md, dict) else {}
        r = P("r")
        beta, decay_u = None, N.DECAY_ONE
        if k in ("IF", "I"):
            gain = r
        elif k in ("LIF", "LI"):
            beta, kk = self.decay(name, P("tau"), "tau")
            gain = r * kk
        else:
            if self.disc != "euler":
                self.fail(name, "a current-based neuron maps only under Euler discretization")
            beta, km = self.decay(name, P("tau_mem"), "tau_mem")
            _, ks = self.decay(name, P("tau_syn"), "tau_syn")
            d = ks * N.DECAY_ONE
            du = int(np.rint(d.flat[0]))
            if np.any(np.abs(d - du) > DECAY_TOL) or not 1 <= du <= N.DECAY_ONE:
                near = self.dt * N.DECAY_ONE / max(1, min(N.DECAY_ONE, du))
                self.fail(name, f"its synaptic decay 1 - dt/tau_syn = {1 - float(ks.flat[0]):.6g} is not a multiple of "
                          f"1/4096 (snnc's current decay_u is an integer k, alpha = 1 - k/4096); the nearest "
                          f"tau_syn at dt {self.dt:g} is {near:.6g}")
            decay_u = du
            gain = P("w_in") * ks * r * km
        if k in _SPIKING:
            thr = P("v_threshold")
            if self.form == "int" and "threshold" in md:
                thr = np.full(shape, float(md["threshold"]))  # the register (v_threshold is theta - 1/2)
            if np.any(~(thr > 0)):
                self.fail(name, "v_threshold must be > 0")
        else:
            thr = np.ones(shape)
            self.readout_only.add(name)
        if np.all(thr == thr.flat[0]):
            scale = float(thr.flat[0])
        else:
            scale, gain = 1.0, gain / thr  # v / threshold: threshold 1, the same spikes
        if np.any(np.abs(gain - 1.0) > UNIT_TOL):
            self.fold(name, x, gain)
        if beta is not None:
            b = beta.reshape(beta.shape[0], -1) if beta.ndim > 1 else beta.reshape(-1, 1)
            if np.all(beta == beta.flat[0]):
                beta = np.array([beta.flat[0]])
            elif np.all(b == b[:, :1]):
                beta = b[:, 0].copy()
            else:
                self.fail(name, "its time constant varies within a channel; snnc's beta is per channel")
        trained = not (self.form == "float" and md.get("trained") is False)
        reset = md.get("reset") if md.get("reset") in N.RESETS else "zero"  # NIR resets to v_reset = 0
        if self.form == "int" and md.get("v_init"):
            self.lost_v_init.append(name)
        op = N.Neuron(scale=scale, spike_value=1.0 if trained else None, beta=beta, decay_u=decay_u, reset=reset)
        self.set(name, self.emit(name, op, [x]))

    def finish(self, out):
        srcs = [str(p) for p in self.d.predecessors(out)]
        if len(srcs) != 1 or srcs[0] not in self.map:
            raise NIRError(f"the NIR Output {out!r} must read exactly one node that depends on the input")
        for n in self.readout_only:
            if n != srcs[0]:
                self.fail(n, "a non-spiking neuron (LI, I, CubaLI) is supported only as the read-out the Output reads")
        x = self.map[srcs[0]]
        op = ir.op_of(self.g, x)
        if isinstance(op, O.Neuron):
            op.readout = True
            return x
        warnings.warn(f"the NIR graph's output is the current of {srcs[0]!r}, not a neuron layer: snnc reads it out "
                      "with a non-spiking accumulator (use --readout membrane)", UserWarning, stacklevel=4)
        syn = self.synapse(x)
        return self.emit("output", N.Neuron(readout=True, scale=1.0, spike_value=1.0), [syn])


def _scale_rows(op, g):
    """Multiply a Dense/Conv2d's output channels (rows) and bias by ``g`` (per channel)."""
    g = np.asarray(g, np.float64).reshape(-1)
    op.weight = op.weight * g.reshape((-1,) + (1,) * (op.weight.ndim - 1))
    if op.bias is not None:
        op.bias = op.bias * g


def _conv_then_pool(op, k, s, factor):
    """One Conv2d computing ``pool(conv(x))`` (pool kernel ``k``, stride ``s``, no padding; window sum
    times ``factor``): kernel offsets ``m * stride + a * dilation`` add up, stride ``s * stride``."""
    o, cg, kh, kw = op.weight.shape
    (sh, sw), (dh, dw) = op.stride, op.dilation
    size = ((k[0] - 1) * sh + (kh - 1) * dh + 1, (k[1] - 1) * sw + (kw - 1) * dw + 1)
    w = np.zeros((o, cg) + size)
    for m in range(k[0]):
        for n in range(k[1]):
            w[:, :, m * sh:m * sh + (kh - 1) * dh + 1:dh, n * sw:n * sw + (kw - 1) * dw + 1:dw] += op.weight
    bias = None if op.bias is None else op.bias * (factor * k[0] * k[1])
    return O.Conv2d(weight=w * factor, bias=bias, stride=(s[0] * sh, s[1] * sw), padding=tuple(op.padding),
                    dilation=(1, 1), groups=op.groups)


def from_nir(source, dt: Optional[float] = None, *, input_shape=None, discretization: str = "euler"):
    """An IR graph (what the torch frontend returns) from a ``nir.NIRGraph`` or a NIR file path.

    ``dt``: the timestep to discretise at (required when the graph has time constants; an
    snnc-exported file records its own). ``discretization``: ``euler`` (snnTorch, Norse) or
    ``exact`` (``beta = exp(-dt/tau)``, sinabs). ``input_shape`` overrides the Input's shape.
    See the module docstring for the mapping; NIRError says what does not map and why."""
    nir = _nir()
    ng = source if isinstance(source, nir.NIRGraph) else read_nir(source)
    return _Importer(nir, ng, dt, input_shape, discretization).run()


def load_nir(path, dt: Optional[float] = None, input_shape=None, discretization: str = "euler"):
    """``from_nir`` of the file ``path`` (what ``snnc compile net.nir --dt DT`` runs)."""
    return from_nir(read_nir(path), dt, input_shape=input_shape, discretization=discretization)
