"""Drawings of loops and branches: each body graph is a cluster of its own in DOT (nested for a
loop inside a body), and nested node-link data in the JSON the HTML viewer reads (which draws
each body as a cluster that expands and collapses, and lists them in a loop node's details)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import viz


def nested_loops():
    h, x = gc.placeholder((3,), name="h"), gc.placeholder((4, 3), name="x")

    def outer(c, xt):
        inner, _ = gc.scan(lambda d, k: (gc.sin(d * k + xt), None), c, gc.constant(np.array([0.5, 1.5])))
        return gc.cond(xt.sum() > 0, lambda u: u * 2.0, lambda u: gc.exp(u * 0.1), inner), None
    c, _ = gc.scan(outer, h, x)
    return c


def _clusters(dot):
    """{cluster name: (label, depth)} of the DOT text's body clusters."""
    found, depth = {}, 0
    for line in dot.splitlines():
        opened = re.match(r'\s*subgraph "(cluster_[^"]*body)" \{', line)
        if opened:
            depth += 1
            found[opened.group(1)] = depth
        elif line.strip() == "}" and depth:
            depth -= 1
        label = re.match(r'\s*label="([^"]*)"; style="rounded,filled"', line)
        if label and opened is None and found:
            last = list(found)[-1]
            found[last] = (label.group(1), found[last]) if isinstance(found[last], int) else found[last]
    return found


def test_bodies_are_nested_clusters_tied_to_their_loop_nodes():
    dot = viz.to_dot(nested_loops())
    clusters = _clusters(dot)
    assert clusters == {"cluster_n2b0_body": ("scan body", 1), "cluster_n2b0_n9b0_body": ("scan body", 2),
                        "cluster_n2b0_n12b0_body": ("cond branch 0", 2),
                        "cluster_n2b0_n12b1_body": ("cond branch 1", 2)}, clusters
    assert "compound=true" in dot
    for cluster in clusters:
        loop = re.sub(r"b\d+_body$", "", cluster[len("cluster_"):])  # n2b0_n9 for cluster_n2b0_n9b0_body
        assert re.search(rf'\n\s*{loop} -> \S+ \[style=dotted, .*lhead="{cluster}"', dot), cluster
    # every node drawn once, with a unique id
    ids = re.findall(r"^\s*(\w+) \[label=", dot, re.M)
    assert len(ids) == len(set(ids))
    body_nodes = [i for i in ids if i.startswith("n2b0_n9b0_")]
    assert len(body_nodes) == 6  # carry, the row k, the captured xt; multiply, add, sin


def test_graphviz_reads_the_drawing():
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed")
    done = subprocess.run(["dot", "-Tsvg"], input=viz.to_dot(nested_loops()), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "<svg" in done.stdout, done.stderr
    assert done.stdout.count('class="cluster"') >= 4


def test_json_nests_each_body_as_node_link_data():
    data = json.loads(viz.to_json(nested_loops()))
    loops = [n for n in data["nodes"] if "bodies" in n]
    assert [n["op"] for n in loops] == ["scan"]
    (body,) = loops[0]["bodies"]
    assert body["label"] == "scan body" and body["inputs"] == 2 and body["outputs"] == 1
    inner = {n["op"]: n for n in body["graph"]["nodes"] if "bodies" in n}
    assert set(inner) == {"scan", "switch"}
    assert [b["label"] for b in inner["switch"]["bodies"]] == ["cond branch 0", "cond branch 1"]
    graph = inner["scan"]["bodies"][0]["graph"]
    assert [n["op"] for n in graph["nodes"]] == ["placeholder"] * 3 + ["multiply", "add", "sin"]
    assert graph["graph"]["outputs"] == [5]
    assert {(link["source"], link["target"]) for link in graph["links"]} == {(0, 3), (1, 3), (3, 4), (2, 4), (4, 5)}


def test_the_html_viewer_embeds_the_bodies_and_lists_them_collapsed():
    page = viz.to_html(nested_loops())
    data = json.loads(re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', page, re.S).group(1))
    (loop,) = [n for n in data["panels"][0]["graph"]["nodes"] if "bodies" in n]
    assert loop["bodies"][0]["label"] == "scan body"
    assert 'el("details", { "class": "body" }' in page and "bodyDetails(inner)" in page


def test_the_viewer_draws_bodies_as_collapsed_clusters_tied_to_their_loops():
    # The drawing puts each body's nodes under a scope of their own (collapsed at first) and ties
    # the body's outputs to its loop node: it reads which body nodes are outputs from the JSON.
    page = viz.to_html(nested_loops())
    data = json.loads(re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', page, re.S).group(1))
    (loop,) = [n for n in data["panels"][0]["graph"]["nodes"] if "bodies" in n]
    body = loop["bodies"][0]["graph"]
    flagged = [n["id"] for n in body["nodes"] if n["output"]]
    assert flagged and flagged == body["graph"]["outputs"]
    assert "function graphNodes(graph, panelIndex, prefix, scope, out)" in page
    assert "new Set((DATA.collapsed || []).concat(bodyScopes))" in page  # collapsed until expanded
    assert "node.inputs.concat(node.ties)" in page  # the tie is drawn as an edge into the loop node
