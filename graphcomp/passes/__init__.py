"""Graph-to-graph passes run by `gc.function(..., optimize=True)`.

Each pass is a pure function `Graph -> Graph`; `PIPELINE` lists them in the order they run.
"""

from __future__ import annotations

from graphcomp.ir import garbage_collection_paused
from graphcomp.passes.common_subexpressions import eliminate_common_subexpressions
from graphcomp.passes.constant_folding import fold_constants
from graphcomp.passes.dead_code import eliminate_dead_code
from graphcomp.passes.fuse import fuse_elementwise
from graphcomp.passes.hoist import hoist_invariants
from graphcomp.passes.siblings import merge_siblings
from graphcomp.passes.simplify import simplify
from graphcomp.passes.stabilize import stabilize
from graphcomp.passes.unread_parts import drop_unread_parts
from graphcomp.passes.validate import GraphValidationError, validate

# Merge first (so rules see shared nodes), then canonicalise, stabilise, clean up, and fuse last
# (fusion consumes the elementwise nodes the other passes look at). Once the graph is clean, sibling
# loops merge, loops drop the parts of their results nobody reads, and their bodies' invariant work
# moves out (after merging: two loops reading the same operands merge; merged, they hoist once).
PIPELINE: list = [
    eliminate_common_subexpressions,
    fold_constants,
    simplify,
    stabilize,
    simplify,
    eliminate_common_subexpressions,
    eliminate_dead_code,
    merge_siblings,
    drop_unread_parts,
    hoist_invariants,
    fuse_elementwise,
]


def optimize(graph, pipeline=None, debug=False):
    """Run the passes of `pipeline` (default: PIPELINE) in order and return the new graph.

    With `debug`, the graph is validated before the first pass and after every pass, and a
    malformed graph raises GraphValidationError naming the pass that produced it.
    """
    with garbage_collection_paused():
        if debug:
            validate(graph, after="(input)")
        for graph_pass in PIPELINE if pipeline is None else pipeline:
            graph = graph_pass(graph)
            if debug:
                validate(graph, after=graph_pass.__name__)
    return graph


def optimize_in_stages(graph, pipeline=None):
    """[(pass name, graph after it)] for every pass of `pipeline`, starting from ("input", graph)."""
    stages = [("input", graph)]
    for graph_pass in PIPELINE if pipeline is None else pipeline:
        graph = graph_pass(graph)
        stages.append((graph_pass.__name__, graph))
    return stages
