"""Pictures that say more than tables: accuracy against timesteps, per-layer firing rates, accuracy
against latency (first-spike and k-spikes read-outs)."""
from __future__ import annotations

import io

from .extras import require
from .outputs import write_files


def _pyplot():
    matplotlib = require("matplotlib", "plotting (--plot, snnc report)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path):
    """The PNG's bytes when ``path`` is None (for a command that commits all its outputs at once),
    else written to ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    if path is None:
        return buf.getvalue()
    write_files({path: buf.getvalue()})
    return None


def plot_accuracy(path, timesteps, curves: dict, ann: float = None, title="Accuracy against timesteps"):
    """curves: label -> accuracies (%) at ``timesteps``; ``ann`` draws the ANN's accuracy."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, accs in curves.items():
        ax.plot(timesteps, accs, marker="o", label=label)
    if ann is not None:
        ax.axhline(ann, color="k", ls="--", lw=1, label=f"ANN {ann:.2f}%")
    ax.set_xscale("log", base=2)
    ax.set_xticks(timesteps, [str(t) for t in timesteps])
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(plt, fig, path)


def plot_rates(path, rates: dict, title="Mean firing rate per layer"):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.35 * max(len(rates), 1)))
    names = list(rates)
    ax.barh(names[::-1], [rates[n] for n in names[::-1]])
    ax.set_xlabel("spikes per neuron per timestep")
    ax.set_title(title)
    return _save(plt, fig, path)


def mean_latency(decision_time, timesteps) -> float:
    """Mean timesteps per sample under a latency read-out: a decided sample's decision time, an
    undecided one's whole window (``timesteps``)."""
    import numpy as np
    d = np.asarray(decision_time)
    return float(np.where(d >= 0, d, timesteps).mean()) if d.size else float("nan")


def plot_latency(path, timesteps, curves: dict, title="Accuracy against latency"):
    """Cumulative accuracy against the decision step of a latency read-out (first-spike, k-spikes).

    curves: label -> (decision_time (N,), correct (N,) bool), from one run of T = ``timesteps``
    steps. For each step t, solid: the samples decided by step t with the right class (% of all
    samples: the accuracy of stopping every sample at t); dashed: the samples decided by step t (%).
    Undecided samples (decision_time -1) count as not decided, whatever their fallback prediction."""
    import numpy as np
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.arange(1, timesteps + 1)
    for i, (label, (dt, correct)) in enumerate(curves.items()):
        dt, correct = np.asarray(dt, np.int64), np.asarray(correct, bool)
        n = max(len(dt), 1)
        ok = (dt >= 1) & (dt <= timesteps)
        decided = np.bincount(dt[ok], minlength=timesteps + 1)[1:]
        right = np.bincount(dt[ok & correct], minlength=timesteps + 1)[1:]
        acc = 100.0 * np.cumsum(right) / n
        color = f"C{i}"
        ax.step(steps, acc, where="post", color=color,
                label=f"{label}: correct by step t ({100.0 * correct.mean() if len(correct) else 0:.2f}% overall)")
        ax.step(steps, 100.0 * np.cumsum(decided) / n, where="post", color=color, ls="--", lw=1,
                label=f"{label}: decided by step t (mean latency {mean_latency(dt, timesteps):.1f})")
    ax.set_xlim(0.5, timesteps + 0.5)
    ax.set_ylim(0, 101)
    ax.set_xlabel("decision step t (timesteps)")
    ax.set_ylabel("% of samples")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, path)


def plot_accuracy_latency(path, curves: dict, title="Accuracy against mean latency"):
    """Accuracy against mean decision latency across a sweep of T (latency read-outs).

    curves: label -> (timesteps list, mean latencies (timesteps per sample, see
    :func:`mean_latency`), accuracies (%)); each point is labelled with its T."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (ts, lat, accs) in curves.items():
        ax.plot(lat, accs, marker="o", label=label)
        for t, x, y in zip(ts, lat, accs):
            ax.annotate(f"T={t}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xlabel("mean timesteps per sample (decision time; undecided: T)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(plt, fig, path)
