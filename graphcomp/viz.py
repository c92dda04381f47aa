"""Drawing graphs: plain Graphviz DOT text."""

from __future__ import annotations

from graphcomp.ir import Graph, Node
from graphcomp.shapes import format_shape


def as_graph(obj):
    """A Graph from a tensor, a list of tensors, a Graph or a compiled function."""
    if isinstance(obj, Graph):
        return obj
    if isinstance(obj, Node):
        return Graph.from_outputs([obj])
    if hasattr(obj, "graph") and isinstance(obj.graph, Graph):
        return obj.graph
    if isinstance(obj, (list, tuple)):
        return Graph.from_outputs(list(obj))
    raise TypeError(f"cannot draw a {type(obj).__name__}; give a tensor, a list of tensors, a Graph "
                    "or a compiled function")


def _quote_lines(*lines):
    """A DOT string literal showing `lines` one under another."""
    escaped = [str(line).replace("\\", "\\\\").replace('"', '\\"') for line in lines]
    return '"' + "\\n".join(escaped) + '"'


def node_label_lines(node):
    title = node.name if node.name else node.op.name
    if node.name and node.op.kind != "leaf":
        title = f"{node.op.name} ({node.name})"
    return title, f"{format_shape(node.shape)} {node.dtype}"


def to_dot(obj):
    """Graphviz DOT text of a tensor, list of tensors, graph or compiled function."""
    graph = as_graph(obj)
    ids = {node: f"n{position}" for position, node in enumerate(graph.nodes)}
    lines = ["digraph graphcomp {", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];']
    outputs = set(graph.outputs)
    for node in graph.nodes:
        attributes = [f"label={_quote_lines(*node_label_lines(node))}"]
        if node.op.kind == "leaf":
            attributes.append("shape=ellipse")
        if node.derivative_order:
            attributes.append('style=dashed')
        if node in outputs:
            attributes.append("peripheries=2")
        lines.append(f"  {ids[node]} [{', '.join(attributes)}];")
    for node in graph.nodes:
        for position, parent in enumerate(node.inputs):
            label = f' [label="{position}"]' if len(node.inputs) > 1 else ""
            lines.append(f"  {ids[parent]} -> {ids[node]}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg_or_none(obj):
    """SVG text through Graphviz when it is installed, else None (so Jupyter falls back)."""
    import shutil
    import subprocess

    if shutil.which("dot") is None:
        return None
    result = subprocess.run(["dot", "-Tsvg"], input=to_dot(obj), capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None
