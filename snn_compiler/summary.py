"""What `snnc inspect` shows: a per-layer table of a compiled graph (and its JSON twin)."""
from __future__ import annotations

import numpy as np

from . import origins
from .ir import op_of, topo_order
from .ir import ops as O
from .report.energy import synapses


def _decays(op, rounding, current) -> dict:
    """A neuron's 12-bit decays (``decay_v`` range, ``decay_u``) and what rounding cost them (the
    quantize pass's record of the membrane decay, the frontend's of the current decay), plus the
    one-cell text the table shows."""
    out, text = {}, []
    if op.decay_v is not None:
        dv = np.asarray(op.decay_v)
        out["decay_v"] = [int(dv.min()), int(dv.max())]
        text.append(f"v {dv.min()}" + (f"..{dv.max()}" if dv.min() != dv.max() else ""))
        if rounding and rounding.get("error") is not None:
            out["decay_v_error"] = float(rounding["error"])
            text[-1] += f" ({rounding['error']:.2%})"
    if op.decay_u != 4096:
        out["decay_u"] = int(op.decay_u)
        text.append(f"u {op.decay_u}")
        if current and current.get("error") is not None:
            out["decay_u_error"] = float(current["error"])
            if current["error"] > 0:  # an exact k/4096 needs no note
                text[-1] += f" ({current['error']:.2%})"
    if text:
        out["decay"] = " ".join(text)
    return out


def _layer_row(graph, n):
    op, meta = op_of(graph, n), graph.graph.get("snnc", {})
    row = {"name": n, "op": O.kind(op), "shape": list(graph.nodes[n]["shape"])}
    module = origins.label(graph, n)   # the user's layer this node lowers: "features.3 (MaxPool2d)"
    if module:
        row["module"] = module
    if isinstance(op, O.WEIGHTED):
        row["weight_bits"] = meta.get("bits")
        if op.weight_int is not None:
            row["weight_range"] = [int(op.weight_int.min()), int(op.weight_int.max())]
            row["weight_exp"] = int(op.weight_exp)
        row["synapses"] = synapses(graph, n)
        if isinstance(op, O.Conv2d):
            row["detail"] = f"k{op.weight.shape[2]}x{op.weight.shape[3]} s{op.stride[0]} p{op.padding[0]}" + (
                f" g{op.groups}" if op.groups > 1 else "") + (f" up{op.input_dilation[0]}" if op.dilates_input else "")
    if isinstance(op, O.NEURONS):
        row.update(scale=op.scale, threshold=None if op.threshold is None else int(op.threshold),
                   v_init=None if op.v_init is None else int(op.v_init),
                   expected_rate=meta.get("expected_rates", {}).get(n))
        row.update(_decays(op, meta.get("decays", {}).get(n), meta.get("current_decays", {}).get(n)))
        r = meta.get("ranges", {}).get(n)
        if r:
            row.update(current_range=r["current"], membrane_range=r["membrane"])
    if isinstance(op, O.Input):
        row.update(scale=op.scale, input_bits=op.bits, signed=op.signed)
    return row


def summary(graph, cores: bool = False) -> dict:
    """The per-layer table's rows and, when mapped, the core map's report: by default the stored
    map's own counts (fast on any artifact); ``cores`` recounts every core with the independent
    checker (``snnc inspect --cores``)."""
    meta = graph.graph.get("snnc", {})
    info = {"target": meta.get("target"), "bits": meta.get("bits"), "reset": meta.get("reset"),
            "v_init": meta.get("v_init"), "norm": meta.get("norm"), "timesteps": meta.get("timesteps"),
            "membrane_bits": meta.get("membrane_bits"),
            "layer_info": [_layer_row(graph, n) for n in topo_order(graph)]}
    if "core_map" in meta:
        # the core map's report: "cores", "layers" ({layer: [core ids]}), "lower_bound", ...
        from .mapping import report
        info.update(report(graph, verify=cores))
    return info


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


_shape = lambda v: "x".join(map(str, v))
_range = lambda v: f"[{v[0]}, {v[1]}]"
_exp = lambda v: f"<<{v}" if v else ""
COLUMNS = [("name", "layer", _fmt), ("module", "from module", _fmt), ("op", "op", _fmt), ("shape", "shape", _shape), ("weight_bits", "w bits", _fmt),
           ("weight_range", "w range", _range), ("weight_exp", "w exp", _exp), ("scale", "scale", _fmt), ("threshold", "threshold", _fmt),
           ("expected_rate", "exp. rate", _fmt), ("decay", "decay /4096", _fmt),
           ("current_range", "current range", _range)]


def layer_table(info: dict, cores: bool = False) -> str:
    rows = [[fmt(r[k]) if r.get(k) is not None else "-" for k, _, fmt in COLUMNS] for r in info["layer_info"]]
    head = [h for _, h, _ in COLUMNS]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [f"target {info['target']}, {info['bits']}-bit weights, reset {info['reset']}, v_init {info['v_init']}, "
           f"norm {info['norm']}, {info['membrane_bits']}-bit membrane, T={info['timesteps']}",
           line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if "cores" in info:
        from .mapping import format_report
        out += ["", format_report(info, cores=cores)]
    return "\n".join(out)
