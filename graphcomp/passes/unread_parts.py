"""Dropping the parts of a packed result nobody reads: a loop whose stacked ys (a gradient of
its sequences nobody asked for, say) are never sliced out stops computing them."""

from __future__ import annotations

from graphcomp.ir import Graph
from graphcomp.ops.indexing import GETITEM
from graphcomp.passes.rewrite import make_node


def slice_read(reader, node):
    """(start, stop) when `reader` takes one static slice of the vector `node`, else None."""
    if reader.op is not GETITEM or reader.inputs[0] is not node or len(node.shape) != 1:
        return None
    index = reader.attrs["index"]
    if len(index) != 1 or len(index[0]) != 4 or index[0][0] != "slice" or index[0][3] is not None:
        return None
    _, start, stop = index[0][:3]
    if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop <= node.shape[0]):
        return None
    return start, stop


def drop_unread_parts(graph):
    """Narrow each node whose op can drop parts of its packed result (`OpDef.narrow`) to the
    parts its consumers' slices read, and move those slices onto the narrowed node; again while
    something goes (a narrowed loop may stop reading a part of an earlier one)."""
    if all(node.op.narrow is None for node in graph.nodes):
        return graph  # nothing to narrow: no rebuilding walk (most graphs hold no loop)
    while True:
        narrowed = _drop_once(graph)
        if narrowed is graph:
            return graph
        graph = narrowed


def _drop_once(graph):
    outputs = set(graph.outputs)
    rebuilt, moved = {}, {}  # old node -> new; old slice -> (narrowed node, its place there)
    for node in graph.nodes:
        if node in moved:
            narrowed, (start, stop) = moved[node]
            rebuilt[node] = make_node(GETITEM, [narrowed], {"index": (("slice", start, stop, None),)},
                                      like=node, name=node.name)
            continue
        inputs = [rebuilt[parent] for parent in node.inputs]
        current = node.with_inputs(inputs) if any(a is not b for a, b in zip(inputs, node.inputs)) else node
        rebuilt[node] = current
        readers = graph.consumers.get(node, [])
        if node.op.narrow is None or node in outputs or not readers:
            continue
        slices = [slice_read(reader, node) for reader in readers]
        if any(read is None for read in slices):
            continue
        narrowed = node.op.narrow(current, set(slices))
        if narrowed is None:
            continue
        new_node, place = narrowed
        rebuilt[node] = new_node
        for reader, read in zip(readers, slices):
            moved[reader] = (new_node, place(*read))
    if not moved:
        return graph
    return Graph([rebuilt[out] for out in graph.outputs])
