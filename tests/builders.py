"""Hand-built quantized graphs for tests that must not depend on the frontend or on torch."""
import numpy as np

from snn_compiler.ir import add_op, new_graph, verify
from snn_compiler.ir import ops as O


def int_chain(weights, thresholds, biases=None, v_inits=None, input_levels=255, reset="subtract", membrane_bits=24):
    """Input(F) -> Dense -> IF -> ... -> Dense -> Output with the given integer parameters."""
    g = new_graph()
    g.graph["snnc"] = {"normalized": True, "quantized": True, "reset": reset, "membrane_bits": membrane_bits,
                       "v_init": "half"}
    prev = add_op(g, "in", O.Input((weights[0].shape[1],), scale=1.0, bits=int(np.log2(input_levels + 1))))
    biases = biases or [np.zeros(w.shape[0], np.int64) for w in weights]
    v_inits = v_inits or [0] * len(weights)
    for i, (w, th, b, v0) in enumerate(zip(weights, thresholds, biases, v_inits)):
        w = np.asarray(w)
        d = add_op(g, f"fc{i}", O.Dense(w.astype(float), weight_int=w.astype(np.int32)), [prev])
        last = i == len(weights) - 1
        cls = O.Output if last else O.IF
        prev = add_op(g, "out" if last else f"if{i}",
                      cls(scale=1.0, threshold=int(th), bias=np.asarray(b, np.int64), v_init=int(v0), step=1.0 / th,
                          reset=reset, membrane_bits=membrane_bits), [d])
    verify(g)
    return g
