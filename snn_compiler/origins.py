"""Which of the user's modules each IR node came from, so reports name ``features.3 (MaxPool2d)``
rather than the IR's ``features.3.max1``.

The frontends record, for every node they create, the user's name for the layer (torch: the module
path from ``nn_module_stack``; ONNX: the node name; Keras: the layer name; NIR: the node id) and its
kind (module class, op type, layer class). The table lives in the graph's state
(``graph.graph["snnc"]["modules"]``: {IR name: [path, kind]}), which artifacts save and load as
they are, so it needs no field of its own in the artifact format.

Passes that split or replace a node name the new nodes after it (``<n>.if``, ``<n>.max1``,
``<add>.skip0``, ``<n>.via.<m>``, with ``_<k>`` for repeats: see each pass's docstring), so a node
the table does not hold takes the entry of its longest dotted prefix that it does hold; the passes
need not copy anything. Entries of nodes a pass removed stay, for exactly that look-up.
"""
from __future__ import annotations

from typing import Optional

KEY = "modules"
_MAX = 200   # characters kept of a name or kind: a label, not a place for a file's text to grow


def record(graph, name: str, path, kind) -> None:
    """Remember that IR node ``name`` lowers the user's layer ``path`` of ``kind``."""
    table = graph.graph.setdefault("snnc", {}).setdefault(KEY, {})
    table[name] = [_clean(path), _clean(kind)]


def _clean(v) -> str:
    return "".join(c for c in str(v) if c.isprintable())[:_MAX]


def module_of(graph, name: str) -> Optional[tuple]:
    """(path, kind) of the user's layer ``name`` came from, or None when no frontend recorded one
    (a graph built by hand, an artifact from before the table). A malformed entry (an edited
    artifact) counts as none: this is a label, never worth refusing a file over."""
    table = graph.graph.get("snnc", {}).get(KEY)
    if not isinstance(table, dict):
        return None
    probe = name
    while probe:
        entry = table.get(probe)
        if isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, str) for v in entry):
            return tuple(_clean(v) for v in entry)
        probe = probe.rpartition(".")[0]
    return None


def label(graph, name: str) -> str:
    """``features.3 (MaxPool2d)``: the path alone when the kind adds nothing to it, "" when nothing
    was recorded."""
    found = module_of(graph, name)
    if found is None:
        return ""
    path, kind = found
    return f"{path} ({kind})" if kind and kind != path else path


def labels(graph, names) -> dict:
    """{IR name: label} for ``names`` (empty labels left out)."""
    return {n: lab for n in names for lab in [label(graph, n)] if lab}
