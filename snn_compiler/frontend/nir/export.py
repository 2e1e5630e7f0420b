"""NIR export: a compiled snnc graph -> a NIR graph (the ``nir`` package).

**Export** (:func:`export_nir`, :func:`nir_bytes`, :func:`write_nir`; ``snnc export ARTIFACT
--format nir [--form float|int] [--dt DT] -o net.nir``) writes a compiled graph in one of two forms:

- ``float``: the float SNN (``simulate(mode="float")``): the normalised weights (the first
  layer's divided by the input scale, so the graph takes the raw input ``x`` as a current every
  step), threshold 1, spikes worth 1, the trained ``beta``. Synaptic pools are ``AvgPool2d``.
- ``int``: the integer SNN: weights ``weight_int << weight_exp`` (int64), the neuron's integer
  bias on the bias of its first connection, ``v_threshold = theta - 1/2`` (NIR fires on
  ``v > v_threshold``, snnc on ``v >= theta``: on integer membranes the two agree), synaptic pools
  are ``SumPool2d``, and the graph takes the graded integer input ``x_q`` (``metadata['snnc']``:
  ``input_scale``, ``input_levels``; :func:`snn_compiler.sim.encode.quantize_input`).

Neurons: a layer without leak is ``IF(r=1)``; a leaky layer is ``LIF(tau = dt/(1-beta),
r = tau/dt, v_leak = 0)`` (snnTorch's convention; the int form uses ``beta = 1 - decay_v/4096``);
one with current memory (``decay_u < 4096``) is ``CubaLIF`` with ``tau_syn = dt/(decay_u/4096)``,
``w_in = tau_syn/dt``. Forward-Euler with the same ``dt`` gives back exactly ``v = beta v + I``
(and ``u = alpha u + I``). ``dt`` defaults to 1e-4 (snnTorch's) and is recorded in the graph's
metadata; other tools must be told it. A recurrent connection is a cycle (NIR's cycles read the
previous step, so a 1-step Delay closing one is not written); any other Delay is a NIR ``Delay``
of ``steps * dt``.

What NIR cannot say is recorded, per node, in ``metadata['snnc']`` (read back by snnc) and
warned about (``strict=True`` refuses instead):

- **Reset.** NIR's IF/LIF reset *to* ``v_reset`` (exported 0); snnc's default is reset by
  subtraction (``v -= theta``). ``metadata['snnc']['reset']`` says which; a NIR tool ignoring it
  resets to zero. Only ``reset="zero"`` layers are described by the NIR equations themselves.
- **Initial membrane.** NIR has no initial state (tools start at 0); converted layers under
  ``--v-init half`` start at threshold/2: ``metadata['snnc']['v_init']`` (0.5 float, ``theta // 2`` int).
- **Integer leak** (int form): the integer LIF decays with products rounded toward zero
  (``metadata['snnc']['decay_v']``); NIR's LIF decays exactly. Membranes also saturate at
  ``+-v_max`` (``membrane_bits`` in the graph's metadata).

So a network compiled with ``--reset zero --v-init zero`` (trained LIF layers: ``reset="zero"``)
is described exactly by its float form (up to ``>=`` vs ``>`` at exact equality) and, for IF
layers, exactly by its int form.

nir 1.0.8 caveats (measured): its type-checking read (``nir.read``'s default) refuses grouped
Conv2d (it types their input as ``C / groups`` channels), which snnc's exports hold for lowered
pools and residual skips, and it cannot write ``Conv2d(input_shape=None)`` nor gzip 0-d
parameters (``nir.write(..., compression=None)`` writes them). snnc reads with
``type_check=False`` and infers every shape itself, so 0-d parameters (snnTorch's scalar beta)
import too.
"""
from __future__ import annotations

import io
import os
import warnings

import networkx as nx
import numpy as np

from ... import ir
from ...ir import neuron as N
from ...ir import ops as O
from ...ir.layers import incoming, source_and_area
from .common import DEFAULT_DT, FORMAT, FORMAT_VERSION, FORMS, NIRError, check_dt, nir_package


def _nir_names(graph, order) -> dict:
    """A NIR node name per IR node (HDF5 group names: no '/', not empty, unique)."""
    names, used = {}, set()
    for n in order:
        base = str(n).replace("/", "_") or "node"
        name, i = base, 1
        while name in used:
            name, i = f"{base}_{i}", i + 1
        names[n] = name
        used.add(name)
    return names


def _fed_by(graph, n) -> list:
    """The inputs of ``n`` with Add nodes expanded (NIR sums every edge into a node)."""
    out = []
    for s in ir.inputs_of(graph, n):
        out.extend(_fed_by(graph, s) if isinstance(ir.op_of(graph, s), O.Add) else [s])
    return out


def _int_biases(graph) -> dict:
    """{weighted op: the integer bias of the layer it feeds}: each layer's bias rides on its first connection."""
    out = {}
    for layer in ir.topo_order(graph):
        op = ir.op_of(graph, layer)
        if not isinstance(op, O.Neuron):
            continue
        shape = graph.nodes[layer]["shape"]
        b = np.broadcast_to(np.asarray(op.bias, np.int64), shape)
        b = b[(slice(None),) + (0,) * (len(shape) - 1)] if len(shape) > 1 else b  # per channel (C, 1, 1) -> (C,)
        if b.any():
            out[incoming(graph, layer)[0]] = np.array(b, np.int64)
    return out


def _weighted_node(nir, graph, n, op, form, in_name, in_scale, int_bias):
    if form == "float":
        w = np.array(op.weight, np.float64)
        if source_and_area(graph, n)[0] == in_name:
            w = w / in_scale  # the float SNN sees x / scale: the NIR graph takes x itself
        b = None if op.bias is None else np.array(op.bias, np.float64)
    else:
        w = O.effective_weights(op)
        b = int_bias.get(n)
    if isinstance(op, O.Dense):
        return nir.Linear(weight=w) if b is None else nir.Affine(weight=w, bias=b)
    if op.dilates_input:
        raise NIRError(f"Conv2d {n!r} dilates its input (a transposed conv or nearest upsampling), which NIR "
                         f"1.0 has no node for; export the network to another format")
    if b is None:
        b = np.zeros(w.shape[0], w.dtype)
    in_shape = graph.nodes[ir.inputs_of(graph, n)[0]]["shape"]
    # nir 1.0.8 cannot write input_shape=None, and types a grouped Conv2d's input as weight.shape[1]
    # (C / groups) channels, so its type-checking read (nir.read's default) refuses grouped convs
    # (depthwise pools and skips); snnc reads with type_check=False and infers shapes itself.
    return nir.Conv2d(input_shape=tuple(int(v) for v in in_shape[1:]), weight=w,
                      stride=tuple(int(v) for v in op.stride), padding=tuple(int(v) for v in op.padding),
                      dilation=tuple(int(v) for v in op.dilation), groups=int(op.groups), bias=b)


def _neuron_node(nir, graph, n, op, shape, form, dt, half, notes):
    def full(v):
        return np.array(np.broadcast_to(np.asarray(v, np.float64), shape), np.float64)

    zeros = np.zeros(shape)
    if form == "float":
        threshold, v0 = full(1.0), float(N.initial_v(op, "float", half, True))
        beta = None if op.beta is None else full(N.beta_of(op, shape))
    else:
        threshold, v0 = full(int(op.threshold) - 0.5), int(op.v_init)
        beta = full(1.0 - N.decays_of(op, shape) / N.DECAY_ONE) if op.leaky else None
    leak = beta is not None and bool(np.any(beta != 1.0))
    if leak and np.any(beta == 1.0):
        raise NIRError(f"layer {n!r}: some channels have beta 1 (no leak) and others leak; NIR's LIF cannot "
                       "express tau = infinity per channel")
    meta = {"layer": str(n), "kind": op.label, "reset": op.reset, "v_init": v0, "readout": bool(op.readout),
            "trained": op.spike_value is not None, "spike_rule": "v >= threshold"}
    if op.scale is not None:
        meta["scale"] = float(op.scale)
    if op.levels is not None:  # a QCFS layer: its spikes are exported exactly; the levels only name its ANN reading
        meta["qcfs_levels"] = int(op.levels)
    if form == "int":
        meta.update(threshold=int(op.threshold), membrane_bits=int(op.membrane_bits), decay_u=int(op.decay_u))
        if op.leaky:
            meta["decay_v"] = np.asarray(op.decay_v, np.int64)
    if op.reset == "subtract":
        notes["reset by subtraction"].append(n)
    if v0:
        notes["an initial membrane"].append(n)
    if form == "int" and (leak or op.decay_u != N.DECAY_ONE):
        notes["integer decays rounded toward zero"].append(n)
    md = {"snnc": meta}
    if op.decay_u != N.DECAY_ONE:
        if not leak:
            raise NIRError(f"layer {n!r}: current memory without a membrane leak has no NIR neuron "
                           "(CubaLIF needs tau_mem)")
        tau_syn = full(dt / (op.decay_u / N.DECAY_ONE))
        tau_mem = dt / (1.0 - beta)
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=zeros, v_threshold=threshold,
                           v_reset=zeros, w_in=tau_syn / dt, metadata=md)
    if leak:
        tau = dt / (1.0 - beta)
        return nir.LIF(tau=tau, r=tau / dt, v_leak=zeros, v_threshold=threshold, v_reset=zeros, metadata=md)
    return nir.IF(r=np.ones(shape), v_threshold=threshold, v_reset=zeros, metadata=md)


def export_nir(graph, form: str = "float", dt: float = DEFAULT_DT, strict: bool = False):
    """The compiled ``graph`` as a ``nir.NIRGraph`` in ``form`` ``float`` or ``int`` (module docstring).

    ``dt``: the timestep the LIF time constants are written for (``tau = dt / (1 - beta)``).
    What NIR cannot express (reset by subtraction, initial membranes, integer decays) is recorded
    in each node's ``metadata['snnc']`` and warned about once (a UserWarning), or refused with
    ``strict=True``."""
    nir = nir_package()
    if form not in FORMS:
        raise NIRError(f"form must be one of {FORMS}, got {form!r}")
    dt = check_dt(dt)
    state = graph.graph.get("snnc", {})
    if not state.get("quantized" if form == "int" else "normalized"):
        raise NIRError(f"the {form} form is written from a compiled graph (an .snnc artifact, or compile_model's "
                       "result); this graph is not " + ("quantized" if form == "int" else "normalized"))
    ir.verify(graph)
    order = ir.topo_order(graph)
    in_name = ir.input_node(graph)
    in_op = ir.op_of(graph, in_name)
    names = _nir_names(graph, order)
    int_bias = _int_biases(graph) if form == "int" else {}
    half = state.get("v_init", "half") == "half"
    notes = {"reset by subtraction": [], "an initial membrane": [], "integer decays rounded toward zero": []}
    nodes, edges = {}, []
    cyclic = {n for scc in nx.strongly_connected_components(graph) if len(scc) > 1 for n in scc}
    for n in order:  # NIR's cycles read the previous step: a 1-step Delay closing one is the cycle itself
        op = ir.op_of(graph, n)
        if isinstance(op, O.Delay) and op.steps == 1 and n in cyclic:
            names[n] = names[ir.inputs_of(graph, n)[0]]
    for n in order:
        op, shape = ir.op_of(graph, n), graph.nodes[n]["shape"]
        if isinstance(op, O.Add) or (isinstance(op, O.Delay) and op.steps == 1 and n in cyclic):
            continue  # NIR sums the edges into a node; and see above
        if isinstance(op, O.Input):
            node = nir.Input(input_type=np.array(shape))
        elif isinstance(op, O.WEIGHTED):
            node = _weighted_node(nir, graph, n, op, form, in_name, in_op.scale, int_bias)
        elif isinstance(op, O.AvgPool2d):
            pool = nir.AvgPool2d if form == "float" else nir.SumPool2d  # the integer SNN sums the window
            node = pool(kernel_size=np.array(op.kernel_size), stride=np.array(op.stride), padding=np.array(op.padding))
        elif isinstance(op, O.Flatten):
            src_shape = graph.nodes[ir.inputs_of(graph, n)[0]]["shape"]
            node = nir.Flatten(input_type={"input": np.array(src_shape)}, start_dim=0, end_dim=-1)
        elif isinstance(op, O.Neuron):
            node = _neuron_node(nir, graph, n, op, shape, form, dt, half, notes)
        elif isinstance(op, O.Delay):  # whole steps, in NIR's time units
            node = nir.Delay(delay=np.full(shape, op.steps * dt))
        else:
            raise NIRError(f"node {n!r}: {O.kind(op)} has no NIR form; export a compiled graph")
        nodes[names[n]] = node
        edges += [(names[s], names[n]) for s in _fed_by(graph, n)]
    out = ir.output_node(graph)
    oname, i = "output", 1
    while oname in nodes:
        oname, i = f"output_{i}", i + 1
    nodes[oname] = nir.Output(output_type=np.array(graph.nodes[out]["shape"]))
    edges.append((names[out], oname))
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "form": form, "dt": dt, "input_scale": float(in_op.scale),
            "input_bits": int(in_op.bits), "input_signed": bool(in_op.signed), "input_levels": int(in_op.levels),
            "spike_rule": "v >= threshold" if form == "float" else "v >= threshold (= v > v_threshold)"}
    for key in ("bits", "reset", "v_init", "membrane_bits", "timesteps"):
        if state.get(key) is not None:
            meta[key] = state[key]
    lost = [f"{what} (layers {', '.join(map(str, layers))})" for what, layers in notes.items() if layers]
    if lost:
        msg = (f"NIR cannot express {'; '.join(lost)}: recorded in each node's metadata['snnc'], which snnc reads "
               "back exactly; other NIR tools reset to 0, start at 0 and decay exactly (for a network NIR's own "
               "equations describe, compile converted layers with --reset zero --v-init zero and train LIF layers "
               "with reset='zero')")
        if strict:
            raise NIRError(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"snnc": meta}, type_check=False)


def nir_bytes(graph, form: str = "float", dt: float = DEFAULT_DT, strict: bool = False) -> bytes:
    """The NIR file (HDF5) of :func:`export_nir`, as bytes (the CLI commits them with outputs.py).
    The same graph gives the same bytes."""
    nir = nir_package()
    g = export_nir(graph, form=form, dt=dt, strict=strict)
    buf = io.BytesIO()
    nir.write(buf, g)
    return buf.getvalue()


def write_nir(graph, path, form: str = "float", dt: float = DEFAULT_DT, strict: bool = False) -> None:
    """Write :func:`nir_bytes` to ``path`` (checked and committed like every snnc output)."""
    from ...outputs import write_files
    write_files({os.fspath(path): nir_bytes(graph, form=form, dt=dt, strict=strict)})
