"""The report as one self-contained HTML page: tables, and figures embedded as base64 PNGs."""
from __future__ import annotations

import base64
import html
import io

import numpy as np

CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.worst{background:#fde2e1}
img{max-width:100%;display:block;margin:.6em 0}.note{color:#555;font-size:.9em}.wide,pre{overflow-x:auto}"""


def _pyplot():
    from ..plots import _pyplot as get
    return get()


def _png(fig) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return html.escape(str(v))


def _table(head, rows, marked=()):
    # in a box that scrolls sideways: the layer table's 14 columns are wider than a narrow window,
    # and the page itself should never need a sideways scroll
    out = ["<div class='wide'><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for i, r in enumerate(rows):
        cls = ' class="worst"' if i in marked else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>")
    return "".join(out) + "</table></div>"


def _yerr(values, intervals):
    return np.array([[v - lo for v, (lo, _) in zip(values, intervals)], [hi - v for v, (_, hi) in zip(values, intervals)]])


def fig_accuracy(sweep) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ts = sweep["timesteps"]
    lo, hi = sweep["ann_interval"]
    ax.axhline(sweep["ann"], color="k", ls="--", lw=1, label=f"ANN {sweep['ann']:.2f}%")
    ax.axhspan(lo, hi, color="k", alpha=0.07, lw=0)
    for mode, marker, label in (("float", "o", "float SNN"), ("int", "s", "integer SNN")):
        ax.errorbar(ts, sweep[mode], yerr=_yerr(sweep[mode], sweep["interval"][mode]), marker=marker, capsize=3,
                    label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts, [str(t) for t in ts])
    ax.set(xlabel="timesteps T", ylabel="accuracy (%)",
           title=f"Accuracy against timesteps (95% intervals, {sweep['n']} samples)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def fig_energy(sweep, e) -> str:
    """Accuracy against estimated energy per inference, one point per T, with the ANN's energies."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.errorbar(sweep["energy_nJ"], sweep["int"], yerr=_yerr(sweep["int"], sweep["interval"]["int"]), marker="s",
                capsize=3, label="integer SNN")
    for t, x, y in zip(sweep["timesteps"], sweep["energy_nJ"], sweep["int"]):
        ax.annotate(f"T={t}", (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.axvline(e["ann_fp32_nJ"], color="k", ls="--", lw=1, label=f"ANN fp32 {e['ann_fp32_nJ']:.3g} nJ")
    ax.axvline(e["ann_int8_nJ"], color="k", ls=":", lw=1, label=f"ANN int8 {e['ann_int8_nJ']:.3g} nJ")
    ax.set_xscale("log")
    ax.set(xlabel="energy per inference (nJ, published per-operation energies)", ylabel="accuracy (%)",
           title="Accuracy against energy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def fig_rates(activity) -> str:
    """Per layer, how the neurons' mean rates spread from silent to saturated."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    edges = np.linspace(0.0, 1.0, 21)
    for n, a in activity.items():
        ax.stairs(a["rate_histogram"], edges, label=str(n))
    ax.set_yscale("symlog")
    ax.set(xlabel="mean spikes per neuron per step", ylabel="neurons", title="Firing-rate distribution per layer")
    ax.legend(fontsize=8, ncol=2)
    return _png(fig)


def _pm(v, interval):
    lo, hi = interval
    return f"{v:.2f} ({lo:.1f}-{hi:.1f})"


def fig_layers(stats) -> str:
    plt = _pyplot()
    names = list(stats["layers"])
    L = stats["layers"]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 0.8 + 0.4 * max(len(names), 2)), sharey=True)
    y = np.arange(len(names))[::-1]
    axes[0].barh(y + 0.2, [L[n]["timestep_error"] for n in names], 0.4, label="timesteps (float SNN vs min(a,1))")
    axes[0].barh(y - 0.2, [L[n]["quantization_error"] for n in names], 0.4, label="quantization (int vs float SNN)")
    axes[0].set(yticks=y, yticklabels=names, xlabel="mean |rate error| (spikes/step)", title="Rate error per layer")
    axes[0].legend(fontsize=8)
    axes[0].xaxis.set_major_locator(plt.MaxNLocator(4))
    axes[1].barh(y + 0.2, [L[n]["rate"] for n in names], 0.4, label="integer SNN rate")
    axes[1].barh(y - 0.2, [L[n]["expected_rate"] or 0.0 for n in names], 0.4, label="expected (calibration)")
    axes[1].set(xlabel="spikes per neuron per step", title="Mean rate")
    axes[1].legend(fontsize=8)
    return _png(fig)


def fig_raster(raster) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.18 * sum(len(r["neurons"]) for r in raster["layers"])))
    row, ticks, labels = 0, [], []
    for layer in raster["layers"]:
        for i, spikes in zip(layer["neurons"], layer["spikes"]):
            t = np.flatnonzero(spikes)
            ax.scatter(t, np.full(len(t), row), marker="|", s=40, color=f"C{len(ticks) % 10}")
            row += 1
        ticks.append(row - len(layer["neurons"]) / 2 - 0.5)
        labels.append(layer["name"] + (f"\n{layer['module']}" if layer.get("module") else ""))
        ax.axhline(row - 0.5, color="#ddd", lw=0.8)
    ax.set(yticks=ticks, yticklabels=labels, xlabel="timestep", xlim=(-0.5, raster["T"] - 0.5),
           title=f"Spikes of a few neurons per layer (sample {raster['sample']})")
    ax.invert_yaxis()
    return _png(fig)


def fig_cores(cores) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    lim = cores["limits"]
    for r in lim:
        use = [c[r] / lim[r] for c in cores["cores"]]
        ax.hist(use, bins=20, range=(0, 1), histtype="step", lw=1.5, label=r.replace("_", " "))
    ax.set(xlabel="fraction of the per-core limit", ylabel="cores", title=f"Core utilization ({cores['profile']})")
    ax.legend(fontsize=8)
    return _png(fig)


def _from(mods, n) -> str:
    return f", from {mods[n]}" if n in mods else ""


def render(info: dict) -> str:
    s, st, e = info["sweep"], info["stats"], info["energy"]
    names = list(st["layers"])
    worst = names.index(st["worst_layer"]) if st["worst_layer"] in names else -1
    causes = st["causes"]
    mods = info.get("modules", {})   # IR name -> the user's module ("features.3 (MaxPool2d)")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>snnc report: {html.escape(info['artifact'])}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>Conversion report: {html.escape(info['artifact'])}</h1>",
             f"<p>{_fmt(info['samples'])} samples of {html.escape(info['data'])}; {info['summary']}</p>",
             "<h2>Accuracy against timesteps</h2>", fig_accuracy(s),
             _table(["T"] + [str(t) for t in s["timesteps"]],
                    [["ANN (%)"] + [_pm(s["ann"], s["ann_interval"])] * len(s["timesteps"]),
                     ["float SNN (%)"] + [_pm(v, i) for v, i in zip(s["float"], s["interval"]["float"])],
                     ["integer SNN (%)"] + [_pm(v, i) for v, i in zip(s["int"], s["interval"]["int"])],
                     ["SNN energy (nJ)"] + s["energy_nJ"]]),
             f"<p class='note'>In brackets: the 95% Wilson interval of each accuracy on {s['n']} samples (one "
             f"sample is {100.0 / max(s['n'], 1):.2g} pt).</p>",
             f"<h2>Where the accuracy goes (T = {st['T']})</h2>",
             _table(["cause", "accuracy lost (points)", "how it is measured"],
                    [["clipping at the threshold", causes["clipping"], "ANN - ANN with activations clipped at 1"],
                     ["too few timesteps", causes["timesteps"], "clipped ANN - float SNN"],
                     ["quantization", causes["quantization"], "float SNN - integer SNN"]]),
             f"<p>The layer that introduces most rate error: <b>{html.escape(str(st['worst_layer']))}</b>"
             f"{html.escape(_from(mods, st['worst_layer']))} "
             f"(highlighted below; the first silent or saturated layer, if any).</p>",
             _table(["layer", "from module", "neurons", "corr(rate, ANN)", "clipped", "timestep err", "quant. err", "rate",
                     "expected rate", "activity", "dead neurons", "saturated neurons", "clip-only loss (pt)",
                     "introduced err"],
                    [[n, mods.get(n, "-"), L["neurons"], L["correlation"], L["clipped"], L["timestep_error"], L["quantization_error"],
                      L["rate"], L["expected_rate"], L.get("activity") or "ok", st["activity"][n]["dead"],
                      st["activity"][n]["saturated"], L["clip_loss"], L["introduced_error"]]
                     for n, L in st["layers"].items()], marked=[worst]),
             "<p class='note'>Dead: neurons that never spiked on any sample; saturated: neurons firing on at least "
             "95% of the steps on average.</p>",
             fig_layers(st), fig_rates(st["activity"]),
             "<h2>Synaptic operations and energy</h2>",
             _table(["", "per inference", "energy (nJ)"],
                    [["SNN synaptic operations", e["sops"], e["snn_nJ"]],
                     ["ANN MACs (fp32)", e["macs"], e["ann_fp32_nJ"]],
                     ["ANN MACs (int8)", e["macs"], e["ann_int8_nJ"]]]),
             f"<p class='note'>{e['pj_per_sop']} pJ per synaptic operation, {e['pj_per_mac_fp32']} pJ per fp32 "
             f"and {e['pj_per_mac_int8']} pJ per int8 MAC. Sources: {html.escape(e['sources'])} "
             f"Synaptic operations count every spike (and every nonzero input value per step) once per "
             f"nonzero synapse it drives, at T = {st['T']}.</p>",
             f"<p><b>Energy balance.</b> {html.escape(e['balance'])}</p>", fig_energy(s, e),
             "<h2>Spike raster</h2>", fig_raster(info["raster"])]
    if info.get("cores"):
        c = info["cores"]
        parts += ["<h2>Cores</h2>", f"<p>{c['cores_used']} cores on {html.escape(c['profile'])} (lower bound "
                  f"{c['lower_bound']}).</p>", fig_cores(c)]
    if info.get("layer_table"):
        parts += ["<h2>The compiled layers (snnc inspect)</h2>", f"<pre>{html.escape(info['layer_table'])}</pre>"]
    parts += ["<h2>How these figures were made</h2>",
              f"<p class='note'>{html.escape(info['method'])}</p></body></html>"]
    return "\n".join(parts)
