"""The compiled-network file (.snnc): one versioned zip of a JSON manifest and .npy arrays.

Loads without pickle (``allow_pickle=False``) and round-trips exactly. Written to a temporary
file beside the target and renamed, so a failed write never leaves a half-written artifact.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import fields

import numpy as np

from .ir import new_graph, verify
from .ir import ops as O

FORMAT, VERSION = "snnc-artifact", 1
KINDS = {cls.__name__: cls for cls in O.OP_KINDS}


class ArtifactError(ValueError):
    pass


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, tuple):
        return list(v)
    return v


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``; rename it into place on success."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
        nodes.append({"name": n, "kind": O.kind(op), "attrs": attrs, "arrays": arr_fields})
    edges = [[s, d, graph.edges[s, d]["port"]] for s, d in graph.edges]
    manifest = {"format": FORMAT, "version": VERSION, "graph": graph.graph.get("snnc", {}), "nodes": nodes, "edges": edges}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, default=_jsonable, indent=1))
        for name, arr in arrays.items():
            b = io.BytesIO()
            np.save(b, arr, allow_pickle=False)
            z.writestr(name, b.getvalue())
    return buf.getvalue()


def save(graph, path) -> None:
    data = to_bytes(graph)
    atomic_write(path, lambda f: f.write(data))


def load(path):
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ArtifactError(f"{path}: not an snnc artifact ({e})") from None
    with z:
        try:
            manifest = json.loads(z.read("manifest.json"))
        except (KeyError, ValueError):
            raise ArtifactError(f"{path}: not an snnc artifact (no readable manifest.json)") from None
        if manifest.get("format") != FORMAT:
            raise ArtifactError(f"{path}: not an snnc artifact (format {manifest.get('format')!r})")
        if manifest.get("version") != VERSION:
            raise ArtifactError(f"{path}: artifact version {manifest.get('version')} is not supported "
                                f"(this snnc reads version {VERSION}); recompile the model")
        g = new_graph()
        g.graph["snnc"] = manifest["graph"]
        for i, node in enumerate(manifest["nodes"]):
            cls = KINDS.get(node["kind"])
            if cls is None:
                raise ArtifactError(f"{path}: unknown node kind {node['kind']!r}")
            kw = {k: tuple(v) if isinstance(v, list) else v for k, v in node["attrs"].items()}
            for f in node["arrays"]:
                kw[f] = np.load(io.BytesIO(z.read(f"arrays/{i}/{f}.npy")), allow_pickle=False)
            g.add_node(node["name"], op=cls(**kw))
        for s, d, port in manifest["edges"]:
            g.add_edge(s, d, port=port)
    verify(g)
    return g
