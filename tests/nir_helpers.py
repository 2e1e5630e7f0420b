"""NIR's discretised dynamics written out by hand (the reference the NIR tests compare snnc with)."""
from graphlib import TopologicalSorter

import numpy as np
import torch

DT = 1e-4   # snnTorch's export timestep
T = 16


def _ints(v):
    return tuple(int(a) for a in np.atleast_1d(v))


def nir_run(g, x, steps, dt, exact=False):
    """Run NIR graph ``g`` on the constant input current ``x`` (N, ...) for ``steps`` steps; return
    {neuron node: (N, ...) spike counts}. Forward Euler at ``dt`` (``exact``: exponential decay):

        IF       v += r I                                   (as snnTorch, Norse and sinabs step it)
        LIF      v += dt/tau (v_leak - v + r I)             (exact: v = a v + (1 - a) r I, a = exp(-dt/tau))
        CubaLIF  i += dt/tau_syn (-i + w_in I);  v += dt/tau_mem (v_leak - v + r i)
        spike where v > v_threshold, then v = v_reset.
        LI       v += dt/tau (v_leak - v + r I), no spikes: its entry is its membrane after the last step.
    Affine/Linear/Conv2d/pools/Flatten compute on whole samples (Flatten of a sample)."""
    preds = {n: [] for n in g.nodes}
    for a, b in g.edges:
        preds[b].append(a)
    order = list(TopologicalSorter(preds).static_order())
    state, counts = {}, {}
    for _ in range(steps):
        val = {}
        for n in order:
            node, k = g.nodes[n], type(g.nodes[n]).__name__
            if k == "Input":
                val[n] = np.asarray(x, np.float64)
                continue
            inp = sum(val[p] for p in preds[n])
            p = {a: np.asarray(getattr(node, a), np.float64) for a in
                 ("r", "tau", "tau_mem", "tau_syn", "v_leak", "v_threshold", "v_reset", "w_in") if hasattr(node, a)}
            if k == "Output":
                val[n] = inp
            elif k in ("Affine", "Linear"):
                b = np.asarray(node.bias, np.float64) if k == "Affine" else 0.0
                val[n] = inp @ np.asarray(node.weight, np.float64).T + b
            elif k == "Conv2d":
                pad = node.padding if isinstance(node.padding, str) else _ints(node.padding)
                val[n] = torch.nn.functional.conv2d(
                    torch.from_numpy(inp), torch.from_numpy(np.asarray(node.weight, np.float64)),
                    torch.from_numpy(np.asarray(node.bias, np.float64)), _ints(node.stride), pad,
                    _ints(node.dilation), int(node.groups)).numpy()
            elif k in ("SumPool2d", "AvgPool2d"):
                val[n] = torch.nn.functional.avg_pool2d(
                    torch.from_numpy(inp), _ints(node.kernel_size), _ints(node.stride), _ints(node.padding),
                    divisor_override=1 if k == "SumPool2d" else None).numpy()
            elif k == "Flatten":
                val[n] = inp.reshape(len(inp), -1)
            elif k == "Scale":
                val[n] = inp * np.asarray(node.scale, np.float64)
            else:
                v = state.get(n, np.zeros_like(inp))
                if k == "IF":
                    v = v + p["r"] * inp
                elif k == "LIF" and exact:
                    a = np.exp(-dt / p["tau"])
                    v = a * v + (1 - a) * p["r"] * inp
                elif k == "LIF":
                    v = v + dt / p["tau"] * (p["v_leak"] - v + p["r"] * inp)
                elif k == "CubaLIF":
                    i = state.get(n + ".i", np.zeros_like(inp))
                    i = i + dt / p["tau_syn"] * (-i + p["w_in"] * inp)
                    state[n + ".i"] = i
                    v = v + dt / p["tau_mem"] * (p["v_leak"] - v + p["r"] * i)
                elif k == "LI":  # a non-spiking read-out: its count is its membrane after the last step
                    v = v + dt / p["tau"] * (p["v_leak"] - v + p["r"] * inp)
                    state[n] = counts[n] = v
                    val[n] = v
                    continue
                else:
                    raise AssertionError(k)
                s = v > p["v_threshold"]
                state[n] = np.where(s, p["v_reset"], v)
                counts[n] = counts.get(n, 0) + s.astype(np.int64)
                val[n] = s.astype(np.float64)
    return counts
