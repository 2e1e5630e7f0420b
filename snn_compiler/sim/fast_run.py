"""The event-driven engine's schedule for one batch (:mod:`.fast` has the plan and the kernels' calls).

Time is cut into chunks of steps; within a chunk the graph runs block by block in the order of
its condensation (strongly connected components). A block without a cycle is one node, run for
the whole chunk at once: its inputs' values for every step of the chunk are known (a Delay
outside any cycle reads its source's chunk, run before it). A cyclic block (a recurrent layer,
or a feedback loop over several layers, closed through Delays) runs step by step inside the
chunk, each node on one step's values; its Delays read their stored line or the block's own
earlier steps. So the feed-forward work into and out of a recurrent layer keeps the whole
chunk's frames per kernel call, and only the cycle itself steps.
"""
from __future__ import annotations

import numpy as np

from ..ir import neuron as N
from ..ir import ops as O
from .fast import K, NO_DECISION, STEP_FRAMES, STEP_VALUES, _apply, _count, _hwc, _torch_layout
from . import stacked
from .fast_schedule import schedule
from .step_reader import StepReader
from .encode import input_chunks, is_sequence
from .readout import MEMBRANE_READOUTS, OVER_TIME, fold_membrane, fold_start


def reads_frames(fp, x, encoding) -> bool:
    """Whether a batch of ``x`` feeds its frames to the recurrent kernel (a sequence whose frames are their
    levels, no Poisson draws, into a Dense of :func:`_dense_of_input`): the kernel then reads every value
    of every sample it runs, and flags any the data check refuses."""
    inp = next(n for n, op in fp.plan.ops.items() if isinstance(op, O.Input))
    return bool(schedule(fp).frames) and is_sequence(fp.plan.ops[inp], x) and encoding == "constant"


class BatchRun:
    """The state of one batch: neuron registers, delay lines, static values, decision records."""

    def __init__(self, fp, x, ids, timesteps, encoding, seed, readout, dec, steps_out):
        plan, g = fp.plan, fp.plan.graph
        self.fp, self.plan, self.g, self.readout, self.dec = fp, plan, g, readout, dec
        self.steps_out = steps_out or {}
        self.n_f = len(x)
        self.out_node = next(n for n, op in plan.ops.items() if O.is_readout(op))
        self.inp = next(n for n, op in plan.ops.items() if isinstance(op, O.Input))
        self.stop = dec is not None and dec.stop
        self.const = plan.static[self.inp]  # a constant encoding of static samples (not of a sequence)
        self.in_dtype = fp.input_dtype(self.inp)
        self.widest = max(int(np.prod(g.nodes[n]["shape"])) for n in plan.order)
        # a sequence's frames come in this run's chunks (a chunk then passes on uncopied: StepReader.take);
        # other encodings keep the encoder's own, smaller chunks (a static sample's uniforms would grow)
        in_chunk = 1 if self.const else (self._chunk_steps(0, timesteps, self.n_f)
                                         if is_sequence(plan.ops[self.inp], x) else None)
        self.inputs = StepReader(input_chunks(plan.ops[self.inp], x, 1 if self.const else timesteps, encoding, seed,
                                               ids, "int", in_chunk, self.in_dtype))
        self.static = {}  # node -> its value is (1, F, ...), the same every step
        for n in plan.order:
            op = plan.ops[n]
            self.static[n] = self.const if isinstance(op, O.Input) else (
                not isinstance(op, (O.NEURONS, O.Delay)) and all(self.static[p] for p in plan.inputs[n]))
        self.held = _delay_lines(fp, self.n_f)  # Delay -> (steps, F, ...): its source's last `steps` steps
        self.cache, self.layers = {}, {}
        for n, op in plan.ops.items():
            if isinstance(op, O.NEURONS):
                shape = g.nodes[n]["shape"]
                nn = int(np.prod(shape))
                spiking = not (n == self.out_node and readout in MEMBRANE_READOUTS)
                p = N.IntParams.of(op, shape)
                self.layers[n] = dict(v=np.full((self.n_f, nn), N.initial_v(op, "int", False, spiking), np.int64),
                                      counts=np.zeros((self.n_f, nn), np.int64), bias=_flat_hwc(p.bias, shape),
                                      spiking=spiking, p=p, decay_v=_flat_hwc(p.decay_v, shape),
                                      u=np.zeros((self.n_f, nn if p.decays else 0), np.int64))
        self.fold = None  # an over-time read-out's fold of the output membrane, (H, W, C) order as v
        if readout in OVER_TIME:
            self.fold = np.full_like(self.layers[self.out_node]["v"], fold_start(readout, True))
        if dec is not None:  # the read-out's decision records, per sample still in the batch (Lava's layout)
            nn = self.layers[self.out_node]["v"].shape[1]
            self.decision = (np.full(self.n_f, -1, np.int64), np.zeros((self.n_f, nn), np.int64),
                             np.zeros((self.n_f, nn), np.int64))
        self.rows = np.arange(self.n_f)  # batch rows still simulated
        sched = schedule(fp)
        self.blocks, self.step_order, self.fused = sched.blocks, sched.step_order, sched.fused
        self.fan_out, self.summed, self.sched = sched.fan_out, sched.summed, sched
        # a sequence whose frames are their levels (no Poisson draws) feeds a Dense into a recurrent layer
        # inside the recurrent kernel: that Dense and the Input run there, not as blocks of their own
        self.frames = sched.frames if reads_frames(fp, x, encoding) else {}
        self.x = np.asarray(x)
        self.inside = {n for d in self.frames.values() for n in (d, self.inp)} | set(sched.fan_out.values())

    def _run_fused(self, parts, seq, spikes, t0, c, key):
        """A self-recurrent layer over the chunk (:func:`_self_recurrent`) in one kernel call, with the Dense
        reading its spikes (``Schedule.fan_out``), and reading the sequence's frames itself where its
        currents from outside are a Dense of them (``Schedule.frames``)."""
        d, r, a, n = parts
        others = [p for p in self.plan.inputs[a] if p != r]
        static = all(self.static[p] for p in others)
        _, wt, sum_dtype, gain = self.fp.ops[r]
        st, p = self.layers[n], self.layers[n]["p"]
        prev = np.ascontiguousarray(self.held[d][0])
        reader = self.fan_out.get(key)
        if reader is not None:
            _, w_out, out_dtype, g_out = self.fp.ops[reader]
            out = np.empty((c, len(self.rows), w_out.shape[1]), out_dtype)
            _count(self.fp, reader, "scatter (in the recurrent kernel)")
        else:
            w_out, g_out, out = np.zeros((wt.shape[0], 0), np.int8), 1, np.zeros((1, len(self.rows), 0), np.int32)
        state = (w_out, g_out, out, st["bias"], st["decay_v"], p.decay_u, p.decays, p.threshold, st["v"], st["u"],
                 p.v_max, p.subtract, st["spiking"], spikes[n], st["counts"], prev)
        dense_in = self.frames.get(key)
        if dense_in is not None:
            _, w_in, in_dtype, g_in = self.fp.ops[dense_in]
            inp = self.plan.ops[self.inp]
            # both sums are float32-exact (below 2**24: FastPlan's dtype rule), so theirs fits int32
            acc_dtype = np.int32 if in_dtype == sum_dtype == np.int32 else np.int64
            _count(self.fp, dense_in, "scatter (in the recurrent kernel)")
            bad = np.zeros(len(self.rows), np.uint8)
            K.recurrent_frames(self.x.view(np.uint8) if self.x.dtype == bool else self.x, self.rows, t0,
                               float(inp.scale), int(inp.levels), -int(inp.levels) if inp.signed else 0, w_in, g_in,
                               wt, gain, *state, np.empty(st["v"].shape, acc_dtype), bad)
            if bad.any():  # (simulate left the data check to the kernel: the check names what it refuses)
                from ..data import check_values
                check_values("input data", self.x)
                raise RuntimeError("the recurrent kernel flagged input values the data check accepts; report this")
        else:
            if len(others) == 1 and seq[others[0]].dtype == np.int32 and sum_dtype == np.int32:
                # both sums are float32-exact (below 2**24: FastPlan's dtype rule), so theirs fits int32:
                # half the bytes per add, and no int64 copy of the external currents
                ext, acc_dtype = seq[others[0]], np.int32
            else:
                ext, acc_dtype = seq[others[0]].astype(np.int64), np.int64
                for q in others[1:]:
                    ext = ext + seq[q]
            K.recurrent_layer(ext.reshape(ext.shape[:2] + (-1,)), static, wt, gain, *state,
                              np.empty(st["v"].shape, acc_dtype))
        self.held[d] = prev[None]
        seq[n] = spikes[n].reshape((c, len(self.rows)) + _hwc(self.g.nodes[n]["shape"]))
        if reader is not None:
            seq[reader] = out

    # ---- one node on a slab of steps ------------------------------------------------------------

    def value(self, n, op, xs, c):
        """A non-neuron op's values for ``c`` steps (or 1, static) from its inputs' slabs ``xs``."""
        shape = self.g.nodes[n]["shape"]
        if isinstance(op, O.Input):
            arr = self.inputs.take(1 if self.const else c, (self.n_f,) + tuple(shape), self.in_dtype)
            if len(self.rows) < self.n_f:  # the encoder's streams are per sample: drop the decided ones' rows
                arr = arr[:, self.rows]
            return arr.transpose(0, 1, 3, 4, 2) if arr.ndim == 5 else arr
        if isinstance(op, O.WEIGHTED):
            return _apply(self.fp, n, op, xs[0], shape)
        if isinstance(op, O.Flatten):  # back to torch's (C, H, W) flatten order
            s = xs[0].transpose(0, 1, 4, 2, 3) if xs[0].ndim == 5 else xs[0]
            return s.reshape(s.shape[:2] + (-1,))
        if isinstance(op, O.AvgPool2d):  # window sums (a synaptic pool; any stride or padding)
            s = xs[0]
            t, f = s.shape[:2]
            pooled = np.zeros((t * f,) + _hwc(shape), self.fp.narrow_dtype(n))
            K.sum_pool(np.ascontiguousarray(s).reshape((t * f,) + s.shape[2:]), op.kernel_size[0], op.kernel_size[1],
                       op.stride[0], op.stride[1], op.padding[0], op.padding[1], pooled)
            return pooled.reshape((t, f) + pooled.shape[1:])
        if isinstance(op, O.Add):
            # int32 sums of int32 terms stay int32 while they cannot wrap: a weighted op's int32 currents are
            # proved below 2**24 (FastPlan's dtype rule), so up to 127 of them (a residual add has two); an
            # Add's own int32 sum carries no such proof, so an Add reading an Add sums in int64
            narrow = (all(p.dtype == np.int32 for p in xs) and len(xs) < 128
                      and not any(isinstance(self.plan.ops[p], O.Add) for p in self.plan.inputs[n]))
            # (a static term has one step: it broadcasts over the others' steps)
            total = np.empty(np.broadcast_shapes(*(p.shape for p in xs)), np.int32 if narrow else np.int64)
            if len(xs) == 2 and all(p.flags.c_contiguous and p.shape[1:] == total.shape[1:] for p in xs):
                K.add_steps(*(p.reshape(len(p), -1) for p in (xs[0], xs[1], total)))  # (both threads)
                return total
            np.add(xs[0], xs[1], out=total) if len(xs) > 1 else np.copyto(total, xs[0])
            for p in xs[2:]:
                np.add(total, p, out=total)
            return total
        raise TypeError(f"the numba engine does not know op {O.kind(op)} ({n!r})")

    def _stacked_terms(self, n, seq):
        """Add ``n``'s terms, its convs (``Schedule.stacked``) summed by one product where it runs, else each
        run on its own (:mod:`.stacked`)."""
        convs, plan = self.sched.stacked[n], self.plan
        slabs = [seq[plan.inputs[v][0]] for v in convs]
        total = stacked.run(self.fp, self.sched, n, convs, slabs, _hwc(self.g.nodes[n]["shape"]), len(plan.inputs[n]))
        terms = ([total] if total is not None else
                 [_apply(self.fp, v, plan.ops[v], s, self.g.nodes[v]["shape"]) for v, s in zip(convs, slabs)])
        return terms + [seq[s] for s in plan.inputs[n] if s not in convs]

    def neurons(self, n, cur, cur_static, spikes, t0):
        """Step layer ``n`` over ``len(spikes)`` steps from step ``t0``: ``cur`` (steps or 1, F, ...)
        currents in, ``spikes`` (steps, F, neurons) written."""
        st, shape = self.layers[n], self.g.nodes[n]["shape"]
        cur2, static2, total = NO_SECOND_TERM
        if isinstance(cur, Terms):  # an Add's two terms, summed by the kernel
            (cur, cur2), (cur_static, static2) = cur.values, cur.static
            cur2, total = cur2.reshape(cur2.shape[:2] + (-1,)), np.empty(st["v"].shape, np.int64)
        cur = cur.reshape(cur.shape[:2] + (-1,))
        p = st["p"]
        decide = self.dec is not None and n == self.out_node
        # a fold or a per-step record of the output membrane: its layer runs one step a call
        trace = n == self.out_node and not st["spiking"] and (self.fold is not None or n in self.steps_out)
        c = len(spikes)
        runs = [(cur if cur_static else cur[t:t + 1], spikes[t:t + 1]) for t in range(c)] if trace else [(cur, spikes)]
        kernel = K.neuron_layer_serial if spikes.size < K.SERIAL_WORK else K.neuron_layer
        for t, (cur_t, spikes_t) in enumerate(runs):
            kernel(cur_t, cur_static, st["bias"], st["decay_v"], p.decay_u, p.decays, p.threshold,
                           st["v"], st["u"], p.v_max, p.subtract, st["spiking"], spikes_t, st["counts"],
                           self.dec.k if decide else 0, t0 + (t if trace else 0), self.stop,
                           *(self.decision if decide else NO_DECISION), cur2, static2, total)
            if trace and self.fold is not None:
                fold_membrane(self.readout, self.fold, st["v"])
            if trace and n in self.steps_out:
                self.steps_out[n][self.rows, t0 + t] = _torch_layout(st["v"], shape).reshape(len(self.rows), -1)

    # ---- a chunk --------------------------------------------------------------------------------

    def chunk(self, t0, c) -> dict:
        """Run steps ``t0 .. t0 + c - 1``; returns {spiking layer: (c, F) spikes per step} for the early stop."""
        plan, seq = self.plan, {}
        fa = len(self.rows)
        left = {n: self.g.out_degree(n) for n in plan.order}
        spikes = {}
        for nodes, cyclic in self.blocks:
            for n in nodes:
                if n in self.layers:  # the kernels write every step's spikes, but a decided sample's stop early
                    fill = np.zeros if self.stop or n == self.out_node else np.empty
                    spikes[n] = fill((c, fa, self.layers[n]["v"].shape[1]), np.uint8)
            if not cyclic:
                (n,) = nodes
                if n in self.inside or n in self.sched.stacked_terms:  # (run by the recurrent kernel or their Add)
                    continue
                op, srcs = plan.ops[n], plan.inputs[n]
                if n in self.cache:
                    seq[n] = self.cache[n]
                elif n in self.held:  # a Delay on a feed-forward path: its source ran before it
                    full = np.concatenate([self.held[n], np.broadcast_to(seq[srcs[0]], (c,) + seq[srcs[0]].shape[1:])])
                    seq[n], self.held[n] = full[:c], full[c:]
                elif n in self.sched.stacked:
                    terms = self._stacked_terms(n, seq)
                    seq[n] = terms[0] if len(terms) == 1 else self.value(n, op, terms, c)
                    self._free(self.sched.stacked[n], seq, left, spikes)
                elif n in self.summed and not self.static[n]:  # (its neuron layer, next, sums the two)
                    seq[n] = Terms([seq[s] for s in srcs], [self.static[s] for s in srcs])
                elif isinstance(op, O.NEURONS):
                    self.neurons(n, seq[srcs[0]], self.static[srcs[0]], spikes[n], t0)
                    seq[n] = spikes[n].reshape((c, fa) + _hwc(self.g.nodes[n]["shape"]))
                else:
                    seq[n] = self.value(n, op, [seq[s] for s in srcs], c)
                if self.static[n]:
                    self.cache[n] = seq[n]
                self._free(nodes, seq, left, spikes)
                continue
            if tuple(nodes) in self.fused:
                self._run_fused(self.fused[tuple(nodes)], seq, spikes, t0, c, tuple(nodes))
                self._free(nodes, seq, left, spikes)
                continue
            order = self.step_order[tuple(nodes)]
            for n in nodes:
                if isinstance(plan.ops[n], O.NEURONS):
                    seq[n] = spikes[n].reshape((c, fa) + _hwc(self.g.nodes[n]["shape"]))
                else:
                    seq[n] = None  # allocated at the first step, shaped by it
            for t in range(c):
                now = {}

                def at(p):  # input p's values at step t: from this step (inside the block) or the chunk
                    if p in now:
                        return now[p]
                    return seq[p] if self.static[p] else seq[p][t:t + 1]
                for n in order:
                    op, srcs = plan.ops[n], plan.inputs[n]
                    if n in self.held:
                        d = op.steps  # step t reads step t - d: stored, or this chunk's
                        src = srcs[0]
                        now[n] = self.held[n][t:t + 1] if t < d else seq[src][t - d:t - d + 1]
                        continue
                    if isinstance(op, O.NEURONS):
                        (s,) = srcs
                        self.neurons(n, at(s), False if s in now else self.static[s], spikes[n][t:t + 1], t0 + t)
                        now[n] = seq[n][t:t + 1]
                        continue
                    now[n] = self.value(n, op, [at(s) for s in srcs], 1)
                    if seq[n] is None:
                        seq[n] = np.empty((c,) + now[n].shape[1:], now[n].dtype)
                    seq[n][t] = now[n][0]
            for n in nodes:
                if n in self.held:  # the line after this chunk: its source's last `steps` steps
                    src = plan.inputs[n][0]
                    full = np.concatenate([self.held[n], seq[src]])
                    seq[n], self.held[n] = full[:c], full[c:]
            self._free(nodes, seq, left, spikes)
        for n in self.steps_out:  # (steps, samples, H, W, C) -> (samples, steps, C*H*W)
            if self.layers[n]["spiking"]:
                s = seq[n].transpose(1, 0, 4, 2, 3) if seq[n].ndim == 5 else seq[n].swapaxes(0, 1)
                self.steps_out[n][self.rows, t0:t0 + c] = s.reshape(fa, c, -1)
        sums = {}
        if self.stop:
            for n, st in self.layers.items():
                if st["spiking"]:
                    sums[n] = np.empty((c, fa), np.int64)
                    K.step_sums(spikes[n], sums[n])
        return sums

    def _free(self, nodes, seq, left, spikes):
        """Drop a value once its last consumer has run (a recorded layer's stays for the record, and
        a spiking layer's spike counts per step stay for the early stop's sums)."""
        inside = set(nodes)
        for n in nodes:
            for s in self.plan.inputs[n]:
                if s in inside:
                    continue
                left[s] -= 1
                if left[s] == 0 and s not in self.steps_out:
                    seq.pop(s, None)
                    if not self.stop:
                        spikes.pop(s, None)

    def _chunk_steps(self, t0, timesteps, fa) -> int:
        return max(1, min(timesteps - t0, STEP_FRAMES // fa, STEP_VALUES // (fa * self.widest)))

    def chunk_length(self, t0, timesteps) -> int:
        c = self._chunk_steps(t0, timesteps, len(self.rows))
        if self.stop:  # chunks double (steps 0, 1, 2-3, 4-7, ...): a sample decided after t steps runs < 2t
            c = max(1, min(c, t0))
        return c


class Terms:
    """The terms of an Add (``Schedule.summed``) passed to its neuron layer unsummed, with their static flags."""

    def __init__(self, values, static):
        self.values, self.static = values, static


NO_SECOND_TERM = (np.zeros((1, 1, 1), np.int32), True, np.zeros((0, 0), np.int64))


def _delay_lines(fp, batch) -> dict:
    """Each Delay's line: (steps, batch, *shape in (H, W, C) order) zeros, of what its source sends
    (spikes as uint8, the Input's values in its dtype)."""
    plan = fp.plan
    lines = {}
    for n, op in plan.ops.items():
        if isinstance(op, O.Delay):
            src = plan.inputs[n][0]
            dtype = np.uint8 if isinstance(plan.ops[src], O.NEURONS) else fp.int_dtype(src)
            lines[n] = np.zeros((op.steps, batch) + _hwc(tuple(op.shape)), dtype)
    return lines


def _flat_hwc(a, shape):
    """A per-neuron int64 array broadcast to ``shape`` and flattened in the engine's (H, W, C) order."""
    a = np.broadcast_to(np.asarray(a, np.int64), shape)
    return np.ascontiguousarray(a.transpose(1, 2, 0) if len(shape) == 3 else a).ravel()
