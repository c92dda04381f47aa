"""The HTML viewer in a real headless Chromium: it loads offline without console errors, a click
on a node shows its details, scopes collapse, search finds nodes, the drawing is not blank, and
a graph of more than 5,000 nodes is laid out and stays interactive."""

from __future__ import annotations

import base64
import inspect
import json

import numpy as np
import pytest

import graphcomp as gc
from graphcomp import viz
from graphcomp.demos import xor
from graphcomp.viz.model import bodies_of, body_graph

from tool_requirements import missing

pytestmark = pytest.mark.slow  # drives a headless browser

CANVAS_PIXELS = """(async () => {
  const image = new Image();
  image.src = "data:image/png;base64,%s";
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width; canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0; const colours = new Set();
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235) inked++;
    colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  return {inked: inked / (data.length / 4), colours: colours.size};
})()"""

LAYOUT_PROBLEMS = """(() => {
  const viewer = window.graphcompViewer, places = viewer.layers(), problems = [];
  for (const [source, target] of viewer.edges())
    if (!(places[target].layer > places[source].layer)) problems.push("edge " + source + " -> " + target + " does not go down");
  const byLayer = {};
  for (const [key, p] of Object.entries(places)) (byLayer[p.layer] = byLayer[p.layer] || []).push(p);
  for (const row of Object.values(byLayer)) {
    row.sort((a, b) => a.x - b.x);
    for (let i = 1; i < row.length; i++)
      if (row[i].x - row[i - 1].x < (row[i].w + row[i - 1].w) / 2 - 0.5) problems.push("overlap in layer " + row[i].layer);
  }
  return problems.slice(0, 5);
})()"""


@pytest.fixture(scope="module")
def browser():
    try:
        import websocket  # noqa: F401
    except ImportError:
        missing("websocket-client is not installed (pip install websocket-client)")
    from headless_chromium import BrowserError, HeadlessChromium, find_chromium

    if find_chromium() is None:
        missing("Chromium is not installed (apt-get install chromium)")
    try:
        chromium = HeadlessChromium()
    except BrowserError as error:
        pytest.fail(f"Chromium is installed but could not be started: {error}")
    yield chromium
    chromium.close()


def open_page(browser, path):
    browser.open(path.as_uri())
    assert browser.evaluate("typeof window.graphcompViewer") == "object", browser.errors()


def click_node(browser, panel, number):
    position = browser.evaluate(f"window.graphcompViewer.screenPosition({panel}, {number})")
    assert position is not None, f"node #{number} is not drawn"
    browser.click(position["x"], position["y"])


def details_text(browser):
    return browser.evaluate("document.getElementById('details').innerText")


def canvas_ink(browser):
    """Share of non-white pixels and number of colours in a screenshot of the drawing area."""
    box = browser.evaluate("(() => { const r = document.getElementById('canvas').getBoundingClientRect();"
                           " return {x: r.left, y: r.top, width: r.width, height: r.height}; })()")
    shot = browser.call("Page.captureScreenshot", format="png", clip=dict(box, scale=1))["data"]
    assert base64.b64decode(shot)[:8] == b"\x89PNG\r\n\x1a\n"
    return browser.evaluate(CANVAS_PIXELS % shot)


def line_of(module, text):
    """The 1-based number of the first line of `module`'s file that contains `text`."""
    lines = inspect.getsource(module).splitlines()
    return 1 + next(i for i, line in enumerate(lines) if text in line)


def test_xor_page_loads_offline_and_a_click_shows_the_node(browser, tmp_path):
    network = xor.build_network()
    page = tmp_path / "xor.html"
    gc.export(xor.graph_outputs(network), page, captions=xor.gradient_captions(network))
    open_page(browser, page)
    assert browser.errors() == []
    assert all(url.startswith(("file:", "data:", "about:")) for url in browser.requested_urls()), \
        browser.requested_urls()
    graph = gc.Graph.from_outputs(xor.graph_outputs(network))
    assert browser.evaluate("window.graphcompViewer.vertexCount()") == len(graph)
    assert browser.evaluate(LAYOUT_PROBLEMS) == []

    matmul = next(i for i, n in enumerate(graph.nodes) if n.op.name == "matmul" and n.scope == "hidden")
    click_node(browser, 0, matmul)
    assert browser.evaluate("window.graphcompViewer.selected()") == f"0:{matmul}"
    text = details_text(browser)
    assert f"#{matmul} matmul" in text
    assert "(?, 2)" in text and "float64" in text and "hidden" in text
    assert f"xor.py:{line_of(xor, 'h = gc.relu(X @ W + c)')}" in text
    assert "h = gc.relu(X @ W + c)" in text
    assert "[0] #0 X: placeholder (?, 2) float64" in text and "[1] #" in text and "W: variable (2, 2)" in text
    consumers = graph.consumers[graph.nodes[matmul]]
    assert f"consumers ({len(consumers)})" in text
    assert all(f"#{graph.nodes.index(c)} {c.op.name}" in text for c in consumers)

    ink = canvas_ink(browser)
    assert ink["inked"] > 0.02 and ink["colours"] > 20, ink
    assert browser.errors() == []


def test_clicking_an_input_link_selects_it_and_empty_space_clears(browser, tmp_path):
    x = gc.placeholder((3,), name="x")
    y = gc.exp(x)
    page = tmp_path / "small.html"
    gc.export(gc.log(y), page)
    open_page(browser, page)
    click_node(browser, 0, 2)
    assert "#2 log" in details_text(browser)
    browser.evaluate("document.querySelector('#details a.node-link[data-node=\"0:1\"]').click()")
    assert browser.evaluate("window.graphcompViewer.selected()") == "0:1"
    assert "#1 exp" in details_text(browser)
    browser.click(5, 790)  # a corner of the drawing with no node
    assert browser.evaluate("window.graphcompViewer.selected()") is None
    assert browser.errors() == []


def test_scopes_collapse_and_expand_and_roles_hide(browser, tmp_path):
    network = xor.build_network()
    outputs = xor.graph_outputs(network)
    graph = gc.Graph.from_outputs(outputs)
    page = tmp_path / "scopes.html"
    gc.export(outputs, page, collapse="hidden")
    open_page(browser, page)
    hidden = sum(1 for n in graph.nodes if n.scope == "hidden")
    assert browser.evaluate("window.graphcompViewer.vertexCount()") == len(graph) - hidden + 1
    browser.evaluate("document.querySelector('#scopes input[data-scope=\"hidden\"]').click()")
    assert browser.evaluate("window.graphcompViewer.vertexCount()") == len(graph)
    browser.evaluate("document.getElementById('collapse-all').click()")
    scoped = sum(1 for n in graph.nodes if n.scope)
    assert browser.evaluate("window.graphcompViewer.vertexCount()") == len(graph) - scoped + 3
    browser.evaluate("document.getElementById('expand-all').click()")
    browser.evaluate("document.querySelector('#legend input[data-role=\"first_derivative\"]').click()")
    derivative = sum(1 for n in graph.nodes if viz.node_role(n) == "first_derivative")
    assert browser.evaluate("window.graphcompViewer.vertexCount()") == len(graph) - derivative
    # search looks at ops, names, scopes and the code that built a node: relu, and the matmul and
    # add built on the same line `h = gc.relu(X @ W + c)`
    assert browser.evaluate("window.graphcompViewer.search('relu')") == 3
    assert browser.evaluate("window.graphcompViewer.search('#5')") == 1
    assert browser.errors() == []


def test_before_and_after_panels(browser, tmp_path):
    x = gc.placeholder((3,), name="x")
    f = gc.function([x], gc.grad((gc.tanh(x) * 1.0).sum(), x))
    page = tmp_path / "compare.html"
    gc.export(f, page, compare=True)
    open_page(browser, page)
    total = len(f.unoptimized_graph) + len(f.graph)
    assert browser.evaluate("window.graphcompViewer.vertexCount()") == total
    click_node(browser, 1, len(f.graph) - 1)
    assert "after optimisation" in details_text(browser)
    assert browser.errors() == []


def residual_network(blocks):
    """A deep residual tanh network and the gradients of its cost: about 17 nodes per block."""
    rng = np.random.default_rng(0)
    x = gc.placeholder((None, 8), name="x")
    h, weights = x, []
    for index in range(blocks):
        with gc.name_scope(f"block{index}"):
            W = gc.variable(rng.normal(size=(8, 8)) / 8, name=f"W{index}")
            h = gc.tanh(h @ W) + h
        weights.append(W)
    cost = (h * h).mean()
    return [cost, *gc.grad(cost, weights)]


def test_a_graph_of_more_than_5000_nodes_stays_usable(browser, tmp_path):
    outputs = residual_network(320)
    graph = gc.Graph.from_outputs(outputs)
    assert len(graph) > 5000
    page = tmp_path / "large.html"
    gc.export(outputs, page)
    open_page(browser, page)
    assert browser.errors() == []
    assert browser.evaluate("window.graphcompViewer.vertexCount()") == len(graph)
    assert browser.evaluate(LAYOUT_PROBLEMS) == []
    assert browser.evaluate("window.graphcompViewer.search('W200')") == 1
    selected = browser.evaluate("window.graphcompViewer.selected()")
    number = int(selected.split(":")[1])
    assert graph.nodes[number].name == "W200"
    click_node(browser, 0, number)  # the search centred it; a real click selects it again
    assert "W200" in details_text(browser) and "block200" in details_text(browser)
    ink = canvas_ink(browser)
    assert ink["inked"] > 0.02, ink
    browser.evaluate("document.getElementById('collapse-all').click()")
    scoped = sum(1 for node in graph.nodes if node.scope)  # each block's nodes become one box
    assert browser.evaluate("window.graphcompViewer.vertexCount()") == len(graph) - scoped + 320
    assert browser.errors() == []
    data = json.loads(browser.evaluate("document.getElementById('graph-data').textContent"))
    assert len(data["panels"][0]["graph"]["nodes"]) == len(graph)


def test_loop_bodies_are_clusters_in_the_drawing_that_expand_and_collapse(browser, tmp_path):
    xs, h0 = gc.placeholder((4, 3), name="xs"), gc.placeholder((3,), name="h0")

    def cell(h, x):
        inner, _ = gc.scan(lambda c, y: (c * y + 1.0, None), h, gc.stack([x, x]))
        return gc.tanh(inner), h
    h, ys = gc.scan(cell, h0, xs)
    loss = gc.sum(ys) + gc.sum(h)
    page = tmp_path / "loops.html"
    gc.export(loss, page)
    open_page(browser, page)
    graph = gc.Graph.from_outputs([loss])
    (outer,) = [body_graph(b) for n in graph.nodes for b in bodies_of(n)]
    (inner,) = [body_graph(b) for n in outer.nodes for b in bodies_of(n)]
    count = "window.graphcompViewer.vertexCount()"
    scopes = browser.evaluate("Array.from(document.querySelectorAll('#scopes input')).map(i => i.dataset.scope)")
    (outer_scope,) = [s for s in scopes if "/" not in s]
    (inner_scope,) = [s for s in scopes if "/" in s]
    assert outer_scope.startswith("scan #") and outer_scope.endswith(" scan body")
    assert inner_scope.startswith(outer_scope + "/scan #")
    assert browser.evaluate(count) == len(graph) + 1  # the body drawn as one collapsed box
    browser.evaluate(f"window.graphcompViewer.setCollapsed({json.dumps(outer_scope)}, false)")
    assert browser.evaluate(count) == len(graph) + len(outer) + 1  # its nodes, the inner body one box
    browser.evaluate(f"window.graphcompViewer.setCollapsed({json.dumps(inner_scope)}, false)")
    assert browser.evaluate(count) == len(graph) + len(outer) + len(inner)
    assert browser.evaluate(LAYOUT_PROBLEMS) == []
    labels = {label["scope"]: label for label in browser.evaluate("window.graphcompViewer.clusterLabels()")}
    assert set(labels) == {outer_scope, inner_scope}
    # the inner body starts on the outer one's first row: its name stands a line lower, not on top
    assert labels[inner_scope]["y"] - labels[outer_scope]["y"] >= 14, labels
    ink = canvas_ink(browser)
    assert ink["inked"] > 0.01 and ink["colours"] > 3
    browser.evaluate(f"window.graphcompViewer.setCollapsed({json.dumps(outer_scope)}, true)")
    assert browser.evaluate(count) == len(graph) + 1
    assert browser.errors() == []
