"""The compiled-network file (.snnc): one versioned zip of a JSON manifest and .npy arrays.

Loads without pickle (``allow_pickle=False``) and round-trips exactly. Written to a temporary
file beside the target and renamed, so a failed write never leaves a half-written artifact.
The bytes depend only on the graph (fixed zip timestamps, permissions and member order), so two
compiles of the same model give identical files. Loading validates every field against the
registers the artifact records and the engines' exact ranges (:mod:`.artifact_check`).
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import fields

import numpy as np

from . import artifact_check as check
from .artifact_check import ArtifactError  # noqa: F401  (re-exported: artifact.ArtifactError)
from .ir import new_graph, verify
from .outputs import write_files
from .ir import ops as O

FORMAT, VERSION = "snnc-artifact", 2
READS = (1, 2)   # version 1 stored IF and Output kinds, with reset and membrane width on the graph
KINDS = {cls.__name__: cls for cls in O.OP_KINDS}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)   # the earliest date a zip can hold: no build time in the bytes


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
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3                # unix, whatever the platform
    info.external_attr = 0o644 << 16      # rw-r--r--
    z.writestr(info, data)


def to_bytes(graph) -> bytes:
    nodes, arrays = [], {}
    for i, n in enumerate(graph.nodes):
        op = graph.nodes[n]["op"]
        attrs, arr_fields = {}, []
        for f in fields(op):
            v = getattr(op, f.name)
            if isinstance(v, np.ndarray):
                arrays[f"arrays/{i}/{f.name}.npy"] = v
                arr_fields.append(f.name)
            else:
                attrs[f.name] = _jsonable(v)
        nodes.append({"name": n, "kind": type(op).__name__, "attrs": attrs, "arrays": arr_fields})
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


def _read_array(z, path, i, name, field):
    try:
        return np.load(io.BytesIO(z.read(f"arrays/{i}/{field}.npy")), allow_pickle=False)
    except KeyError:
        raise ArtifactError(f"{path}: node {name!r}: array {field} is missing (arrays/{i}/{field}.npy); "
                            f"{check.RECOMPILE}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as e:
        raise ArtifactError(f"{path}: node {name!r}: {field} is not a readable .npy array "
                            f"({' '.join(str(e).split())}); {check.RECOMPILE}") from None


def _from_version_1(node, state):
    """A version-1 node: IF and Output became one Neuron kind holding its reset and membrane width."""
    if not isinstance(node, dict) or node.get("kind") not in ("IF", "Output") or not isinstance(node.get("attrs"), dict):
        return node
    attrs = dict(node["attrs"], readout=node["kind"] == "Output", reset=state.get("reset", "subtract"),
                 membrane_bits=state.get("membrane_bits", 24))
    return dict(node, kind="Neuron", attrs=attrs)


def load(path):
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ArtifactError(f"{path}: not an snnc artifact ({e})") from None
    with z:
        try:
            manifest = json.loads(z.read("manifest.json"))
        except (KeyError, ValueError, RecursionError, zipfile.BadZipFile, OSError):
            raise ArtifactError(f"{path}: not an snnc artifact (no readable manifest.json)") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            fmt = manifest.get("format") if isinstance(manifest, dict) else None
            raise ArtifactError(f"{path}: not an snnc artifact (format {check.short(fmt)})")
        if manifest.get("version") not in READS:
            raise ArtifactError(f"{path}: artifact version {check.short(manifest.get('version'))} is not supported "
                                f"(this snnc reads versions {', '.join(map(str, READS))}); recompile the model")
        nodes, edges = manifest.get("nodes"), manifest.get("edges")
        if not isinstance(nodes, list) or not isinstance(edges, list):
            raise ArtifactError(f"{path}: the manifest needs 'nodes' and 'edges' lists; {check.RECOMPILE}")
        regs = check.check_state(manifest.get("graph"), path)
        if manifest["version"] == 1:
            nodes = [_from_version_1(node, manifest["graph"]) for node in nodes]
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
            check.node_fields(cls, name, node.get("attrs"), node.get("arrays"), path)
            kw = {k: tuple(v) if isinstance(v, list) else v for k, v in node["attrs"].items()}
            for f in node["arrays"]:
                kw[f] = _read_array(z, path, i, name, f)
                check.check_array(cls, name, f, kw[f], path)
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
