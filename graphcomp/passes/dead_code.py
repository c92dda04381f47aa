"""Dead-code elimination: keep only the nodes the outputs depend on."""

from __future__ import annotations

from graphcomp.ir import Graph, topological_order


def eliminate_dead_code(graph):
    """The graph of the nodes `graph.outputs` depend on (drops anything left unreachable)."""
    live = topological_order(graph.outputs)
    if len(live) == len(graph.nodes):
        return graph
    return Graph(graph.outputs, live)
