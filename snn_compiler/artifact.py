"""The compiled-network file (.snnc): one versioned zip of a JSON manifest and .npy arrays.

Loads without pickle (``allow_pickle=False``) and round-trips exactly. Written to a temporary
file beside the target and renamed, so a failed write never leaves a half-written artifact.
The bytes depend only on the graph (fixed zip timestamps, permissions and member order), so two
compiles of the same model give identical files. Loading validates every field against the
registers the artifact records and the engines' exact ranges (:mod:`.artifact_check`).

Version 3 stores what the readings need in as few bytes as hold it exactly (issue 12):

- integers in the narrowest signed dtype of their register: ``weight_int`` int8 for weights of
  up to 8 bits (int16 up to 16), a neuron's ``bias`` in that of the bias register (int32 for
  the reference 24-bit current register), ``decay_v`` (0..4096) int16. Loading refuses any other
  dtype, checks every value against the recorded bits and registers, then widens exactly to the
  dtypes the compiler works in (int32 weights, int64 biases and decays), so no engine or backend
  ever does arithmetic in int8.
- the float weights of a quantized connection, which only the float SNN and ANN readings use, as
  float16 residuals ``r`` of the integer weights: ``weight = (weight_int + r) * weight_step``
  (``weight_step`` a float32 number beside the node's attrs). ``|r| <= 1``, so a loaded float
  weight is within 2**-12 of an integer step of the compiled one (about 2**-19 of the layer's
  largest weight at 8 bits): 4096x finer than the integer SNN's own rounding, and a fixed point
  (saving a loaded graph gives the same bytes). Stored plainly would take 4 bytes a weight as
  float32 (the trained model's precision) and the 8-bit artifact would exceed the float model;
  as residuals they take 2. Weights the residuals would miss by more than 2**-11 steps (integer
  weights not quantized from these float ones), and unquantized ones, are stored as computed.
- per-channel float arrays (biases, beta, BatchNorm) as computed, float64: they are a
  thousandth of the bytes and the readings use them exactly.
- members deflated where deflate pays (integer arrays, the manifest), stored where it does not.

Versions 1 and 2 (every array in its memory dtype) still load, exactly as before.

Nothing is inflated before its declared size is checked: manifest.json against
``MAX_MANIFEST_BYTES`` and its keys against the schema, every array's .npy header against its zip
size and all of them against :data:`.zipped_arrays.MAX_ARRAY_BYTES` (:mod:`.zipped_arrays`).
"""
from __future__ import annotations

import io
import json
import zipfile
import zlib
from dataclasses import fields

import numpy as np

from . import artifact_check as check
from . import zipped_arrays as zipped
from .artifact_check import ArtifactError  # noqa: F401  (re-exported: artifact.ArtifactError)
from .ir import new_graph, verify
from .outputs import write_files
from .ir import ops as O

FORMAT, VERSION = "snnc-artifact", 3
# version 1 stored IF and Output kinds, with reset and membrane width on the graph; versions 1 and
# 2 stored arrays in their memory dtypes (int32 weights, float64 copies)
READS = (1, 2, 3)
KINDS = {cls.__name__: cls for cls in O.OP_KINDS}
MANIFEST_KEYS = {"format", "version", "graph", "nodes", "edges"}
NODE_KEYS = {"name", "kind", "attrs", "arrays", "weight_step"}
# A manifest holds names, attributes and the core map, never arrays: 32 MiB is thousands of times a
# ResNet's (a 1,000-core Loihi map adds about 1 MiB)
MAX_MANIFEST_BYTES = 32 << 20
ZIP_DATE = (1980, 1, 1, 0, 0, 0)   # the earliest date a zip can hold: no build time in the bytes
DEFLATE_PROBE, DEFLATE_GAIN = 1 << 20, 0.9   # deflate a member when its first MiB shrinks by 10%
# level 1: on a ResNet-18's 4-bit weights 0.47 of the bytes in 0.6 s, against 0.45 in 5.2 s at 6
DEFLATE_LEVEL = 1
# re-encodings tried for a residual encoding that reproduces itself (one or two suffice in practice)
FIXED_POINT_TRIES = 4
# float64 rounding in decode then encode: below 2**-37 for weights of up to 16 bits, far below float16's 2**-24
RESIDUAL_NOISE = 2.0 ** -30


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, tuple):
        return list(v)
    return v


def _member(z, name, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    # deflate where it pays (integers and the manifest shrink; float residuals barely do, and storing
    # them keeps write and load fast)
    pays = len(zlib.compress(data[:DEFLATE_PROBE], DEFLATE_LEVEL)) < DEFLATE_GAIN * min(len(data), DEFLATE_PROBE)
    info.compress_type = zipfile.ZIP_DEFLATED if pays else zipfile.ZIP_STORED
    info.create_system = 3                # unix, whatever the platform
    info.external_attr = 0o644 << 16      # rw-r--r--
    z.writestr(info, data, compresslevel=DEFLATE_LEVEL)


def _encode_residuals(w, wi):
    """One encoding ``(step, r)`` of ``w`` as ``(wi + r) * step``, ``r`` float16; None when ``w``
    cannot be encoded (no nonzero integer weight, not float64, or not finite)."""
    top = int(np.abs(wi).max(initial=0))
    if top == 0 or w.dtype != np.float64 or w.shape != wi.shape:
        return None
    # a float32 step, so the manifest's JSON number reads back as exactly this float
    step = float(np.float32(np.abs(w).max() / top))
    if not (np.isfinite(step) and step > 0):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        exact = w / step - wi
        r = exact.astype(np.float16)
    # The largest weights' residuals rounded toward zero: the decoded maximum then never exceeds
    # the one the step was rounded from, so re-encoding the decoded weights finds the same step.
    # (A float16 value within float64 noise of the exact residual is that residual decoded: kept.)
    top_at = np.abs(wi) == top
    away = top_at & (np.abs(r.astype(np.float64)) - np.abs(exact) > RESIDUAL_NOISE)
    r[away] = np.nextafter(r[away], np.float16(0))
    r[r == 0] = 0   # -0 and +0 decode alike: one byte pattern for both
    return step, r


def _residuals(w, wi):
    """``(step, r)`` with ``w ~= (wi + r) * step`` (at most ``RESIDUAL_ERROR`` steps off), chosen
    as a fixed point of decode-then-encode, or None (the weights are then stored as computed).

    Encoding the decoded weights need not give the same step and residuals again (the decoded
    maximum may round to a neighbouring float32 step; a residual of 0 may come back as -0), so a
    saved loaded artifact would differ in its bytes. Re-encoding until the encoding reproduces
    itself settles that: the written ``(step, r)`` satisfies ``encode(decode(step, r)) == (step,
    r)``, so saving what was loaded gives the same bytes, whatever numpy's float16 rounding.
    """
    enc = _encode_residuals(w, wi)
    for _ in range(FIXED_POINT_TRIES):
        if enc is None:
            return None
        back = _from_residuals(enc[0], enc[1], wi)
        if not (np.all(np.isfinite(back)) and np.abs(back - w).max() <= check.RESIDUAL_ERROR * enc[0]):
            return None
        again = _encode_residuals(back, wi)
        if again is not None and again[0] == enc[0] and again[1].tobytes() == enc[1].tobytes():
            return enc
        enc = again
    return None  # no fixed point found quickly: stored as computed, which is exact


def _from_residuals(step, r, wi):
    with np.errstate(over="ignore"):  # a tampered step overflows to inf: refused as non-finite
        return (wi.astype(np.float64) + r.astype(np.float64)) * step


def _stored(op, field, v, bits, regs, where):
    """The array as the file stores it: integers in their register's narrowest dtype (refused,
    naming the node, when a value does not fit it: nothing wraps)."""
    want = check.stored_dtype(type(op).__name__, field, bits, regs)
    if want is None or v.dtype == want:
        return v
    lo, hi = int(v.min(initial=0)), int(v.max(initial=0))
    if lo < np.iinfo(want).min or hi > np.iinfo(want).max:
        raise ValueError(f"{where}: {field} [{lo}, {hi}] does not fit {want}, the dtype of its register; the "
                         "graph's integers exceed the registers it records")
    return v.astype(want)


def to_bytes(graph) -> bytes:
    state = graph.graph.get("snnc", {})
    regs = check.check_state(state, "graph")
    bits = state.get("bits", check.WEIGHT_BITS[1])
    nodes, arrays = [], {}
    for i, n in enumerate(graph.nodes):
        op = graph.nodes[n]["op"]
        attrs, arr_fields, extra = {}, [], {}
        for f in fields(op):
            v = getattr(op, f.name)
            if isinstance(v, np.ndarray):
                arrays[f"arrays/{i}/{f.name}.npy"] = _stored(op, f.name, v, bits, regs, f"node {n!r}")
                arr_fields.append(f.name)
            else:
                attrs[f.name] = _jsonable(v)
        if isinstance(op, O.WEIGHTED) and op.weight_int is not None:
            enc = _residuals(op.weight, op.weight_int)
            if enc is not None:
                extra["weight_step"], arrays[f"arrays/{i}/weight.npy"] = enc
        nodes.append({"name": n, "kind": type(op).__name__, "attrs": attrs, "arrays": arr_fields, **extra})
    edges = [[s, d, graph.edges[s, d]["port"]] for s, d in graph.edges]
    manifest = {"format": FORMAT, "version": VERSION, "graph": graph.graph.get("snnc", {}), "nodes": nodes, "edges": edges}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        _member(z, "manifest.json", json.dumps(manifest, default=_jsonable, indent=1).encode())
        for name, arr in arrays.items():  # node order, then field order: stable
            b = io.BytesIO()
            np.save(b, arr, allow_pickle=False)
            _member(z, name, b.getvalue())
    return buf.getvalue()


def save(graph, path) -> None:
    """Write the artifact through :mod:`snn_compiler.outputs` (checked, temporary file, rename)."""
    write_files({path: to_bytes(graph)})


def _declared_arrays(z, path, nodes) -> dict:
    """{member: ZipInfo} of every array the manifest lists, each .npy header checked against its
    zip size, and all of them together against MAX_ARRAY_BYTES: refused before any is inflated."""
    infos, declared = {}, {}
    for i, node in enumerate(nodes):
        fields_ = node.get("arrays") if isinstance(node, dict) else None
        if not isinstance(fields_, list) or not all(isinstance(f, str) for f in fields_):
            continue  # refused, naming the node, when the node is read
        for f in fields_:
            member = f"arrays/{i}/{f}.npy"
            try:
                infos[member] = z.getinfo(member)
            except KeyError:
                raise ArtifactError(f"{path}: node {check.short(node.get('name'))}: array {check.short(f)} is missing "
                                    f"({check.short(member)}); {check.RECOMPILE}") from None
            declared[member] = _member_header(z, infos[member], path, node, f)
    try:
        zipped.check_budget(declared, path, "the artifact")
    except zipped.ZipArrayError as e:
        raise ArtifactError(str(e)) from None
    return infos


def _member_header(z, info, path, node, field):
    try:
        return zipped.header(z, info, f"{path}: node {check.short(node.get('name'))}: {field}")
    except zipped.ZipArrayError as e:
        raise ArtifactError(f"{e}; {check.RECOMPILE}") from None


def _read_array(z, infos, path, i, name, field):
    try:
        return zipped.read(z, infos[f"arrays/{i}/{field}.npy"], f"{path}: node {name!r}: {field}")
    except zipped.ZipArrayError as e:
        raise ArtifactError(f"{e}; {check.RECOMPILE}") from None


def _from_version_1(node, state):
    """A version-1 node: IF and Output became one Neuron kind holding its reset and membrane width."""
    if not isinstance(node, dict) or node.get("kind") not in ("IF", "Output") or not isinstance(node.get("attrs"), dict):
        return node
    attrs = dict(node["attrs"], readout=node["kind"] == "Output", reset=state.get("reset", "subtract"),
                 membrane_bits=state.get("membrane_bits", 24))
    return dict(node, kind="Neuron", attrs=attrs)


def _version_3_arrays(cls, name, node, arrays, bits, regs, path):
    """Version 3's stored forms checked and read back into the dtypes the compiler works in."""
    for f, a in arrays.items():
        check.check_stored(cls, name, f, a, check.stored_dtype(cls.__name__, f, bits, regs), path)
    if "weight_step" in node:
        check.check_residual(cls, name, node["weight_step"], arrays, path)
        arrays["weight"] = _from_residuals(node["weight_step"], arrays["weight"], arrays["weight_int"])
        check.check_array(cls, name, "weight", arrays["weight"], path)
    elif "weight" in arrays:
        check.check_plain_weight(name, arrays["weight"], path)
    # widened exactly (the values were checked against their registers above)
    return {f: a.astype(check.MEMORY_DTYPES[f]) if f in check.MEMORY_DTYPES and a.dtype.kind == "i" else a
            for f, a in arrays.items()}


def _read_manifest(z, path):
    """manifest.json parsed, its declared size checked first (a huge one is refused uninflated)."""
    try:
        info = z.getinfo("manifest.json")
    except KeyError:
        raise ArtifactError(f"{path}: not an snnc artifact (no manifest.json)") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{path}: manifest.json declares {info.file_size:,} bytes, over the "
                            f"{MAX_MANIFEST_BYTES:,} a manifest may take (MAX_MANIFEST_BYTES); refused before inflating "
                            f"it; {check.RECOMPILE}")
    try:
        with z.open(info) as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except (zlib.error, zipfile.BadZipFile, EOFError, OSError) as e:
        raise ArtifactError(f"{path}: manifest.json is damaged: {zipped.DAMAGED} ({' '.join(str(e).split())}); "
                            f"{check.RECOMPILE}") from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ArtifactError(f"{path}: not an snnc artifact (manifest.json is not readable JSON)") from None
    except MemoryError:
        raise ArtifactError(f"{path}: manifest.json is too large to parse in memory; {check.RECOMPILE}") from None


def load(path):
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ArtifactError(f"{path}: not an snnc artifact ({e})") from None
    with z:
        manifest = _read_manifest(z, path)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            fmt = manifest.get("format") if isinstance(manifest, dict) else None
            raise ArtifactError(f"{path}: not an snnc artifact (format {check.short(fmt)})")
        unknown = sorted(set(manifest) - MANIFEST_KEYS)
        if unknown:
            raise ArtifactError(f"{path}: the manifest has unknown key(s) {check.short(', '.join(unknown))} (it holds "
                                f"{', '.join(sorted(MANIFEST_KEYS))}); {check.RECOMPILE}")
        if manifest.get("version") not in READS:
            raise ArtifactError(f"{path}: artifact version {check.short(manifest.get('version'))} is not supported "
                                f"(this snnc reads versions {', '.join(map(str, READS))}); recompile the model")
        nodes, edges = manifest.get("nodes"), manifest.get("edges")
        if not isinstance(nodes, list) or not isinstance(edges, list):
            raise ArtifactError(f"{path}: the manifest needs 'nodes' and 'edges' lists; {check.RECOMPILE}")
        regs = check.check_state(manifest.get("graph"), path)
        bits = manifest["graph"].get("bits", check.WEIGHT_BITS[1])
        if manifest["version"] == 1:
            nodes = [_from_version_1(node, manifest["graph"]) for node in nodes]
        infos = _declared_arrays(z, path, nodes)
        g = new_graph()
        g.graph["snnc"] = manifest["graph"]
        for i, node in enumerate(nodes):
            if not isinstance(node, dict):
                raise ArtifactError(f"{path}: node {i} is not a mapping; {check.RECOMPILE}")
            name = check.check_name(node.get("name"), path)
            if name in g:
                raise ArtifactError(f"{path}: node {name!r} appears twice; {check.RECOMPILE}")
            cls = KINDS.get(node.get("kind")) if isinstance(node.get("kind"), str) else None
            if cls is None:
                raise ArtifactError(f"{path}: node {name!r}: unknown node kind {check.short(node.get('kind'))}")
            extra = sorted(set(node) - NODE_KEYS)
            if extra:
                raise ArtifactError(f"{path}: node {name!r} has unknown key(s) {check.short(', '.join(map(str, extra)))}; "
                                    f"{check.RECOMPILE}")
            check.node_fields(cls, name, node.get("attrs"), node.get("arrays"), path)
            kw = {k: tuple(v) if isinstance(v, list) else v for k, v in node["attrs"].items()}
            arrays = {f: _read_array(z, infos, path, i, name, f) for f in node["arrays"]}
            for f, a in arrays.items():
                check.check_array(cls, name, f, a, path)
            if manifest["version"] >= 3:
                arrays = _version_3_arrays(cls, name, node, arrays, bits, regs, path)
            kw.update(arrays)
            g.add_node(name, op=cls(**kw))
        for e in edges:
            if not (isinstance(e, list) and len(e) == 3 and all(isinstance(v, str) and v in g for v in e[:2])
                    and check.is_int(e[2]) and 0 <= e[2] < len(g)) or g.has_edge(e[0], e[1]):
                raise ArtifactError(f"{path}: edge {check.short(e)} must be [source, destination, port] between distinct "
                                    f"nodes of the manifest; {check.RECOMPILE}")
            g.add_edge(e[0], e[1], port=e[2])
    try:
        verify(g)
    except (ValueError, TypeError, IndexError) as e:
        raise ArtifactError(f"{path}: {' '.join(str(e).split())}; {check.RECOMPILE}") from None
    check.check_graph(g, regs, path)
    return g
