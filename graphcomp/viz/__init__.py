"""Drawing graphs: DOT, SVG/PNG through Graphviz, node-link JSON, a self-contained interactive
HTML viewer, and a plain-text tree.

Every output numbers nodes by their position in topological order, so the same graph always
gives the same bytes. Nodes are styled by role (placeholder, variable, constant, forward op,
first- and second-derivative node, fused kernel) and name scopes become clusters.

Importing this package (graphcomp/__init__.py does) gives tensors, graphs, compiled functions
and side-by-side panels their notebook picture, `_repr_svg_`: the classes themselves sit in
lower layers, which do not import viz.
"""

from graphcomp.compile import Function
from graphcomp.ir import Graph
from graphcomp.tensor import Tensor
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


def _repr_svg_(obj):
    """The picture Jupyter shows for `obj`; None (its text repr instead) without Graphviz."""
    return svg_or_none(obj)


for _drawable in (Tensor, Graph, Function, Panels):
    _drawable._repr_svg_ = _repr_svg_
