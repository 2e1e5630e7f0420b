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
import math


def check_core_bound(graph, config):
    """Refuse, before calibration, a network whose lower bound on cores exceeds the profile's
    ``cores_per_chip x chips`` (the bound counts connectivity only, so an SNN-form graph that is
    not yet normalized or quantized gives the same number). Returns the bound, or None without a
    profile."""
    from ..mapping import MappingError, load_profile, load_profile_dict
    from ..mapping.bounds import layer_bounds
    from ..mapping.network import build_net
    from .compose_pools import without_pools
    if getattr(config, "profile", None) is None:
        return None
    prof = load_profile(load_profile_dict(config.profile))
    bits = int(graph.graph.get("snnc", {}).get("bits", config.bits))  # the graph's once quantized
    if prof.max_weight_bits is not None and bits > prof.max_weight_bits:
        raise MappingError(f"{bits}-bit weights exceed profile {prof.name!r}'s {prof.max_weight_bits}-bit synapses "
                           f"(resource weight_bits)")
    bounds = layer_bounds(build_net(without_pools(graph)), prof, bits)
    need = int(sum(b["cores"] for b in bounds.values()))
    if need > prof.max_cores:
        top = sorted(bounds.items(), key=lambda kv: -kv[1]["cores"])[:3]
        worst = ", ".join(f"{n} {b['cores']} ({b['binding']})" for n, b in top)
        chips = math.ceil(need / prof.cores_per_chip)
        raise MappingError(
            f"the network needs at least {need} cores (lower bound, before calibration; largest layers: {worst}) "
            f"> {prof.max_cores} = {prof.chips} chip(s) x {prof.cores_per_chip} cores of profile {prof.name!r} "
            f"(resource: cores); use --chips {chips} or more (the map itself usually needs more cores than the "
            f"bound)")
    return need


def partition(graph, config) -> bool:
    from ..mapping import load_profile_dict, partition_graph
    from .compose_pools import without_pools
    if getattr(config, "profile", None) is None:
        return False
    spec = load_profile_dict(config.profile)
    meta = graph.graph.setdefault("snnc", {})
    bits = int(meta.get("bits", config.bits))
    core_map = partition_graph(without_pools(graph), spec, bits, progress=config.progress)  # no pooling synapse in hardware
    core_map["profile_spec"] = copy.deepcopy(spec)
    meta["core_map"] = core_map
    return True
