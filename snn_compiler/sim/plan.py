"""What every engine of the integer and float SNN computes once per simulation (:class:`Plan`)."""
from __future__ import annotations

import numpy as np

from ..ir import inputs_of, kernels, op_of, topo_order
from ..ir import ops as O
from ..ir.layers import input_range, sum_abs_bound
from ..ir.registers import MAX_LAYER_SUM
from .encode import is_static


class Plan:
    """Per-node facts computed once per simulation and shared by every engine: topological order,
    inputs, weights in the narrowest float dtype proved exact for their sums, static nodes (the
    same every step; never for a ``sequence`` input), and the check that no integer register leaves int64's exact range."""

    def __init__(self, graph, mode, encoding, sequence=False):
        self.graph, self.mode = graph, mode
        self.order = topo_order(graph)
        self.inputs = {n: inputs_of(graph, n) for n in self.order}
        self.ops = {n: op_of(graph, n) for n in self.order}
        self.weights = {}
        for n, op in self.ops.items():
            if isinstance(op, O.WEIGHTED):
                self.weights[n] = self._weights(n, op)
        self.static = {}
        for n, op in self.ops.items():
            if isinstance(op, O.Input):
                self.static[n] = is_static(encoding) and not sequence  # a sequence's frames change
            elif isinstance(op, O.Delay):
                self.static[n] = False  # zeros for its first steps, whatever it carries
            else:
                self.static[n] = not isinstance(op, O.NEURONS) and all(self.static[p] for p in self.inputs[n])
        self.v_half = graph.graph.get("snnc", {}).get("v_init", "half") == "half"

    def _weights(self, n, op):
        if self.mode == "float":
            return op.weight
        # the weights are weight_int * 2**weight_exp: bounded and converted from the narrow integers
        # directly (no int64 copy of a big layer's weights on every simulate call)
        w, scale = np.asarray(op.weight_int), 2.0 ** op.weight_exp
        reads = input_range(self.graph, n)  # None: not SNN form (an op reading currents), nothing proved
        bound = sum_abs_bound(w, 1 if reads is None else reads[0]) * scale
        try:
            dtype = kernels.exact_dtype(bound if reads is not None else max(bound, kernels.F32_EXACT))
        except OverflowError:
            raise ValueError(f"op {n!r}: its integer sums reach {bound:.3g}, beyond float64's exact range "
                             f"(2**53), so no simulator can run it exactly; recompile with fewer weight bits") from None
        out = w.astype(dtype)
        if op.weight_exp:
            out *= dtype(scale)  # exact: every weight's magnitude is within the bound, below dtype's exact range
        return out

    def check_registers(self):
        """Integer fields within the int64 arithmetic both engines use (no wrap-around anywhere),
        else a one-line ValueError naming the layer."""
        lim = MAX_LAYER_SUM
        for n, op in self.ops.items():
            if not isinstance(op, O.NEURONS):
                continue
            bits = op.membrane_bits
            if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 62:
                raise ValueError(f"layer {n!r}: membrane_bits must be an integer in 2..62 for the simulator, got "
                                 f"{bits!r}; recompile the model")
            th, v0 = op.threshold, op.v_init
            if not 1 <= int(th) <= lim:
                raise ValueError(f"layer {n!r}: threshold {th} is outside 1..2**62; recompile the model")
            if not -lim <= int(v0) <= lim:
                raise ValueError(f"layer {n!r}: v_init {v0} is outside +-2**62; recompile the model")
            b = np.asarray(op.bias)
            if b.size and (b.dtype.kind not in "iu" or int(b.min()) < -lim or int(b.max()) > lim):
                raise ValueError(f"layer {n!r}: bias must be integers within +-2**62; recompile the model")


def delay_lines(plan, batch) -> dict:
    """``{Delay node: its line}``, a list of ``steps`` slots, slot ``t % steps`` holding what the
    source sent at step ``t - steps`` (zeros before the first: no spikes, or a zero input)."""
    lines = {}
    for n, op in plan.ops.items():
        if isinstance(op, O.Delay):
            src = plan.ops[plan.inputs[n][0]]
            dtype = bool if isinstance(src, O.NEURONS) else np.int64 if plan.mode == "int" else np.float64
            lines[n] = [np.zeros((batch,) + tuple(op.shape), dtype) for _ in range(op.steps)]
    return lines
