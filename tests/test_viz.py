"""Graph export: DOT, JSON, HTML, SVG/PNG, the text tree, and notebook pictures."""

from __future__ import annotations

import inspect
import json
import re

import networkx as nx
import numpy as np
import pytest
import sympy

import graphcomp as gc
from graphcomp import viz
from graphcomp.registry import OpDef
from graphcomp.tensor import Tensor

from tool_requirements import require_graphviz


def line_here():
    """The line number of the caller (to check recorded source lines)."""
    return inspect.currentframe().f_back.f_lineno


def small_network():
    """A two-layer network in name scopes, its cost and the cost's gradients."""
    x = gc.placeholder((None, 2), name="x")
    with gc.name_scope("layer1"):
        W = gc.variable(np.ones((2, 3)), name="W")
        with gc.name_scope("act"):
            h = gc.tanh(x @ W)
    with gc.name_scope("layer2"):
        v = gc.variable(np.ones(3), name="v")
        y = h @ v
    cost = (y * y).mean()
    return x, [W, v], cost, gc.grad(cost, [W, v])


def fused_node(a, b):
    """A node shaped like a fused elementwise kernel (a record standing for several nodes, with
    its expression as an attribute)."""
    op = OpDef("fused_elementwise", impl=lambda *arrays, expression: None, infer=None, kind="fused",
               members=(a, b))
    return Tensor(op, (a, b), {"expression": sympy.sympify("x0*x1 + exp(x0)")}, a.shape, a.dtype)


# determinism --------------------------------------------------------------------------------

def test_same_graph_gives_identical_bytes_in_every_format():
    first = small_network()
    second = small_network()  # built later: different node ids, same structure
    for render in (viz.to_dot, viz.to_json, viz.to_html, viz.format_tree):
        a = render([first[2], *first[3]])
        b = render([second[2], *second[3]])
        assert a == b, render.__name__
        assert a == render([first[2], *first[3]])
        assert not re.search(r"0x[0-9a-f]{6,}", a), f"memory address in {render.__name__}"


def test_nodes_are_numbered_by_topological_position():
    x = gc.placeholder((3,), name="x")
    y = gc.exp(x) + 1.0
    data = viz.node_link_data(gc.Graph.from_outputs(y))
    ops = [node["op"] for node in data["nodes"]]
    assert ops == ["placeholder", "exp", "constant", "add"]
    assert [node["id"] for node in data["nodes"]] == [0, 1, 2, 3]
    assert {(link["source"], link["target"]) for link in data["links"]} == {(0, 1), (1, 3), (2, 3)}


# roles and styles ---------------------------------------------------------------------------

def test_roles_cover_leaves_forward_derivatives_and_fused_kernels():
    x = gc.placeholder((3,), name="x")
    w = gc.variable(np.ones(3), name="w")
    cost = (gc.sin(x * w)).sum()
    (dw,) = gc.grad(cost, [w])
    (hv,) = gc.hvp(cost, [w], [np.ones(3)])
    fused = fused_node(x, w)
    graph = gc.Graph.from_outputs([cost, dw, hv, fused])
    roles = {node: viz.node_role(node) for node in graph.nodes}
    assert roles[x] == "placeholder" and roles[w] == "variable" and roles[cost.inputs[0]] == "forward"
    assert roles[dw] == "first_derivative"
    assert roles[hv] == "second_derivative"
    assert roles[fused] == "fused"
    assert set(roles.values()) == set(viz.ROLES)
    dot = viz.to_dot([cost, dw, hv, fused])
    assert re.search(r'label="x\\nplaceholder \(3,\) float64", shape=ellipse', dot)
    assert "shape=cylinder" in dot                       # the variable
    assert 'style="filled,rounded,dashed"' in dot        # first-derivative nodes
    assert 'style="filled,rounded,dotted"' in dot        # second-derivative nodes
    assert "x0*x1 + exp(x0)" in dot and "shape=box3d" in dot


def test_fused_expression_is_in_json_html_and_text():
    x = gc.placeholder((3,), name="x")
    y = gc.placeholder((3,), name="y")
    fused = fused_node(x, y)
    record = viz.node_link_data(gc.Graph.from_outputs(fused))["nodes"][-1]
    assert record["role"] == "fused" and record["expression"] == "x0*x1 + exp(x0)"
    assert "expression" not in record["attrs"]
    assert "x0*x1 + exp(x0)" in viz.format_tree(fused)
    assert "x0*x1 + exp(x0)" in viz.to_html(fused)


def test_labels_show_op_attributes_shape_dtype_and_small_constant_values():
    x = gc.placeholder((None, 4), dtype="float32", name="x")
    s = gc.sum(x * 2.0, axis=1, keepdims=True)
    lines = {tuple(r["label"]) for r in viz.node_link_data(gc.Graph.from_outputs(s))["nodes"]}
    assert ("sum(axis=(1,), keepdims=True)", "(?, 1) float32") in lines
    assert ("2.0", "constant () float32") in lines
    assert ("x", "placeholder (?, 4) float32") in lines


def test_captions_label_chosen_nodes():
    x, params, cost, grads = small_network()
    dot = viz.to_dot([cost, *grads], captions={grads[0]: "dJ/dW"})
    assert dot.count("dJ/dW") == 1
    record = [n for n in viz.node_link_data(gc.Graph.from_outputs([cost, *grads]),
                                            captions={grads[0]: "dJ/dW"})["nodes"] if n["caption"]]
    assert len(record) == 1 and record[0]["label"][0] == "dJ/dW"


def test_highlight_outlines_only_the_chosen_nodes():
    x = gc.placeholder((2,), name="x")
    y = gc.exp(x)
    z = gc.log(y)
    dot = viz.to_dot(z, highlight={y: "#00ff00"})
    highlighted = [line for line in dot.splitlines() if "#00ff00" in line]
    assert len(highlighted) == 1 and highlighted[0].strip().startswith("n1 ")
    assert viz.to_dot(z, highlight=[y, z]).count("penwidth=3") == 2


# scopes -------------------------------------------------------------------------------------

def test_name_scopes_become_nested_clusters():
    x, params, cost, grads = small_network()
    dot = viz.to_dot(cost)
    assert 'subgraph "cluster_layer1" {' in dot and 'subgraph "cluster_layer2" {' in dot
    layer1 = dot.index('subgraph "cluster_layer1"')
    nested = dot.index('subgraph "cluster_layer1__act"')
    closing_of_layer1 = dot.index("\n  }", layer1)
    assert layer1 < nested < closing_of_layer1, "act must be drawn inside layer1"


def test_collapsing_a_scope_draws_one_box_with_deduplicated_edges():
    x, params, cost, grads = small_network()
    outputs = [cost, *grads]
    graph = gc.Graph.from_outputs(outputs)
    dot = viz.to_dot(outputs, collapse="layer1")
    members = [n for n in graph.nodes if n.scope.startswith("layer1")]
    numbers = {node: i for i, node in enumerate(graph.nodes)}
    for node in members:
        assert not re.search(rf"\bn{numbers[node]}\b", dot), "a collapsed member is still drawn"
    assert len(re.findall(r"^\s*scope0 \[label", dot, re.M)) == 1
    assert f"({len(members)} nodes, collapsed)" in dot
    edges = re.findall(r"^\s*(\S+) -> (\S+) ", dot, re.M)
    box_edges = [e for e in edges if "scope0" in e]
    assert box_edges and len(box_edges) == len(set(box_edges)), "edges to the box are not deduplicated"
    assert not any(a == b for a, b in edges), "an edge inside the collapsed scope survived"
    # x feeds layer1 and the gradient of W reads layer1's nodes: both connect to the box
    assert ("n0", "scope0") in edges
    assert viz.to_dot(outputs, collapse=True).count("collapsed)") == 2


def test_collapsing_an_unknown_scope_names_the_known_ones():
    x, params, cost, grads = small_network()
    with pytest.raises(ValueError, match=r"no name scope 'layer9'.*layer1"):
        viz.to_dot(cost, collapse="layer9")


# side by side -------------------------------------------------------------------------------

def test_compiled_function_before_and_after_side_by_side():
    x = gc.placeholder((3,), name="x")
    y = gc.exp(x) * 1.0 + 0.0
    f = gc.function([x], y)
    dot = viz.to_dot(f, compare=True)
    assert "subgraph cluster_panel0" in dot and "subgraph cluster_panel1" in dot
    assert f"before optimisation ({len(f.unoptimized_graph)} nodes)" in dot
    assert f"after optimisation ({len(f.graph)} nodes)" in dot
    data = json.loads(viz.to_json(f, compare=True))
    assert [len(p["graph"]["nodes"]) for p in data["panels"]] == [len(f.unoptimized_graph), len(f.graph)]
    with pytest.raises(TypeError, match="compiled function"):
        viz.to_dot(y, compare=True)


def test_side_by_side_marks_nodes_new_in_the_later_graph():
    x = gc.placeholder((3,), name="x")
    y = gc.exp(x)
    z = gc.log(y)
    panels = viz.side_by_side(y, z, titles=["first", "second"])
    data = viz.viewer_data(panels)
    second = data["panels"][1]["graph"]["nodes"]
    assert [(n["op"], n["new"]) for n in second] == [("placeholder", False), ("exp", False), ("log", True)]
    assert viz.to_dot(panels).count("[new]") == 1


# JSON -----------------------------------------------------------------------------------------

def test_json_is_node_link_data_with_op_shape_dtype_role_and_source_line():
    x = gc.placeholder((None, 3), name="x"); built_at = line_here()
    y = gc.tanh(x)
    data = json.loads(viz.to_json(y))
    graph = nx.node_link_graph(data, edges="links") if "edges" in inspect.signature(
        nx.node_link_graph).parameters else nx.node_link_graph(data)
    assert graph.is_directed() and graph.number_of_nodes() == 2 and graph.number_of_edges() == 1
    placeholder = graph.nodes[0]
    assert placeholder["op"] == "placeholder" and placeholder["shape"] == [None, 3]
    assert placeholder["dtype"] == "float64" and placeholder["role"] == "placeholder"
    assert placeholder["source"]["line"] == built_at
    assert placeholder["source"]["file"] == __file__
    assert "gc.placeholder((None, 3)" in placeholder["source"]["code"]
    assert graph.nodes[1]["op"] == "tanh" and graph.nodes[1]["output"] is True


# text tree --------------------------------------------------------------------------------------

def test_debugprint_prints_an_indented_tree_with_shared_nodes_once(capsys):
    x = gc.placeholder((2,), name="x")
    e = gc.exp(x)
    y = e * e
    gc.debugprint(y)
    assert capsys.readouterr().out == (
        "#2 multiply (2,) float64\n"
        "├─ #1 exp (2,) float64\n"
        "│  └─ #0 x (2,) float64\n"
        "└─ #1 exp (2,) float64  (see above)\n"
    )


def test_debugprint_marks_scopes_and_derivative_orders_and_limits_depth():
    x, params, cost, grads = small_network()
    text = viz.format_tree([cost, *grads])
    assert "[scope layer1/act]" in text and "derivative 1" in text
    shallow = viz.format_tree(cost, depth=1)
    assert shallow.splitlines() == ["#7 mean(axis=(0,)) () float64", "└─ #6 multiply (?,) float64  ..."]


# files ------------------------------------------------------------------------------------------

def test_export_picks_the_format_from_the_suffix(tmp_path):
    x, params, cost, grads = small_network()
    assert gc.export(cost, tmp_path / "g.dot") == str(tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text().startswith("digraph graphcomp {")
    gc.export(cost, tmp_path / "g.json")
    assert json.loads((tmp_path / "g.json").read_text())["multigraph"] is True
    gc.export(cost, tmp_path / "g.html")
    assert (tmp_path / "g.html").read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError, match=r"suffix '\.txt'"):
        gc.export(cost, tmp_path / "g.txt")


def test_svg_and_png_through_graphviz(tmp_path):
    require_graphviz()
    x, params, cost, grads = small_network()
    gc.export([cost, *grads], tmp_path / "g.svg")
    svg = (tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "cluster_layer1" in svg and "tanh" in svg
    gc.export(cost, tmp_path / "g.png")
    png = (tmp_path / "g.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 50 and height > 50


def test_without_graphviz_svg_export_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, *args, **kwargs: None)
    x = gc.placeholder((2,), name="x")
    with pytest.raises(viz.GraphvizNotFoundError, match=r"apt-get install graphviz.*\.html"):
        gc.export(gc.exp(x), tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()
    assert gc.exp(x)._repr_svg_() is None  # notebooks fall back to the text repr
    gc.export(gc.exp(x), tmp_path / "g.html")  # needs nothing extra


def test_notebook_pictures_for_tensors_graphs_and_functions():
    require_graphviz()
    x = gc.placeholder((2,), name="x")
    y = gc.exp(x)
    for obj in (y, gc.Graph.from_outputs(y), gc.function([x], y), viz.side_by_side(x, y)):
        svg = obj._repr_svg_()
        assert svg is not None and "<svg" in svg and "exp" in svg
    assert "<iframe srcdoc=" in viz.show(y)._repr_html_()


# HTML -------------------------------------------------------------------------------------------

def test_html_is_self_contained_and_embeds_the_graph():
    x, params, cost, grads = small_network()
    page = viz.to_html([cost, *grads], collapse="layer2")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page loads something remotely"
    assert "http://" not in page and "https://" not in page
    data = json.loads(re.search(r'<script type="application/json" id="graph-data">(.*?)</script>',
                                page, re.S).group(1))
    assert data["collapsed"] == ["layer2"]
    nodes = data["panels"][0]["graph"]["nodes"]
    assert len(nodes) == len(gc.Graph.from_outputs([cost, *grads]))
    assert all({"op", "shape", "dtype", "role", "source", "label"} <= set(n) for n in nodes)


def viewer_page_data(page):
    return json.loads(re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', page, re.S).group(1))


def test_the_viewer_takes_the_drawing_options_so_notebooks_can_fall_back_to_it(tmp_path):
    # The notebooks draw through Graphviz when it is installed and through the viewer otherwise,
    # passing the same options to both.
    x, params, cost, grads = small_network()
    captions = {grads[0]: "dJ/dW"}
    f = gc.function([x], [cost, *grads])
    for obj, options in [(cost, {"legend": True}), ([cost, *grads], {"captions": captions, "legend": True}),
                         (f, {"compare": True}), ([cost, *grads], {"collapse": "layer1", "legend": False})]:
        viz.to_dot(obj, **options)
        data = viewer_page_data(viz.show(obj, **options).page)
        assert data["legend"] is options.get("legend", True)
        assert len(data["panels"]) == (2 if options.get("compare") else 1)
        gc.export(obj, tmp_path / "g.html", **options)
        assert viewer_page_data((tmp_path / "g.html").read_text()) == data
    assert any(n.get("caption") == "dJ/dW" for n in viewer_page_data(viz.to_html(grads, captions=captions))
               ["panels"][0]["graph"]["nodes"])


def test_html_escapes_names_that_look_like_markup():
    x = gc.placeholder((2,), name="</script><script>alert(1)</script>")
    page = viz.to_html(gc.exp(x))
    assert "<script>alert(1)" not in page
    assert page.count("</script>") == 2  # the data block and the viewer code


def test_drawing_something_else_is_a_clear_type_error():
    with pytest.raises(TypeError, match="cannot draw a int"):
        viz.to_dot(3)


def test_fused_kernels_from_the_optimiser_show_their_expression_and_members():
    x = gc.placeholder((None, 3), name="x")
    f = gc.function([x], gc.tanh(gc.exp(x) * 2.0 + 1.0))
    fused = [node for node in f.graph.nodes if "expression" in node.attrs]
    if not fused:
        pytest.skip("the optimiser fused nothing in this graph")
    data = viz.node_link_data(f.graph)
    records = [r for r in data["nodes"] if r["expression"] is not None]
    assert [r["role"] for r in records] == ["fused"] * len(fused)
    assert records[0]["expression"] == str(fused[0].attrs["expression"])
    if records[0]["fused_members"] is not None:  # the op records the nodes it replaced
        assert {"exp", "tanh"} <= {line.split()[0] for line in records[0]["fused_members"]}
    assert str(fused[0].attrs["expression"])[:20] in viz.to_dot(f, compare=True)


def test_conv_and_pool_nodes_show_their_kernel_stride_and_padding():
    x = gc.placeholder((None, 2, 9, 9), name="x")
    w = gc.variable(np.ones((4, 1, 3, 2)), name="w")
    y = gc.nn.conv2d(x, w, stride=(2, 1), padding=1, dilation=2, groups=2)
    z = gc.nn.avg_pool2d(gc.nn.max_pool2d(y, 2, padding=1), 3, stride=1)
    t = gc.nn.conv_transpose(z, gc.variable(np.ones((4, 2, 2, 2))), stride=2, output_padding=1)
    loss = gc.sum(t)
    graph = gc.Graph.from_outputs([loss] + gc.grad(loss, [w]))
    shown = {}
    for record in viz.node_link_data(graph)["nodes"]:
        shown.setdefault(record["op"], set()).add(record["geometry"])
        if record["geometry"] is not None:
            assert record["label"][1] == record["geometry"]  # drawn in the node's box, under its op
    assert shown["conv"] >= {"kernel 3x2, stride 2x1, padding 1, dilation 2, groups 2"}
    assert shown["max_pool"] == {"kernel 2x2, stride 2, padding 1"}
    assert shown["avg_pool"] == {"kernel 3x3, stride 1, padding 0"}
    assert shown["conv_transpose"] == {"kernel 2x2, stride 2, padding 0, output padding 1"}
    assert shown["conv_filter_grad"] == {"kernel 3x2, stride 2x1, padding 1, dilation 2, groups 2"}
    assert shown["max_pool_grad"] == {"kernel 2x2, stride 2, padding 1"}
    assert shown["sum"] == {None}
    tree = viz.format_tree(t)
    assert "conv_transpose (?, 2, 3, 7) float64  [kernel 2x2, stride 2, padding 0, output padding 1]" in tree
    assert "conv (?, 4, 4, 9) float64  [kernel 3x2, stride 2x1, padding 1, dilation 2, groups 2]" in tree
