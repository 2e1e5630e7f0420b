"""Routing ops of the IR: ops that move, copy or join values without weights (concatenation and
the like). They exist in the graph as a frontend lowers it; passes compose them into the synaptic
connections around them, so none reaches SNN form (each op's docstring says which pass).
"""
from __future__ import annotations

ROUTING_KINDS = ()
