"""Constant folding: a node whose inputs are all constants becomes a constant, when its value
is small enough to bake into the graph (large results stay computed at run time)."""

from __future__ import annotations

import numpy as np

from graphcomp.ir import Graph
from graphcomp.passes.rewrite import is_constant, make_constant, rewired
from graphcomp.shapes import is_static, size_of

MAX_FOLDED_ELEMENTS = 1 << 16  # the size cap: results above it are not baked in


def foldable(node):
    """True when `node` is computed from constants alone and small enough to bake in."""
    if node.op.leaf or node.op.stateful or not node.inputs:
        return False
    if not all(is_constant(parent) for parent in node.inputs):
        return False
    size = size_of(node.shape)
    return size is not None and size <= MAX_FOLDED_ELEMENTS and is_static(node.shape)


def evaluate(node):
    """The node's value, or None when evaluating it raises or disagrees with its shape/dtype."""
    kernel = node.op.kernel(dict(node.attrs))
    try:
        with np.errstate(all="ignore"):
            value = np.asarray(kernel(*(parent.payload for parent in node.inputs)))
    except Exception:  # noqa: BLE001 - the error is left for run time, where it names the user's line
        return None
    if value.shape != tuple(node.shape):
        return None
    return value.astype(node.dtype, copy=False)


def fold_constants(graph):
    """Replace nodes computed from constants alone by constants (at most MAX_FOLDED_ELEMENTS)."""
    mapping = {}
    changed = False
    for node in graph.nodes:
        current = rewired(node, mapping)
        changed = changed or current is not node
        if foldable(current):
            value = evaluate(current)
            if value is not None:
                current = make_constant(value, current.dtype, like=current)
                changed = True
        if current is not node:
            mapping[node] = current
    if not changed:
        return graph
    return Graph([mapping.get(out, out) for out in graph.outputs])
