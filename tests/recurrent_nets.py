"""Hand-built recurrent and delayed networks (trained-SNN form, float weights) for the recurrence tests,
and a plain numpy loop of their float equations to check the float SNN against."""
import numpy as np

from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import neuron as N
from snn_compiler.ir import ops as O


def recurrent_cuba(n_in=12, n_hid=16, n_out=4, *, alpha=1 - 41 / 4096, beta=0.9, reset="zero", threshold=1.0,
                   seed=0, rec_gain=0.6, second=False, delay=1):
    """Input -> fc_in -> (+ rec(Delay(hid))) -> hid (CUBA, recurrent) [-> fc_mid -> hid2 with a feedback
    from hid2 into hid when ``second``] -> fc_out -> out (the read-out layer: spiking, or an LI under a membrane read-out)."""
    rng = np.random.default_rng(seed)
    g = new_graph()
    decay_u = round((1 - alpha) * N.DECAY_ONE)

    def layer(name, shape, read=False):
        return N.Neuron(scale=threshold, spike_value=1.0, beta=np.array([beta]), decay_u=decay_u, reset=reset,
                        readout=read)

    add_op(g, "in", O.Input((n_in,)))
    add_op(g, "fc_in", O.Dense(rng.normal(0, 1.2, (n_hid, n_in)) * 0.4), ["in"])
    add_op(g, "hid.delay", O.Delay((n_hid,), steps=delay))  # its source, hid, is wired below (a cycle)
    add_op(g, "rec", O.Dense(rng.normal(0, rec_gain, (n_hid, n_hid)) * 0.4), ["hid.delay"])
    sums = ["fc_in", "rec"]
    if second:
        add_op(g, "hid2.delay", O.Delay((n_hid,), steps=1))
        add_op(g, "fb", O.Dense(rng.normal(0, 0.5, (n_hid, n_hid)) * 0.4), ["hid2.delay"])
        sums.append("fb")
    add_op(g, "hid.sum", O.Add(), sums)
    add_op(g, "hid", layer("hid", (n_hid,)), ["hid.sum"])
    last = "hid"
    if second:
        add_op(g, "fc_mid", O.Dense(rng.normal(0, 1, (n_hid, n_hid)) * 0.5), ["hid"])
        add_op(g, "hid2", layer("hid2", (n_hid,)), ["fc_mid"])
        last = "hid2"
    add_op(g, "fc_out", O.Dense(rng.normal(0, 1, (n_out, n_hid)) * 0.5), [last])
    add_op(g, "out", layer("out", (n_out,), read=True), ["fc_out"])
    g.add_edge("hid", "hid.delay", port=0)
    if second:
        g.add_edge("hid2", "hid2.delay", port=0)
    verify(g)
    return g


def float_reference(g, x_seq, membrane=False):
    """The float equations of ir/neuron.py stepped by hand for the nets above: per layer
    u = (1 - decay_u/4096) u + I, v = beta v + u, s = v >= threshold, reset; recurrent and feedback
    connections read the previous step's spikes. Returns the read-out's spike counts and its
    membrane at the last step (``membrane``: the read-out does not spike, as under a membrane
    read-out). ``x_seq`` (N, T, n_in) in the Input's units."""
    ops = {n: g.nodes[n]["op"] for n in g}
    W = {n: ops[n].weight for n in ops if isinstance(ops[n], O.Dense)}
    layers = [n for n in ("hid", "hid2", "out") if n in ops]
    batch, T = x_seq.shape[:2]
    st = {n: dict(u=np.zeros((batch, g.nodes[n]["shape"][0])), v=np.zeros((batch, g.nodes[n]["shape"][0])))
          for n in layers}
    spikes = {n: [np.zeros((batch, g.nodes[n]["shape"][0]))] * 8 for n in layers}  # history, newest last
    count = np.zeros((batch, g.nodes["out"]["shape"][0]))
    for t in range(T):
        now = {}
        for n in layers:
            if n == "hid":
                d = ops["hid.delay"].steps
                cur = x_seq[:, t] @ W["fc_in"].T + spikes["hid"][-d] @ W["rec"].T
                if "fb" in W:
                    cur = cur + spikes["hid2"][-1] @ W["fb"].T
            elif n == "hid2":
                cur = now["hid"] @ W["fc_mid"].T
            else:
                cur = now["hid2" if "hid2" in ops else "hid"] @ W["fc_out"].T
            op, s_ = ops[n], st[n]
            s_["u"] = (1 - op.decay_u / N.DECAY_ONE) * s_["u"] + cur
            s_["v"] = op.beta[0] * s_["v"] + s_["u"]
            if n == "out" and membrane:
                now[n] = np.zeros_like(s_["v"])
                continue
            s = (s_["v"] >= op.scale).astype(float)
            s_["v"] = s_["v"] - s * op.scale if op.reset == "subtract" else s_["v"] * (1 - s)
            now[n] = s
        for n in layers:
            spikes[n] = spikes[n][1:] + [now[n]]
        count += now["out"]
    return count, st["out"]["v"]


def to_nir(g, dt=1e-3, li_readout=False):
    """The nets above as a NIR graph the way Norse writes one: CubaLIF layers (w_in = tau_syn/dt and
    r = tau_mem/dt, so forward Euler gives exactly u = alpha u + I, v = beta v + u), recurrent
    Linears closing cycles, and the read-out a CubaLIF or (``li_readout``) a CubaLI. The Delays are
    not written: NIR's cycles read the previous step. Resets are NIR's: to zero."""
    import nir
    ops = {n: g.nodes[n]["op"] for n in g}
    nodes, edges = {"input": nir.Input(input_type=np.array(g.nodes["in"]["shape"]))}, []

    def neuron(n):
        op, size = ops[n], g.nodes[n]["shape"][0]
        ks, km = op.decay_u / N.DECAY_ONE, 1.0 - float(op.beta[0])
        full = lambda v: np.full(size, v, np.float64)  # noqa: E731
        if li_readout and n == "out":
            return nir.CubaLI(tau_syn=full(dt / ks), tau_mem=full(dt / km), r=full(1 / km), v_leak=full(0.0),
                              w_in=full(1 / ks))
        return nir.CubaLIF(tau_syn=full(dt / ks), tau_mem=full(dt / km), r=full(1 / km), v_leak=full(0.0),
                           v_threshold=full(op.scale), v_reset=full(0.0), w_in=full(1 / ks))

    for n, op in ops.items():
        if isinstance(op, O.Dense):
            nodes[n] = nir.Linear(weight=op.weight.copy())
        elif isinstance(op, O.Neuron):
            nodes[n] = neuron(n)
    nodes["output"] = nir.Output(output_type=np.array(g.nodes["out"]["shape"]))
    rename = {"in": "input"}
    for a, b in g.edges:
        if isinstance(ops[b], (O.Delay, O.Add)):
            continue
        src = rename.get(a, a)
        if isinstance(ops[a], O.Delay):
            (src,) = list(g.predecessors(a))
        if isinstance(ops[a], O.Add):  # an Add's inputs go straight into the neuron (NIR sums edges)
            for p in g.predecessors(a):
                edges.append((p, b))
            continue
        edges.append((src, b))
    edges.append(("out", "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)
