"""The IR: node kinds (ops) and graph helpers."""
from . import ops
from .graph import (IRError, add_op, add_readout, feedforward_view, input_node, inputs_of, insert_after,
                    is_recurrent, new_graph, op_of, output_node, sources_through, splice_out, topo_order, unique_name,
                    verify)

__all__ = ["ops", "IRError", "add_op", "add_readout", "input_node", "inputs_of", "insert_after", "new_graph", "op_of",
           "output_node", "sources_through", "splice_out", "topo_order", "unique_name", "verify",
           "feedforward_view", "is_recurrent"]
