"""The core map as `snnc inspect` shows it: JSON (:func:`report`) and a text table (:func:`format_report`).

The numbers are the independent checker's recount of the stored core map, not the partitioner's.
"""
from __future__ import annotations

from .checker import check_core_map
from .profile import LIMITS, load_profile

_HEAD = {"neurons": "neurons", "input_axons": "input axons", "output_axons": "output axons", "synapse_bits": "synapse bits"}


def report(graph, profile=None, verify: bool = True) -> dict:
    """``{"cores": [{"id", "layer", "chip", "neurons", "input_axons", "output_axons", "synapse_bits"}],
    "layers": {name: [core ids]}, "lower_bound": n, "cores_used": n, "limits": {...}, "profile": name,
    "valid": bool, "violations": [...], "traffic": {...}, "layer_bounds": {...}, "verified": bool}``.

    ``verify`` (default): the cores' numbers are the independent checker's recount (slow on a
    network of thousands of cores). ``verify=False``: the stored map's own numbers, and ``valid``
    only compares them with the limits and the chips (what ``snnc inspect`` shows by default)."""
    cm = graph.graph["snnc"]["core_map"]
    prof = load_profile(profile if profile is not None else cm["profile_spec"])
    keys = ("id", "chip", "layer", "neurons", "input_axons", "output_axons", "synapse_bits")
    if verify:
        chk = check_core_map(graph, cm, prof)
        cores = [{k: r[k] for k in keys} for r in sorted(chk["cores"], key=lambda r: r["id"])]
        ok, violations = chk["ok"], chk["violations"]
    else:
        cores = [{k: c.get(k) for k in keys} for c in sorted(cm["cores"], key=lambda c: c["id"])]
        violations = [f"core {c['id']} (layer {c['layer']}): {r} {c[r]} > limit {prof.limit(r)}"
                      for c in cores for r in LIMITS if c[r] is not None and c[r] > prof.limit(r)]
        if len(cores) > prof.max_cores:
            violations.append(f"{len(cores)} cores > {prof.chips} chip(s) x {prof.cores_per_chip} cores")
        ok = not violations
    out = {"profile": prof.name, "cores": cores, "layers": {k: list(v) for k, v in cm["layers"].items()},
           "lower_bound": int(cm["lower_bound"]), "cores_used": len(cores),
           "limits": prof.limits(), "cores_per_chip": prof.cores_per_chip, "chips": prof.chips,
           "weight_bits": int(cm["weight_bits"]), "valid": ok, "violations": violations, "verified": bool(verify),
           "traffic": cm.get("traffic", {}), "layer_bounds": cm.get("layer_bounds", {})}
    if "equal_chunk" in cm:
        out["equal_chunk"] = cm["equal_chunk"]
    return out


def _pct(v, lim):
    return f"{v}/{lim} {100 * v / lim:3.0f}%"


def format_report(info: dict, cores: bool = True) -> str:
    """A readable table: per core (``cores``), each resource against its limit; per layer and in
    total, the cores used against the lower bound."""
    lim = info["limits"]
    head = ["core", "chip", "layer"] + [_HEAD[r] for r in LIMITS]
    rows = [[str(c["id"]), str(c["chip"]), c["layer"]] + [_pct(c[r], lim[r]) for r in LIMITS]
            for c in info["cores"]] if cores else []
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    used, lb = info["cores_used"], info["lower_bound"]
    out = [f"core map for {info['profile']} ({info['chips']} chip(s) x {info['cores_per_chip']} cores, "
           f"{info['weight_bits']}-bit synapses): {used} cores used, lower bound {lb}"
           + (f" ({used / lb:.2f}x)" if lb else "")
           + (f", on {len({c['id'] // info['cores_per_chip'] for c in info['cores']})} chip(s)" if info["chips"] > 1 else "")
           + (f", equal-chunk splitting {info['equal_chunk']}" if "equal_chunk" in info else "")
           + ("" if info["valid"] else "  ** DOES NOT FIT **")
           + ("" if info.get("verified", True) else " (stored counts; --cores recounts them per core)")]
    if cores:
        out += [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
        out.append("")
    for name, ids in info["layers"].items():
        b = info.get("layer_bounds", {}).get(name)
        extra = f" (lower bound {b['cores']}, bound by {b['binding']})" if b else ""
        chips = sorted({i // info["cores_per_chip"] for i in ids})
        where = "" if info["chips"] <= 1 or not chips else (
            f", chip {chips[0]}" if len(chips) == 1 else f", on {len(chips)} chips ({chips[0]}..{chips[-1]})")
        out.append(f"layer {name}: {len(ids)} core(s){extra}{where}")
    out.append("lower bound = sum over layers of ceil(max over resources of demand / per-core limit)")
    t = info.get("traffic")
    if t:
        out.append(traffic_line(t))
        if t.get("cores_per_chip_used") and len(t["cores_per_chip_used"]) > 1:
            out.append("cores per chip: " + " ".join(map(str, t["cores_per_chip_used"])))
    for v in info["violations"]:
        out.append(f"violation: {v}")
    return "\n".join(out)


def traffic_line(t: dict) -> str:
    """The core map's spike links and how many cross chips (its placement against plain layer order)."""
    links, cross = t["links"], t["inter_chip_links"]
    pct = f" ({100 * cross / links:.0f}%)" if links else ""
    line = (f"traffic: {links} spike links between cores (source neuron -> core), {cross}{pct} between chips"
            + (f" on {t['chips_used']} chip(s)" if "chips_used" in t else "")
            + f"; placement {t['placement']}, link distance {t['link_distance']}")
    if "inter_chip_links_layer_order" in t:
        line += f" (layer order: {t['inter_chip_links_layer_order']} between chips, distance {t['link_distance_layer_order']})"
    else:
        line += f" (layer order {t['link_distance_layer_order']})"
    return line


def map_line(core_map: dict) -> str:
    """One line for the compile summary: cores against the lower bound, chips and inter-chip links."""
    used, lb = len(core_map["cores"]), core_map["lower_bound"]
    t = core_map.get("traffic", {})
    line = (f"mapped onto {used} cores of {core_map['profile']} ({core_map['chips']} chip(s) x "
            f"{core_map['cores_per_chip']} cores): lower bound {lb}" + (f" ({used / lb:.2f}x)" if lb else ""))
    if "chips_used" in t:
        line += f", {t['chips_used']} chip(s) used, {t['inter_chip_links']} of {t['links']} spike links between chips"
    return line
