"""Graph-to-graph passes run by `gc.function(..., optimize=True)`.

Each pass is a pure function `Graph -> Graph`; `PIPELINE` lists them in the order they run.
"""

from __future__ import annotations

PIPELINE: list = []


def optimize(graph, pipeline=None):
    """Run the passes of `pipeline` (default: PIPELINE) in order and return the new graph."""
    for graph_pass in PIPELINE if pipeline is None else pipeline:
        graph = graph_pass(graph)
    return graph
