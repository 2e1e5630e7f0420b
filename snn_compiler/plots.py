"""Pictures that say more than tables: accuracy against timesteps, per-layer firing rates."""
from __future__ import annotations

import io

from .outputs import write_files


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("plots need matplotlib: pip install matplotlib") from None
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
