"""The interactive HTML viewer: one self-contained file (no network), with pan, zoom, search,
node details (op, shape, dtype, the user's line of code, inputs, consumers) and collapsible
name scopes. The page lays the graph out itself, so it works without Graphviz."""

from __future__ import annotations

import html
import json
import re
from importlib import resources

from graphcomp.viz.model import (
    ROLE_COLORS, ROLE_TITLES, all_scopes, as_panels, node_link_data, normalize_collapse,
)

_SLOTS = re.compile(r"__(TITLE|CSS|JS|DATA)__")


def _asset(name):
    return resources.files("graphcomp.viz").joinpath("assets", name).read_text(encoding="utf-8")


def viewer_data(obj, compare=False, collapse=None, captions=None, title=None):
    """What the viewer page embeds: panels of node-link data, role styles, collapsed scopes."""
    panels = as_panels(obj, compare)
    scopes = sorted({s for g in panels.graphs for s in all_scopes(g)})
    collapsed = normalize_collapse(collapse, scopes)
    several = len(panels.graphs) > 1
    entries, previous = [], None
    for graph, panel_title in zip(panels.graphs, panels.titles):
        entries.append({"title": panel_title,
                        "graph": node_link_data(graph, previous if several else None, captions)})
        previous = graph
    if title is None:
        total = sum(len(g) for g in panels.graphs)
        title = f"{len(panels.graphs)} graphs side by side" if several else f"graph of {total} nodes"
    roles = {role: {"title": ROLE_TITLES[role], "fill": fill, "border": border}
             for role, (fill, border) in ROLE_COLORS.items()}
    return {"format": "graphcomp-viewer", "version": 1, "title": title, "roles": roles,
            "collapsed": sorted(collapsed), "panels": entries}


def _script_json(data):
    """JSON that is safe inside a <script> element (no '</script>' can appear)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def to_html(obj, compare=False, collapse=None, captions=None, title=None, legend=True):
    """A self-contained interactive HTML page showing the graph (works offline).

    compare=True shows a compiled function before and after optimisation side by side;
    collapse (True, a scope name or a list) starts with those name scopes collapsed;
    captions (a dict node -> text) adds a first line to chosen nodes' labels; legend=False
    leaves out the side panel's key of node roles (and its switches that hide a role), which
    the page shows by default. The options mean what they mean for `to_dot`, so code that
    draws through Graphviz when it is installed can fall back to this page with the same ones.
    """
    data = viewer_data(obj, compare=compare, collapse=collapse, captions=captions, title=title)
    data["legend"] = bool(legend)
    slots = {"TITLE": html.escape(f"graphcomp: {data['title']}"), "CSS": _asset("viewer.css"),
             "JS": _asset("viewer.js"), "DATA": _script_json(data)}
    return _SLOTS.sub(lambda match: slots[match.group(1)], _asset("viewer.html"))


class Viewer:
    """The interactive viewer inside a notebook cell (an iframe holding the whole page)."""

    def __init__(self, obj, height=560, **options):
        self.page = to_html(obj, **options)
        self.height = int(height)

    def _repr_html_(self):
        return (f'<iframe srcdoc="{html.escape(self.page, quote=True)}" style="width:100%;'
                f'height:{self.height}px;border:1px solid #e5e7eb;border-radius:6px" '
                'sandbox="allow-scripts"></iframe>')


def show(obj, height=560, **options):
    """The interactive viewer for a notebook cell: `gc.viz.show(loss)` (options as for to_html)."""
    return Viewer(obj, height=height, **options)
