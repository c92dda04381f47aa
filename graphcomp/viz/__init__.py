"""Drawing graphs: DOT, SVG/PNG through Graphviz, node-link JSON, a self-contained interactive
HTML viewer, and a plain-text tree.

Every output numbers nodes by their position in topological order, so the same graph always
gives the same bytes. Nodes are styled by role (placeholder, variable, constant, forward op,
first- and second-derivative node, fused kernel) and name scopes become clusters.
"""

from graphcomp.viz.dot import to_dot
from graphcomp.viz.export import FORMATS, export, to_json
from graphcomp.viz.html import Viewer, show, to_html, viewer_data
from graphcomp.viz.model import (
    ROLES, Panels, as_graph, before_and_after, node_link_data, node_role, side_by_side,
)
from graphcomp.viz.render import (
    GraphvizNotFoundError, graphviz_available, render, svg_or_none,
)
from graphcomp.viz.text import debugprint, format_tree
