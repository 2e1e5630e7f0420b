"""Pass ``partition``: place every neuron layer on cores of the hardware profile (``config.profile``).

Reads ``config.profile`` (a profile dict loaded from YAML, or a name / YAML path, resolved with
:func:`snn_compiler.mapping.load_profile_dict`); does nothing when there is none. Stores the
JSON-able core map in ``graph.graph["snnc"]["core_map"]`` (cores with their slices and resource
use, layers -> core ids, the lower bound, traffic, and the profile itself under ``profile_spec``).
Raises :class:`snn_compiler.mapping.MappingError` (a ValueError) naming the layer and the resource
when the network does not fit the profile's chips.
"""
from __future__ import annotations

import copy


def partition(graph, config) -> bool:
    from ..mapping import load_profile_dict, partition_graph
    from .compose_pools import without_pools
    if getattr(config, "profile", None) is None:
        return False
    spec = load_profile_dict(config.profile)
    meta = graph.graph.setdefault("snnc", {})
    bits = int(meta.get("bits") or config.bits)
    core_map = partition_graph(without_pools(graph), spec, bits)  # hardware has no pooling synapse
    core_map["profile_spec"] = copy.deepcopy(spec)
    meta["core_map"] = core_map
    return True
