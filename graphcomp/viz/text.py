"""A plain-text tree of a graph for terminals and tests (`gc.debugprint`)."""

from __future__ import annotations

import sys

from graphcomp.viz.model import as_panels, expression_text, format_shape, geometry_text, label_lines, numbering


def describe_line(node, number):
    """`#7 matmul (4, 2) float64  [scope hidden, derivative 1]`: one node on one line."""
    title = label_lines(node)[0]
    text = f"#{number} {title} {format_shape(node.shape)} {node.dtype}"
    extras = []
    geometry = None if node.op.leaf else geometry_text(node)
    if geometry:
        extras.append(geometry)
    if node.scope:
        extras.append(f"scope {node.scope}")
    if node.derivative_order:
        extras.append(f"derivative {node.derivative_order}")
    expression = expression_text(node)
    if expression is not None:
        extras.append(f"expression {expression}")
    return _one_line(text + (f"  [{', '.join(extras)}]" if extras else ""))


def _one_line(text):
    """`text` with line breaks and other control characters shown escaped: one node, one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _tree_lines(graph, depth):
    numbers = numbering(graph)
    shown = set()
    lines = []
    for root in graph.outputs:
        # Iterative depth-first walk: (node, prefix for its line, prefix for its children, level).
        stack = [(root, "", "", 0)]
        while stack:
            node, head, tail, level = stack.pop()
            line = head + describe_line(node, numbers[node])
            if node in shown and node.inputs:
                lines.append(line + "  (see above)")
                continue
            shown.add(node)
            if depth is not None and level >= depth and node.inputs:
                lines.append(line + "  ...")
                continue
            lines.append(line)
            children = list(node.inputs)
            for position in reversed(range(len(children))):
                last = position == len(children) - 1
                stack.append((children[position], tail + ("└─ " if last else "├─ "),
                              tail + ("   " if last else "│  "), level + 1))
    return lines


def format_tree(obj, depth=None, compare=False):
    """The text `debugprint` prints: each output, then its inputs indented below it.

    A node reached a second time is printed once more with "(see above)" instead of its inputs;
    numbers (#k) are positions in topological order, as in every other export.
    """
    panels = as_panels(obj, compare)
    blocks = []
    for graph, title in zip(panels.graphs, panels.titles):
        lines = _tree_lines(graph, depth)
        blocks.append("\n".join(([f"== {title} =="] if title else []) + lines))
    return "\n\n".join(blocks) + "\n"


def debugprint(obj, file=None, depth=None, compare=False):
    """Print a graph as an indented text tree (see `format_tree`)."""
    (file or sys.stdout).write(format_tree(obj, depth=depth, compare=compare))
