"""A checker for graphs between passes: every node well formed and in topological order, every
shape and dtype what its op's rule says, every leaf holding what it should."""

from __future__ import annotations

import numpy as np

from graphcomp.ir import Node


class GraphValidationError(AssertionError):
    """A pass produced a malformed graph; the message names the pass (when known) and the node."""


def _shapes_agree(declared, inferred):
    return len(declared) == len(inferred) and all(
        a == b or a is None or b is None for a, b in zip(declared, inferred))


def _check_node(node, position, index):
    if not isinstance(node, Node):
        return f"entry {position} is a {type(node).__name__}, not a node"
    for parent in node.inputs:
        if parent not in index:
            return f"input {parent.describe()} is not in the graph"
        if index[parent] >= position:
            return f"input {parent.describe()} comes after the node (not topological)"
    if node.op.leaf:
        if node.inputs:
            return "a leaf has inputs"
        if isinstance(node.payload, np.ndarray) and (not isinstance(node.payload, np.ndarray) or node.payload.shape != node.shape
                                   or node.payload.dtype != node.dtype):
            return "a constant's array does not match its shape or dtype"
        return None
    if getattr(node.op, "skip_validation", False):
        return None
    try:
        shape, dtype = node.op.infer(*node.inputs, **node.attrs)
    except Exception as error:  # noqa: BLE001 - any failure of the rule is the finding
        return f"its op's shape rule fails on its inputs: {type(error).__name__}: {error}"
    if not _shapes_agree(node.shape, tuple(shape)):
        return f"declared shape {node.shape} but its inputs give {tuple(shape)}"
    if np.dtype(dtype) != node.dtype:
        return f"declared dtype {node.dtype} but its inputs give {np.dtype(dtype)}"
    return None


def validate(graph, after=None):
    """Raise GraphValidationError if `graph` is malformed; returns the graph unchanged."""
    index = {}
    for position, node in enumerate(graph.nodes):
        index.setdefault(node, position)
    for position, node in enumerate(graph.nodes):
        if index[node] != position:
            problem = "it appears twice"
        else:
            problem = _check_node(node, position, index)
        if problem:
            where = f" after pass {after!r}" if after else ""
            raise GraphValidationError(f"invalid graph{where}: node {position} "
                                       f"({node.describe() if isinstance(node, Node) else node!r}): {problem}")
    for out in graph.outputs:
        if out not in index:
            where = f" after pass {after!r}" if after else ""
            raise GraphValidationError(f"invalid graph{where}: output {out.describe()} is not among its nodes")
    return graph
