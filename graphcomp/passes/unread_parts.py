"""Dropping the parts of a packed result nobody reads: a loop whose stacked ys (a gradient of
its sequences nobody asked for, say) are never read stops computing them.

A packed result (graphcomp/ops/packing.py) is read in one of two ways: by static slices,
(start, stop), when every size is known; by loop_part, ("part", index, ndims), when it starts
with a header of its results' dimensions. An op's `narrow` and `merge` say where each read
lands in the node they make, in either form.
"""

from __future__ import annotations

from graphcomp.ir import Graph
from graphcomp.ops.indexing import GETITEM
from graphcomp.ops.packing import LOOP_PART
from graphcomp.ops.shape import RESHAPE
from graphcomp.passes.rewrite import make_node, rewired


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


def part_read(reader, node):
    """What `reader` reads of the packed vector `node`: (start, stop) for one static slice,
    ("part", index, ndims) for a loop_part of `node` read by its own header; else None."""
    if reader.op is LOOP_PART and reader.inputs[0] is node and reader.inputs[1] is node:
        return ("part", reader.attrs["index"], reader.attrs["ndims"])
    return slice_read(reader, node)


def is_part(read):
    """True for a read by loop_part, False for a static slice."""
    return isinstance(read[0], str)


def reader_at(node, read, like):
    """A node reading `read` of the packed vector `node`, standing for the reader `like`."""
    if is_part(read):
        _, index, ndims = read
        attrs = {"index": index, "ndims": ndims, "shape": like.attrs["shape"]}
        return make_node(LOOP_PART, [node, node], attrs, like=like, name=like.name)
    start, stop = read
    if like.op is LOOP_PART:  # a part of a result that had a header, now at fixed offsets
        piece = make_node(GETITEM, [node], {"index": (("slice", start, stop, None),)}, like=like)
        return make_node(RESHAPE, [piece], {"shape": like.attrs["shape"]}, like=like, name=like.name)
    return make_node(GETITEM, [node], {"index": (("slice", start, stop, None),)}, like=like, name=like.name)


def drop_unread_parts(graph):
    """Narrow each node whose op can drop parts of its packed result (`OpDef.narrow`) to the
    parts its consumers read, and move those reads onto the narrowed node; again while
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
    rebuilt, moved = {}, {}  # old node -> new; old reader -> (narrowed node, its read there)
    for node in graph.nodes:
        if node in moved:
            rebuilt[node] = reader_at(*moved[node], like=node)
            continue
        current = rewired(node, rebuilt)
        rebuilt[node] = current
        readers = graph.consumers.get(node, [])
        if node.op.narrow is None or node in outputs or not readers:
            continue
        reads = [part_read(reader, node) for reader in readers]
        if any(read is None for read in reads):
            continue
        narrowed = node.op.narrow(current, set(reads))
        if narrowed is None:
            continue
        new_node, place = narrowed
        rebuilt[node] = new_node
        for reader, read in zip(readers, reads):
            moved[reader] = (new_node, place(read))
    if not moved:
        return graph
    return Graph([rebuilt[out] for out in graph.outputs])
