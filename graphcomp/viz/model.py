"""What every drawing of a graph shares: numbering, roles, labels, scopes and node records.

Nodes are numbered by their position in the graph's topological order, so the same graph
gives the same text every time (no node ids or memory addresses leak into any output).
"""

from __future__ import annotations

import os
import re
from collections import Counter

import numpy as np

from graphcomp.ir import Graph, Node, topological_order
from graphcomp.loops import Body

ROLES = ("placeholder", "variable", "constant", "forward", "first_derivative",
         "second_derivative", "fused")

ROLE_TITLES = {
    "placeholder": "placeholder (input)",
    "variable": "variable (parameter)",
    "constant": "constant",
    "forward": "forward op",
    "first_derivative": "first-derivative node",
    "second_derivative": "second (or higher) derivative node",
    "fused": "fused kernel",
}

# (fill, border) per role; the border style also encodes the derivative order, so the
# drawing does not depend on telling colours apart.
ROLE_COLORS = {
    "placeholder": ("#dbeafe", "#1d4ed8"),
    "variable": ("#dcfce7", "#15803d"),
    "constant": ("#f3f4f6", "#6b7280"),
    "forward": ("#ffffff", "#374151"),
    "first_derivative": ("#ffedd5", "#c2410c"),
    "second_derivative": ("#f3e8ff", "#7e22ce"),
    "fused": ("#fef9c3", "#a16207"),
}

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
SMALL_CONSTANT = 6  # constants with at most this many elements show their value


def as_graph(obj):
    """A Graph from a tensor, a list of tensors, a Graph or a compiled function."""
    if isinstance(obj, Graph):
        return obj
    if isinstance(obj, Node):
        return Graph.from_outputs([obj])
    if isinstance(getattr(obj, "graph", None), Graph):
        return obj.graph
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(item, Node) for item in obj):
        return Graph.from_outputs(list(obj))
    raise TypeError(f"cannot draw a {type(obj).__name__}; give a tensor, a list of tensors, a Graph "
                    "or a compiled function")


class Panels:
    """Several graphs drawn side by side (e.g. before and after optimisation)."""

    def __init__(self, graphs, titles):
        self.graphs = [as_graph(g) for g in graphs]
        self.titles = list(titles)
        if len(self.titles) != len(self.graphs):
            raise ValueError(f"side_by_side: {len(self.graphs)} graphs but {len(self.titles)} titles")

    def __repr__(self):
        sizes = ", ".join(f"{title!r}: {len(g)} nodes" for title, g in zip(self.titles, self.graphs))
        return f"<Panels {sizes}>"


def side_by_side(*objs, titles=None):
    """Graphs drawn next to each other; nodes new in a panel (not in the one before) are marked."""
    if not objs:
        raise ValueError("side_by_side needs at least one graph")
    if titles is None:
        titles = [f"graph {i + 1}" for i in range(len(objs))]
    return Panels(objs, titles)


def before_and_after(function):
    """A compiled function's graph before and after optimisation, as two panels."""
    if not hasattr(function, "unoptimized_graph"):
        raise TypeError(f"compare=True needs a compiled function (gc.function), got {type(function).__name__}")
    before, after = function.unoptimized_graph, function.graph
    return Panels([before, after], [f"before optimisation ({len(before)} nodes)",
                                    f"after optimisation ({len(after)} nodes)"])


def as_panels(obj, compare=False):
    """Any drawable object as Panels (one panel unless it already has several)."""
    if isinstance(obj, Panels):
        return obj
    if compare:
        return before_and_after(obj)
    return Panels([as_graph(obj)], [""])


# node facts ---------------------------------------------------------------------------------

def node_role(node):
    """One of ROLES: what the node is, for styling."""
    name = node.op.name
    if node.op.leaf:
        return name
    if node.op.members:  # a record standing for several nodes: a fused kernel
        return "fused"
    if node.derivative_order >= 2:
        return "second_derivative"
    if node.derivative_order == 1:
        return "first_derivative"
    return "forward"


def clean_text(value):
    """`str(value)` without memory addresses (so output is reproducible)."""
    return _ADDRESS.sub("", str(value))


def format_shape(shape):
    """`(None, 3)` as `(?, 3)`."""
    inner = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def format_attr(value, key=None):
    """A short reproducible text for an op attribute."""
    if isinstance(value, np.dtype):
        return str(value)
    if key == "dtype" and isinstance(value, str):
        try:
            return np.dtype(value).name  # dtypes are stored as '<f8'; show 'float64'
        except TypeError:
            return value
    if isinstance(value, (bool, int, float, str, tuple, list, type(None))):
        return repr(value) if not isinstance(value, str) else value
    if callable(value) and not hasattr(value, "free_symbols"):
        return getattr(value, "__name__", type(value).__name__)
    return clean_text(value)


def display_attrs(node):
    """The node's attributes as text, except the fused expression (shown on its own)."""
    return {key: format_attr(value, key) for key, value in sorted(node.attrs.items()) if key != "expression"}


def bodies_of(node):
    """The body graphs a loop or branch node holds (a scan's body, a while_loop's cond and
    body, a switch's branches), in attribute order; [] for any other node."""
    return [item for _, value in sorted(node.attrs.items())
            for item in (value if isinstance(value, tuple) else (value,)) if isinstance(item, Body)]


def body_graph(body):
    """A body as a Graph: its inputs (placeholders) and everything its outputs compute."""
    return Graph(body.outputs, topological_order(list(body.inputs) + list(body.outputs)))


def expression_text(node):
    """A fused kernel's expression as text, or None."""
    expression = node.attrs.get("expression")
    return None if expression is None else clean_text(expression)


def constant_value_text(node):
    """A small constant's value as text (None for large ones and non-constants)."""
    if not (node.op.leaf and isinstance(node.payload, np.ndarray)):
        return None
    array = node.payload
    if array.size > SMALL_CONSTANT:
        return None
    if array.ndim == 0:
        return repr(array.item())
    return np.array2string(array, separator=", ", precision=6)


def fused_members(node):
    """For a fused kernel whose op records the nodes it replaced: one line per node (op and where
    it was built); None otherwise."""
    members = getattr(node.op, "members", None)
    if not members or not all(isinstance(m, Node) for m in members):
        return None
    return [m.op.name + (f" at {source_short(m)}" if m.source is not None else "") for m in members]


def source_record(node):
    """Where user code built the node, as a dict (None when unknown)."""
    source = node.source
    if source is None:
        return None
    return {"file": source.filename, "line": source.lineno, "function": source.function,
            "code": source.code}


def source_short(node):
    """`file.py:12` for labels and tooltips."""
    source = node.source
    if source is None:
        return ""
    return f"{os.path.basename(source.filename)}:{source.lineno}"


def _shorten(text, limit):
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _per_axis_text(values):
    """(2, 2) -> '2'; (3, 1) -> '3x1'."""
    values = ["?" if v is None else str(v) for v in values]
    return values[0] if len(set(values)) == 1 else "x".join(values)


def geometry_text(node):
    """'kernel 3x3, stride 2, padding 1' for a convolution or pooling node (None for any other):
    the kernel (from the attributes or the filter's shape), stride and padding, then dilation,
    groups and output padding where they are not the defaults."""
    if "stride" not in (node.op.attrs or ()):  # the records of convolutions and pools declare one
        return None
    attrs = node.attrs
    kernel = attrs.get("kernel")
    if kernel is None and len(node.inputs) > 1:
        kernel = node.inputs[1].shape[2:]
    parts = [] if kernel is None else ["kernel " + "x".join("?" if k is None else str(k) for k in kernel)]
    if "stride" in attrs:
        parts.append("stride " + _per_axis_text(attrs["stride"]))
    if "padding" in attrs:
        pads = attrs["padding"]
        if all(before == after for before, after in pads):
            parts.append("padding " + _per_axis_text(before for before, _ in pads))
        else:
            parts.append("padding " + "x".join(f"{before}/{after}" for before, after in pads))
    if any(d != 1 for d in attrs.get("dilation", ())):
        parts.append("dilation " + _per_axis_text(attrs["dilation"]))
    if attrs.get("groups", 1) != 1:
        parts.append(f"groups {attrs['groups']}")
    if any(attrs.get("output_padding", ())):
        parts.append("output padding " + _per_axis_text(attrs["output_padding"]))
    return ", ".join(parts)


def label_lines(node, caption=None):
    """The lines drawn in a node's box: [a caption], what it is, [its expression], shape, dtype."""
    op = node.op.name
    value = constant_value_text(node)
    if node.op.leaf:
        title = node.name or (value if value is not None else op)
        if node.name and value is not None:
            title = f"{node.name} = {value}"
        kind = op
    elif geometry_text(node) is not None:  # a convolution or pooling: its geometry on a line of its own
        title = f"{node.name}: {op}" if node.name else op
        kind = None
    else:
        # Attributes left at False/None (keepdims=False, ...) are defaults: the label skips them.
        attrs = {k: v for k, v in display_attrs(node).items() if node.attrs[k] is not False and node.attrs[k] is not None}
        arguments = ", ".join(f"{k}={_shorten(v, 16)}" for k, v in attrs.items())
        title = f"{op}({arguments})" if arguments else op
        if node.name:
            title = f"{node.name}: {title}"
        kind = None
    lines = ([_shorten(caption, 48)] if caption else []) + [_shorten(title, 48)]
    geometry = None if node.op.leaf else geometry_text(node)
    if geometry:
        lines.append(geometry)
    expression = expression_text(node)
    if expression is not None:
        lines.append(_shorten(expression, 48))
    described = f"{format_shape(node.shape)} {node.dtype}"
    lines.append(f"{kind} {described}" if kind and (node.name or value is not None) else described)
    return lines


# numbered graphs ----------------------------------------------------------------------------

def numbering(graph):
    """node -> its position in the graph's topological order."""
    return {node: position for position, node in enumerate(graph.nodes)}


def node_record(node, number, is_output, is_new=None, caption=None):
    """Everything known about one node, as JSON-ready data."""
    record = {
        "caption": caption,
        "id": number,
        "op": node.op.name,
        "name": node.name,
        "shape": list(node.shape),
        "dtype": str(node.dtype),
        "role": node_role(node),
        "derivative_order": node.derivative_order,
        "scope": node.scope,
        "label": label_lines(node, caption),
        "attrs": display_attrs(node),
        "expression": expression_text(node),
        "geometry": geometry_text(node),
        "fused_members": fused_members(node),
        "value": constant_value_text(node),
        "output": is_output,
        "source": source_record(node),
    }
    if is_new is not None:
        record["new"] = is_new
    bodies = bodies_of(node)
    if bodies:  # a loop or branch: its body graphs, nested (each numbered on its own)
        record["bodies"] = [{"label": body.label, "inputs": len(body.inputs), "outputs": len(body.outputs),
                             "graph": node_link_data(body_graph(body))} for body in bodies]
    return record


def _carry_key(node):
    """What identifies a node across a rewrite that rebuilt it on new inputs: op, attributes,
    shape, dtype, the line that built it, scope, derivative order and number of inputs."""
    if node.op.leaf and isinstance(node.payload, np.ndarray):  # a constant: identified by its value
        array = node.payload
        return ("constant", str(array.dtype), array.shape, array.tobytes())
    source = (node.source.filename, node.source.lineno) if node.source is not None else None
    attrs = tuple((k, clean_text(v)) for k, v in sorted(node.attrs.items()))
    return (node.op.name, attrs, node.shape, str(node.dtype), source, node.scope,
            node.derivative_order, len(node.inputs))


def new_nodes(graph, previous):
    """The nodes of `graph` a pass really created: not in `previous`, and not a copy of one of its
    nodes that was merely rebuilt on top of new inputs (same op, attributes and origin)."""
    unclaimed = Counter(_carry_key(node) for node in previous.nodes)
    earlier = set(previous.nodes)
    for node in graph.nodes:
        if node in earlier:
            unclaimed[_carry_key(node)] -= 1
    created = set()
    for node in graph.nodes:
        if node in earlier:
            continue
        key = _carry_key(node)
        if unclaimed[key] > 0:
            unclaimed[key] -= 1
        else:
            created.add(node)
    return created


def normalize_captions(captions):
    """`captions` (a dict node -> text, or None) checked and with text values."""
    if captions is None:
        return {}
    if not isinstance(captions, dict):
        raise TypeError(f"captions must be a dict from tensors to text, got {type(captions).__name__}")
    return {node: str(text) for node, text in captions.items()}


def node_link_data(graph, previous=None, captions=None):
    """The graph as node-link data (networkx's format; a multigraph, since `x * x` reads x twice).

    With `previous` (the graph drawn before this one), nodes not in it are marked "new";
    `captions` (node -> text) adds a first line to chosen nodes' labels (e.g. "dJ/dW").
    """
    captions = normalize_captions(captions)
    numbers = numbering(graph)
    outputs = set(graph.outputs)
    changed = new_nodes(graph, previous) if previous is not None else None
    nodes = [node_record(node, numbers[node], node in outputs,
                         None if changed is None else node in changed, captions.get(node))
             for node in graph.nodes]
    links = [{"source": numbers[parent], "target": numbers[node], "key": position}
             for node in graph.nodes for position, parent in enumerate(node.inputs)]
    return {
        "directed": True,
        "multigraph": True,
        "graph": {"outputs": [numbers[out] for out in graph.outputs], "node_count": len(graph.nodes)},
        "nodes": nodes,
        "links": links,
    }


def role_counts(graph):
    """How many nodes of each role the graph has (only roles present)."""
    counts = {}
    for node in graph.nodes:
        role = node_role(node)
        counts[role] = counts.get(role, 0) + 1
    return {role: counts[role] for role in ROLES if role in counts}


# scopes -------------------------------------------------------------------------------------

def scope_prefixes(scope):
    """'a/b/c' -> ['a', 'a/b', 'a/b/c']."""
    if not scope:
        return []
    parts = scope.split("/")
    return ["/".join(parts[:i + 1]) for i in range(len(parts))]


def all_scopes(graph):
    """Every scope and enclosing scope used in the graph, sorted."""
    found = set()
    for node in graph.nodes:
        found.update(scope_prefixes(node.scope))
    return sorted(found)


def collapsed_scope_of(node, collapsed):
    """The outermost collapsed scope that holds `node`, or None."""
    for prefix in scope_prefixes(node.scope):
        if prefix in collapsed:
            return prefix
    return None


def normalize_collapse(collapse, scopes):
    """`collapse` (True for every top-level scope, a scope name or a list of them) as a set of
    scope paths, checked against `scopes` (the scopes the drawing has)."""
    if collapse is None or collapse is False:
        return set()
    if collapse is True:
        return {s for s in scopes if "/" not in s}
    names = [collapse] if isinstance(collapse, str) else list(collapse)
    for name in names:
        if name not in scopes:
            raise ValueError(f"collapse: no name scope {name!r} in this graph; its scopes are {sorted(scopes)}")
    return set(names)
