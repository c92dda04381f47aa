"""Hoisting loop-invariant work out of loop bodies: what a body computes from the operands every
step reads whole (the weights a reverse pass transposes, a tangent's constant parts) is computed
once, before the loop, and the body reads it as one more such operand.

A body traced from the user's function already takes tensors from outside as operands (they are
captured, with the work on them); the bodies of derivatives are built from placeholders, so
their invariant work is found here. The same values are computed, once instead of at each step.
"""

from __future__ import annotations

from graphcomp.ir import Graph
from graphcomp.passes.rewrite import rewired


def hoist_invariants(graph):
    """Every node whose op can hoist (`OpDef.hoist`) with its body's invariant work moved out."""
    if all(node.op.hoist is None for node in graph.nodes):
        return graph  # no loop: no rebuilding walk
    rebuilt, changed = {}, False
    for node in graph.nodes:  # inputs first
        current = rewired(node, rebuilt)
        if current.op.hoist is not None:
            hoisted = current.op.hoist(current)
            if hoisted is not None:
                current, changed = hoisted, True
        rebuilt[node] = current
    return Graph([rebuilt[out] for out in graph.outputs]) if changed else graph
