"""NIR import: a NIR graph -> the IR (what the torch frontend emits).

**Import** (:func:`from_nir`, :func:`load_nir`; ``snnc compile net.nir --dt DT``) maps a NIR graph
written by any library onto the IR ops the torch frontend emits. Every neuron is a trained
spiking layer (spikes worth 1, ``scale`` = threshold, initial membrane 0, reset "zero" as NIR
defines it), fed by weighted ops; its input gain is folded into their weights (and a per-neuron
threshold, when thresholds differ, is folded in the same way, leaving threshold 1):

    IF       v[t] = v[t-1] + r I[t]                 gain r (per step: snnTorch, Norse and sinabs
                                                    all integrate IF this way, without dt)
    LIF      v[t] = beta v[t-1] + (r dt/tau) I[t]   beta = 1 - dt/tau        (euler)
                                                    beta = exp(-dt/tau), gain r (1 - beta)  (exact)
    CubaLIF  u[t] = alpha u[t-1] + (w_in dt/tau_syn) I[t],  alpha = 1 - dt/tau_syn (euler only)
             v[t] = beta v[t-1] + (r dt/tau_mem) u[t]
             decay_u = round(4096 dt/tau_syn) (Loihi's 12 bits; a rounding is warned about
             with both decays and the relative error; one tau_syn per layer)
    LI, I, CubaLI   the same without spikes: only as the read-out (``--readout membrane``)

spiking on ``v >= v_threshold`` (NIR: ``>``; they differ only at exact equality) and resetting to
0 (``v_reset`` and ``v_leak`` must be 0, else refused). The last neuron layer (the one the graph's
``Output`` reads) becomes the read-out; an Output reading a current gets a non-spiking
accumulator (``--readout membrane``). NIR stores no timestep: ``dt`` must be given. Library
conventions (each exports and imports with its own):

    snnTorch 1.0  LIF/CubaLIF with dt = 1e-4 hard-coded, tau = dt/(1-beta), r = tau/dt,
                  tau_syn = dt/(1-alpha), w_in = tau_syn/dt; Euler            ->  --dt 1e-4
    Norse 1.1     LIF with r = 1, tau in seconds, Euler with dt = 1e-3 (its default)
                                                                              ->  --dt 1e-3
    sinabs 3.1    IF with r = 1; LIF/LI with tau in timesteps and r = 1; its LIF decays by
                  exp(-1/tau) and, with norm_input (its default), scales the input by
                  1 - exp(-1/tau): ``discretization="exact"``                ->  --dt 1
                  (its own from_nir builds norm_input=False layers, gain 1; its IAF resets by
                  subtraction, which its export does not record; its Conv2d export leaves
                  input_shape None, which nir 1.0.8 cannot write)

Also mapped: Affine/Linear -> Dense, Conv2d (int, pair or 'same'/'valid' padding), Flatten (of a
whole sample; ``start_dim=1`` is read as including the batch axis, as sinabs writes it), Scale
(per channel: folded into the weighted op before it, or by ``fold_batchnorm`` into the one after
it), AvgPool2d/SumPool2d: between a neuron layer (or the Input) and weighted ops a synaptic pool
(kernel = stride, no padding, the map divisible); into a neuron, a depthwise Conv2d; after a
Conv2d, composed into it. Several edges into a neuron are summed; a neuron fed straight by the
Input or another neuron gets an identity synapse. Recurrent graphs (cycles) and Delay nodes of
whole steps: :mod:`.cycles` (a cycle reads the previous step's spikes). Refused with the reason:
nested subgraphs, Threshold, Conv1d, several inputs or outputs.

A graph snnc exported (``metadata['snnc']['format'] == 'snnc-nir'``) comes back with what its
metadata records: the input scale, bits and sign, ``dt``, each layer's reset, and (float form)
which layers were converted ReLUs (they take ``--reset``/``--v-init`` again). Compiled with the
same ``--bits`` (``--reset``/``--v-init`` for converted layers), the float form gives back the
same integer weights, thresholds and decays, so the same integer spikes (tests/test_nir.py).

The importer's driver is here; weighted ops, pools, Flatten and Scale are lowered in :mod:`.layers`,
neurons in :mod:`.neurons`; the file is read and checked in :mod:`.read`.
"""
from __future__ import annotations

import warnings
from typing import Optional

import networkx as nx
import numpy as np

from ... import ir, origins
from ...ir import neuron as N
from ...ir import ops as O
from ..lowering import refuse_non_finite
from . import cycles, layers, neurons
from .common import (DISCRETIZATIONS, FORMAT, FORMS, NEEDS_DT, READOUT_ONLY, SPIKING, SUPPORTED, NIRError, _plain,
                     check_dt, nir_package)
from .read import read_nir


class _Importer:
    def __init__(self, nir, ng, dt, input_shape, discretization):
        if discretization not in DISCRETIZATIONS:
            raise NIRError(f"discretization must be one of {DISCRETIZATIONS}, got {discretization!r}")
        self.nir, self.ng, self.disc = nir, ng, discretization
        meta = _plain(getattr(ng, "metadata", None) or {})
        snnc = meta.get("snnc") if isinstance(meta, dict) else None
        self.meta = snnc if isinstance(snnc, dict) and snnc.get("format") == FORMAT else {}
        self.form = self.meta.get("form") if self.meta.get("form") in FORMS else None
        if dt is None:
            dt = self.meta.get("dt")
        self.dt = None if dt is None else check_dt(dt)
        self.input_shape = input_shape
        self.g = ir.new_graph()
        self.map = {}          # NIR node -> the IR node that carries its output
        self.nir_of = {}       # IR node -> the NIR node whose consumers read it (for folding)
        self.sum_area = {}     # IR AvgPool2d from a NIR SumPool2d -> its window area
        self.lost_v_init = []
        self.readout_only = set()
        self.gains = {}        # NIR neuron -> the input gain folded into its weighted ops (cycles.attach)
        self.cut = set()       # NIR edges read one step (or a Delay's steps) late (cycles.feedback_edges)

    # -- helpers
    def kind(self, name) -> str:
        return type(self.ng.nodes[name]).__name__

    def shape(self, n) -> tuple:
        return self.g.nodes[n]["shape"]

    def emit(self, name, op, inputs=()):
        bad = refuse_non_finite(op)
        if bad:
            raise NIRError(f"NIR node {name!r}: {bad}")
        orig = str(name)
        name = ir.unique_name(self.g, orig)
        ir.add_op(self.g, name, op, list(inputs))
        while orig not in self.ng.nodes and "." in orig:  # a node made for one (hid.sum, hid.delay): its layer's
            orig = orig.rsplit(".", 1)[0]
        node = self.ng.nodes.get(orig)
        origins.record(self.g, name, orig, type(node).__name__ if node is not None else "NIR node")
        try:
            self.g.nodes[name]["shape"] = O.infer_shape(op, [self.shape(i) for i in inputs])
        except ValueError as e:
            raise NIRError(f"node {name!r}: {e}") from None
        return name

    def fail(self, name, why):
        raise NIRError(f"NIR node {name!r} ({self.kind(name)}): {why}")

    def per_neuron(self, name, attr, shape):
        v = getattr(self.ng.nodes[name], attr)
        try:
            a = np.asarray(v, np.float64)
        except (TypeError, ValueError):
            self.fail(name, f"{attr} is not numeric")
        if a.size == 1:
            a = np.full(shape, a.reshape(-1)[0])
        elif a.shape == tuple(shape):
            a = a.copy()
        elif len(shape) == 3 and a.shape in ((shape[0],), (shape[0], 1, 1)):
            a = np.broadcast_to(a.reshape(-1, 1, 1), shape).copy()
        elif a.shape == (1,) + tuple(shape):
            a = a.reshape(shape).copy()
        else:
            self.fail(name, f"{attr} has shape {a.shape}, the layer has {tuple(shape)}")
        if not np.all(np.isfinite(a)):
            hint = (" (a time constant of infinity means no leak: write the neuron as an IF node)"
                    if attr.startswith("tau") and np.any(np.isposinf(a)) else "")
            self.fail(name, f"{attr} has non-finite values (NaN or inf){hint}")
        return a

    def through(self, n):
        """Walk back through Flatten and pools: (the IR node reached, product of SumPool areas)."""
        area = 1
        while isinstance(ir.op_of(self.g, n), (O.Flatten, O.AvgPool2d)):
            area *= self.sum_area.get(n, 1)
            (n,) = ir.inputs_of(self.g, n)
        return n, area

    def input_gain(self, x):
        """What a weighted op reading IR node ``x`` multiplies its weights by: SumPool areas, and for
        an snnc int-form file reading the Input, levels / scale (it took the graded x_q)."""
        src, area = self.through(x)
        gain = float(area)
        if self.form == "int" and isinstance(ir.op_of(self.g, src), O.Input):
            inp = ir.op_of(self.g, src)
            gain *= inp.levels / inp.scale
        return gain

    # -- the driver
    def run(self):
        ng = self.ng
        nodes, edges = dict(ng.nodes), [(str(a), str(b)) for a, b in ng.edges]
        for name, node in nodes.items():
            k = type(node).__name__
            if k == "NIRGraph":
                raise NIRError(f"NIR node {name!r} is a nested graph (a recurrent layer such as snnTorch's RLeaky or "
                               "RSynaptic); snnc compiles feed-forward networks only")
            if k not in SUPPORTED:
                raise NIRError(f"NIR node {name!r}: {k} is not supported (snnc maps {', '.join(SUPPORTED)})")
        d = nx.DiGraph()
        d.add_nodes_from(nodes)
        for a, b in edges:
            if a not in nodes or b not in nodes:
                raise NIRError(f"NIR edge ({a!r}, {b!r}) names a node the graph does not have")
            d.add_edge(a, b)
        self.d = d
        ins = [n for n in nodes if self.kind(n) == "Input"]
        outs = [n for n in nodes if self.kind(n) == "Output"]
        if len(ins) != 1 or len(outs) != 1:
            raise NIRError(f"need exactly one Input and one Output node, the NIR graph has {len(ins)} and {len(outs)}")
        needs_dt = [n for n in nodes if self.kind(n) in ("LIF", "CubaLIF", "LI", "CubaLI")]
        if needs_dt and self.dt is None:
            raise NIRError(NEEDS_DT)
        self.cut = cycles.feedback_edges(self, d, ins[0])
        order = list(nx.lexicographical_topological_sort(nx.restricted_view(d, [], self.cut)))
        for name in order:
            self.node(name)
        cycles.close(self, order, self.cut)
        out_src = self.finish(outs[0])
        g = self.g
        keep = nx.ancestors(g, out_src) | {out_src}
        g.remove_nodes_from([n for n in list(g) if n not in keep])
        if not any(isinstance(ir.op_of(g, n), O.Input) for n in g):
            raise NIRError("the NIR graph's output does not depend on its input")
        for n in ir.topo_order(g):  # gains folded into weights after they were emitted
            bad = refuse_non_finite(ir.op_of(g, n))
            if bad:
                raise NIRError(f"NIR node {self.nir_of.get(n) or n!r}: {bad}")
        try:
            ir.verify(g)
        except ir.IRError as e:
            raise NIRError(f"the NIR graph does not map onto snnc's IR: {e}") from None
        g.graph["snnc"]["source"] = {"format": "nir", "dt": self.dt, "discretization": self.disc,
                                     "snnc_form": self.form}
        if self.lost_v_init:
            warnings.warn(f"layers {', '.join(self.lost_v_init)} started at a non-zero membrane in the compiled "
                          "network; an int-form NIR file brings them back as trained layers starting at 0 (the "
                          "float form keeps them converted, so --v-init applies again)", UserWarning, stacklevel=3)
        return g

    def preds(self, name) -> list:
        """The NIR nodes feeding ``name``, in the file's edge order."""
        preds = [p for p, _ in sorted(((p, i) for i, (p, q) in enumerate(self.ng.edges) if str(q) == name),
                                      key=lambda t: t[1])]
        return list(dict.fromkeys(str(p) for p in preds))

    def node(self, name):
        """Lower NIR node ``name`` from its inputs within the step (the cut edges come in cycles.close)."""
        k = self.kind(name)
        preds = self.preds(name)
        ins = [self.map[p] for p in preds if p in self.map and (p, name) not in self.cut]
        if k == "Input":
            if preds:
                self.fail(name, "an Input cannot have inputs")
            return self.input(name)
        if k == "Output":
            return None
        if not ins:
            return None  # fed by nothing reachable (yet: cycles.close lowers what a cut edge feeds)
        return self.lower(name, ins)

    def lower(self, name, ins):
        k = self.kind(name)
        if len(ins) > 1 and k not in SPIKING + READOUT_ONLY:
            self.fail(name, f"it sums {len(ins)} inputs; snnc sums currents only into neurons")
        if k in ("Affine", "Linear"):
            return layers.linear(self, name, ins[0])
        if k == "Conv2d":
            return layers.conv(self, name, ins[0])
        if k in ("AvgPool2d", "SumPool2d"):
            return layers.pool(self, name, ins[0])
        if k == "Flatten":
            return layers.flatten(self, name, ins[0])
        if k == "Scale":
            return layers.scale(self, name, ins[0])
        return neurons.neuron(self, name, ins)

    def set(self, name, ir_name):
        self.map[name] = ir_name
        self.nir_of[ir_name] = name

    def input(self, name):
        node = self.ng.nodes[name]
        if self.input_shape is not None:
            shape = tuple(int(v) for v in self.input_shape)
        else:
            t = node.input_type.get("input") if isinstance(node.input_type, dict) else None
            if t is None:
                raise NIRError(f"NIR Input {name!r} records no shape; give the input shape (--input-shape)")
            shape = tuple(int(v) for v in np.asarray(t).reshape(-1))
            if len(shape) in (2, 4) and shape[0] == 1:
                shape = shape[1:]  # a batch axis of 1
        if len(shape) not in (1, 3) or min(shape, default=0) < 1:
            raise NIRError(f"NIR Input {name!r} has shape {shape}; snnc takes (F,) or (C, H, W) samples (give "
                           "--input-shape)")
        m = self.meta
        fields = {}
        if "input_scale" in m:  # an snnc export: the input as it was compiled
            try:
                fields = dict(scale=float(m["input_scale"]), bits=int(m.get("input_bits", 8)),
                              signed=bool(m.get("input_signed", False)))
            except (TypeError, ValueError):
                fields = {}
            if not (fields and np.isfinite(fields["scale"]) and fields["scale"] > 0
                    and 1 + fields["signed"] <= fields["bits"] <= 16):
                raise NIRError(f"the file's metadata['snnc'] input fields are not valid: scale "
                               f"{m.get('input_scale')!r}, bits {m.get('input_bits')!r}, "
                               f"signed {m.get('input_signed')!r}")
        elif self.form == "int":
            raise NIRError("an int-form snnc file without metadata['snnc']['input_scale']: its integer input cannot "
                           "be related to the data")
        self.set(name, self.emit(name, O.Input(shape=shape, **fields)))

    def finish(self, out):
        srcs = [str(p) for p in self.d.predecessors(out)]
        if len(srcs) != 1 or srcs[0] not in self.map:
            raise NIRError(f"the NIR Output {out!r} must read exactly one node that depends on the input")
        for n in self.readout_only:
            if n != srcs[0]:
                self.fail(n, "a non-spiking neuron (LI, I, CubaLI) is supported only as the read-out the Output reads")
        x = self.map[srcs[0]]
        op = ir.op_of(self.g, x)
        if isinstance(op, O.Neuron):
            op.readout = True
            return x
        warnings.warn(f"the NIR graph's output is the current of {srcs[0]!r}, not a neuron layer: snnc reads it out "
                      "with a non-spiking accumulator (use --readout membrane)", UserWarning, stacklevel=4)
        syn = layers.synapse(self, x)
        return self.emit("output", N.Neuron(readout=True, scale=1.0, spike_value=1.0), [syn])


def from_nir(source, dt: Optional[float] = None, *, input_shape=None, discretization: str = "euler"):
    """An IR graph (what the torch frontend returns) from a ``nir.NIRGraph`` or a NIR file path.

    ``dt``: the timestep to discretise at (required when the graph has time constants; an
    snnc-exported file records its own). ``discretization``: ``euler`` (snnTorch, Norse) or
    ``exact`` (``beta = exp(-dt/tau)``, sinabs). ``input_shape`` overrides the Input's shape.
    See the module docstring for the mapping; NIRError says what does not map and why."""
    nir = nir_package()
    ng = source if isinstance(source, nir.NIRGraph) else read_nir(source)
    return _Importer(nir, ng, dt, input_shape, discretization).run()


def load_nir(path, dt: Optional[float] = None, input_shape=None, discretization: str = "euler"):
    """``from_nir`` of the file ``path`` (what ``snnc compile net.nir --dt DT`` runs)."""
    return from_nir(read_nir(path), dt, input_shape=input_shape, discretization=discretization)
