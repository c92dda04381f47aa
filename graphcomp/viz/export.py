"""`gc.export(obj, path)`: write a graph to a file, the format chosen by the file's suffix."""

from __future__ import annotations

import json
import os

from graphcomp.onnx_export import to_onnx
from graphcomp.viz.dot import to_dot
from graphcomp.viz.html import to_html
from graphcomp.viz.model import as_panels, node_link_data
from graphcomp.viz.render import GRAPHVIZ_FORMATS, render

FORMATS = (".dot", ".gv", ".json", ".html", ".htm", ".onnx") + tuple("." + f for f in GRAPHVIZ_FORMATS)


def to_json(obj, compare=False, captions=None):
    """Node-link JSON text (networkx's format): op, shape, dtype, role and source line per node.

    Several panels (compare=True) give {"panels": [{"title": ..., "graph": ...}, ...]}.
    """
    panels = as_panels(obj, compare)
    if len(panels.graphs) == 1:
        data = node_link_data(panels.graphs[0], captions=captions)
    else:
        entries, previous = [], None
        for graph, title in zip(panels.graphs, panels.titles):
            entries.append({"title": title, "graph": node_link_data(graph, previous, captions)})
            previous = graph
        data = {"panels": entries}
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def export(obj, path, compare=False, collapse=None, captions=None, **options):
    """Write `obj` (tensor, list of tensors, graph or compiled function) to `path`.

    The suffix picks the format: .dot, .json, .html (interactive, self-contained), through
    Graphviz .svg, .png, .pdf, and .onnx (an ONNX model, through graphcomp.onnx_export.to_onnx,
    whose options it passes on; needs `pip install "graphcomp[onnx]"`). Returns the path written.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"export: cannot tell the format of {path!r} from its suffix {suffix!r}; "
                         f"use one of {', '.join(FORMATS)}")
    if suffix in (".dot", ".gv"):
        content = to_dot(obj, compare=compare, collapse=collapse, captions=captions, **options).encode("utf-8")
    elif suffix == ".json":
        if collapse:
            raise ValueError("export: collapse applies to drawings, not to .json")
        content = to_json(obj, compare=compare, captions=captions).encode("utf-8")
    elif suffix == ".onnx":
        if compare or collapse or captions:
            raise ValueError("export: compare, collapse and captions apply to drawings, not to .onnx")
        content = to_onnx(obj, **options).SerializeToString()
    elif suffix in (".html", ".htm"):
        content = to_html(obj, compare=compare, collapse=collapse, captions=captions, **options).encode("utf-8")
    else:
        content = render(obj, suffix[1:], compare=compare, collapse=collapse, captions=captions, **options)
    with open(path, "wb") as handle:
        handle.write(content)
    return path
