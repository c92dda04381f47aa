"""Merging sibling loops: two nodes of an op that can share one node (`OpDef.merge`) reading the
same inputs become one. A scan's vjp runs the forward steps again to record what the reverse
pass reads; merged with the scan that computed the value, the steps run once."""

from __future__ import annotations

from graphcomp.ir import Graph, substitute
from graphcomp.passes.unread_parts import is_part, part_read, reader_at


def _readers(node, graph, outputs):
    """[(reader, read or None)]: the nodes reading `node`, with what each reads of it
    (unread_parts.part_read; None: the whole vector); None when the node cannot merge (its op
    cannot, or it is an output)."""
    if node.op.merge is None or node in outputs:
        return None
    return [(reader, part_read(reader, node)) for reader in graph.consumers.get(node, [])]


def _merged(graph, a, reads_a, b, reads_b):
    """`graph` with nodes `a` and `b` merged into one, or None when their op cannot merge them."""
    merged = a.op.merge(a, b)
    if merged is None:
        return None
    new_node, place_a, place_b = merged
    replacements = {}
    for old, reads, place in ((a, reads_a, place_a), (b, reads_b, place_b)):
        for reader, read in reads:
            if read is None and old.shape[0] is None:
                return None  # the whole of a vector with a header: no slice of the merged one is it
            where = place(read if read is not None else (0, old.shape[0]))
            if where is None or (read is None and is_part(where)):
                return None
            if read is not None:  # a read moves onto the merged node
                replacements[reader] = reader_at(new_node, where, like=reader)
            elif old not in replacements:  # a reader of the whole reads its part of the merged node
                replacements[old] = reader_at(new_node, where, like=old)
    return Graph(substitute(graph.outputs, replacements))


def _merge_one_pair(graph):
    """`graph` with one pair of sibling nodes merged, or None when no pair merges."""
    outputs = set(graph.outputs)
    seen = {}  # (op, inputs) -> the earlier nodes that might merge, with their readers
    for node in graph.nodes:
        reads = _readers(node, graph, outputs)
        if reads is None or len(node.shape) != 1:
            continue
        key = (node.op, tuple(parent.id for parent in node.inputs))
        for earlier, earlier_reads in seen.get(key, []):
            merged = _merged(graph, earlier, earlier_reads, node, reads)
            if merged is not None:
                return merged
        seen.setdefault(key, []).append((node, reads))
    return None


def merge_siblings(graph):
    """Merge, pair by pair, the nodes whose op can merge them and that read the same inputs."""
    while True:
        merged = _merge_one_pair(graph)
        if merged is None:
            return graph
        graph = merged
