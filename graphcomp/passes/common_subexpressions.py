"""Common-subexpression elimination: nodes that compute the same value become one node."""

from __future__ import annotations

import numpy as np

from graphcomp.ir import Graph
from graphcomp.passes.rewrite import rewired

CONSTANT_BYTES_COMPARED = 1 << 16  # larger constants are only merged with themselves


def _attrs_key(attrs):
    if not attrs:
        return ()
    try:
        key = tuple(sorted(attrs.items()))
        hash(key)
        return key
    except TypeError:  # an attribute that cannot be hashed is compared by its text
        return repr(sorted(attrs.items()))


def _constant_key(node):
    array = node.payload
    if array.nbytes > CONSTANT_BYTES_COMPARED:
        return ("constant", node.id)
    return ("constant", array.dtype.str, array.shape, array.tobytes())


def structural_key(node, canonical):
    """(op, inputs, attrs) with inputs already merged; None for nodes never merged."""
    op = node.op
    if op.stateful:
        return None  # two draws are two values, whatever their inputs
    if op.leaf:
        return _constant_key(node) if isinstance(node.payload, np.ndarray) else None
    inputs = tuple([canonical[parent].id for parent in node.inputs])
    if op.commutative:
        inputs = tuple(sorted(inputs))
    return (op.name, id(op), inputs, _attrs_key(node.attrs))


def eliminate_common_subexpressions(graph):
    """Merge nodes with the same op, attributes and (merged) inputs; constants by value."""
    canonical, by_key = {}, {}
    changed = False
    for node in graph.nodes:
        key = structural_key(node, canonical)
        if key is not None and key in by_key:
            canonical[node] = by_key[key]
            changed = True
            continue
        node_new = rewired(node, canonical)
        changed = changed or node_new is not node
        canonical[node] = node_new
        if key is not None:
            by_key[key] = node_new
    if not changed:
        return graph
    return Graph([canonical[out] for out in graph.outputs])
