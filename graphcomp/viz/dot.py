"""Graphviz DOT text: nodes styled by role, name scopes as clusters (or collapsed into one box),
several graphs side by side, chosen nodes highlighted."""

from __future__ import annotations

from graphcomp.viz.model import (
    ROLE_COLORS, ROLE_TITLES, ROLES, all_scopes, as_panels, bodies_of, body_graph, collapsed_scope_of, format_shape,
    new_nodes, node_role, normalize_captions, normalize_collapse, numbering, scope_prefixes, source_short, label_lines,
)

DEFAULT_HIGHLIGHT = "#dc2626"
_EDGE_COLOR = "#4b5563"
_SHAPES = {"placeholder": "ellipse", "variable": "cylinder", "constant": "box", "fused": "box3d"}


def quote(text):
    """A DOT string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html_escape(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attributes(pairs):
    return "[" + ", ".join(f"{key}={value}" for key, value in pairs) + "]"


def normalize_highlight(highlight):
    """`highlight` (nodes, or a dict node -> colour) as a dict node -> colour."""
    if highlight is None:
        return {}
    if isinstance(highlight, dict):
        return dict(highlight)
    if hasattr(highlight, "op") and hasattr(highlight, "inputs"):
        return {highlight: DEFAULT_HIGHLIGHT}
    return {node: DEFAULT_HIGHLIGHT for node in highlight}


def _node_style(node, is_output, is_new, color, caption):
    role = node_role(node)
    fill, border = ROLE_COLORS[role]
    styles = ["filled"]
    if role not in ("placeholder", "variable"):
        styles.append("rounded")
    if node.derivative_order == 1:
        styles.append("dashed")
    elif node.derivative_order >= 2:
        styles.append("dotted")
    lines = label_lines(node, caption)
    if is_new:
        lines[0] += "  [new]"
    pairs = [("label", quote("\n".join(lines))), ("shape", _SHAPES.get(role, "box")),
             ("style", quote(",".join(styles))), ("fillcolor", quote(fill)),
             ("color", quote(color or border))]
    if color or node.derivative_order >= 2:
        pairs.append(("penwidth", "3" if color else "2"))
    if is_output:
        pairs.append(("peripheries", "2"))
    return pairs


def _tooltip(node, number):
    where = source_short(node)
    text = f"#{number} {node.op.name} {format_shape(node.shape)} {node.dtype}"
    if where:
        code = node.source.code
        text += f"\nbuilt at {where}" + (f": {code}" if code else "")
    return quote(text)


class _PanelWriter:
    """The DOT statements of one graph, grouped by name scope."""

    def __init__(self, graph, prefix, collapsed, highlight, previous, captions):
        self.captions = captions
        self.graph = graph
        self.prefix = prefix
        self.collapsed = collapsed
        self.highlight = highlight
        self.changed = new_nodes(graph, previous) if previous is not None else set()
        self.numbers = numbering(graph)
        self.by_scope = {}          # scope -> statements drawn inside its cluster
        self.box_ids = {}           # collapsed scope -> id of its box

    def box_of(self, node):
        scope = collapsed_scope_of(node, self.collapsed)
        if scope is None:
            return f"{self.prefix}n{self.numbers[node]}"
        return self.box_ids[scope]

    def write(self):
        members = {}
        for node in self.graph.nodes:
            scope = collapsed_scope_of(node, self.collapsed)
            if scope is not None:
                members.setdefault(scope, []).append(node)
        for index, scope in enumerate(sorted(members)):
            self.box_ids[scope] = f"{self.prefix}scope{index}"
            self._add_scope_box(scope, members[scope])
        outputs = set(self.graph.outputs)
        for node in self.graph.nodes:
            if collapsed_scope_of(node, self.collapsed) is None:
                self._add_node(node, node in outputs)
        edges = self._edges()
        return self._emit_clusters(""), edges

    def _add_scope_box(self, scope, nodes):
        parent = scope.rpartition("/")[0]
        roles = sorted({node_role(n) for n in nodes}, key=ROLES.index)
        label = f"{scope.rpartition('/')[2]}\n({len(nodes)} nodes, collapsed)"
        pairs = [("label", quote(label)), ("shape", "folder"), ("style", '"filled,bold"'),
                 ("fillcolor", quote("#e5e7eb")), ("color", quote(ROLE_COLORS[roles[-1]][1])),
                 ("tooltip", quote(f"name scope {scope}: {len(nodes)} nodes"))]
        self.by_scope.setdefault(parent, []).append(f"{self.box_ids[scope]} {_attributes(pairs)};")

    def _add_node(self, node, is_output):
        number = self.numbers[node]
        is_new = node in self.changed
        pairs = _node_style(node, is_output, is_new, self.highlight.get(node), self.captions.get(node))
        pairs.append(("tooltip", _tooltip(node, number)))
        self.by_scope.setdefault(node.scope, []).append(f"{self.prefix}n{number} {_attributes(pairs)};")
        for k, body in enumerate(bodies_of(node)):
            self.by_scope[node.scope].extend(self._body_cluster(node, f"{self.prefix}n{number}b{k}_", body))

    def _body_cluster(self, node, prefix, body):
        """A loop's or branch's body graph as a cluster of its own (bodies inside it nested
        again), tied to the node that runs it by a dotted edge."""
        graph = body_graph(body)
        statements, edges = _PanelWriter(graph, prefix, set(), {}, None, {}).write()
        cluster = f"cluster_{prefix}body"
        lines = [f"subgraph {quote(cluster)} {{",
                 f"  label={quote(body.label)}; style=\"rounded,filled\"; fillcolor=\"#f8fafc\"; "
                 f"color=\"#6366f1\"; fontcolor=\"#3730a3\";"]
        lines += ["  " + line for line in statements] + ["  " + edge for edge in edges] + ["}"]
        if not graph.nodes:
            return lines
        anchor = f"{prefix}n{len(graph.nodes) - 1}"  # the body's last node: an output
        lines.append(f"{self.prefix}n{self.numbers[node]} -> {anchor} [style=dotted, arrowhead=odot, "
                     f"color=\"#6366f1\", lhead={quote(cluster)}, constraint=false];")
        return lines

    def _edges(self):
        lines, seen = [], set()
        for node in self.graph.nodes:
            target = self.box_of(node)
            role = node_role(node)
            color = ROLE_COLORS[role][1] if role.endswith("derivative") else _EDGE_COLOR
            for position, parent in enumerate(node.inputs):
                source = self.box_of(parent)
                if source == target:
                    continue
                collapsed_end = not (source.startswith(f"{self.prefix}n") and target.startswith(f"{self.prefix}n"))
                if collapsed_end:
                    if (source, target) in seen:
                        continue
                    seen.add((source, target))
                pairs = [("color", quote(color))]
                if len(node.inputs) > 1 and not collapsed_end:
                    pairs.append(("label", quote(position)))
                lines.append(f"{source} -> {target} {_attributes(pairs)};")
        return lines

    def _emit_clusters(self, scope, depth=0):
        """Statements of `scope`, then one nested cluster per child scope."""
        indent = "  " * (depth + 1)
        out = [indent + line for line in self.by_scope.get(scope, [])]
        children = sorted({prefix for key in self.by_scope for prefix in scope_prefixes(key)
                           if prefix.rpartition("/")[0] == scope})
        for child in children:
            if child in self.collapsed:
                continue
            cluster = f"cluster_{self.prefix}{child.replace('/', '__')}"
            out.append(f"{indent}subgraph {quote(cluster)} {{")
            out.append(f"{indent}  label={quote(child.rpartition('/')[2])}; style=\"rounded,dashed\"; "
                       f"color=\"#9ca3af\"; fontcolor=\"#374151\";")
            out.extend(self._emit_clusters(child, depth + 1))
            out.append(f"{indent}}}")
        return out


def _legend(panels):
    present = {node_role(n) for g in panels.graphs for n in g.nodes}
    rows = []
    for role in ROLES:
        if role in present:
            fill, border = ROLE_COLORS[role]
            rows.append(f'<tr><td bgcolor="{fill}" color="{border}" border="1" width="18"></td>'
                        f'<td align="left">{_html_escape(ROLE_TITLES[role])}</td></tr>')
    return (f'  legend [shape=plaintext, fontsize=9, label=<<table border="0" cellspacing="2">'
            f'{"".join(rows)}</table>>];')


def to_dot(obj, compare=False, collapse=None, highlight=None, legend=False, captions=None):
    """Graphviz DOT text of a tensor, list of tensors, graph or compiled function.

    compare=True draws a compiled function before and after optimisation side by side;
    collapse (True, a scope name or a list) draws those name scopes as one box each;
    highlight (nodes, or a dict node -> colour) outlines chosen nodes; legend adds a key;
    captions (a dict node -> text) adds a first line to chosen nodes, e.g. {dW: "dJ/dW"}.
    """
    captions = normalize_captions(captions)
    panels = as_panels(obj, compare)
    scopes = sorted({s for g in panels.graphs for s in all_scopes(g)})
    collapsed = normalize_collapse(collapse, scopes)
    colors = normalize_highlight(highlight)
    lines = ["digraph graphcomp {",
             '  graph [rankdir=TB, newrank=true, compound=true, nodesep=0.25, ranksep=0.35, fontname="Helvetica", fontsize=11];',
             '  node [fontname="Helvetica", fontsize=10, margin="0.12,0.04", height=0.3];',
             '  edge [arrowsize=0.6, fontname="Helvetica", fontsize=8, fontcolor="#6b7280"];']
    several = len(panels.graphs) > 1
    previous = None
    for index, (graph, title) in enumerate(zip(panels.graphs, panels.titles)):
        prefix = f"p{index}_" if several else ""
        statements, edges = _PanelWriter(graph, prefix, collapsed, colors, previous if several else None,
                                        captions).write()
        if several:
            lines.append(f"  subgraph cluster_panel{index} {{")
            lines.append(f"    label={quote(title)}; style=solid; color=\"#d1d5db\"; fontsize=13;")
            lines.extend("  " + line for line in statements)
            lines.extend("    " + edge for edge in edges)
            lines.append("  }")
        else:
            lines.extend(statements)
            lines.extend("  " + edge for edge in edges)
        previous = graph
    if legend:
        lines.append(_legend(panels))
    lines.append("}")
    return "\n".join(lines) + "\n"
