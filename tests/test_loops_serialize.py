"""gc.save / gc.load of graphs and functions holding loops and branches: bodies are saved as
graphs of their own inside the .gcz file; loaded functions give the same bits; malformed bodies
are LoadErrors naming the node and attribute."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest

import graphcomp as gc

RNG = np.random.default_rng(3)
X = RNG.standard_normal((5, 3))
H0 = RNG.standard_normal(3)
W = 0.5 * RNG.standard_normal((3, 3))


def _model():
    """A function whose graph holds a scan (with a cond and a scan inside), a while_loop, a
    switch, a fori_loop, and their gradients."""
    h, xs, w = gc.placeholder((3,), name="h"), gc.placeholder((5, 3), name="xs"), gc.placeholder((3, 3), name="w")

    def cell(c, x):
        inner, _ = gc.scan(lambda d, k: (gc.sin(d * k + x), None), c, gc.constant(np.array([0.5, 1.5])))
        c = gc.cond(x.sum() > 0, lambda u: gc.tanh(w @ u), lambda u: u * 0.5, inner)
        return c, (c * c).sum()
    c, ys = gc.scan(cell, h, xs, checkpoint=2)
    a = (w * w).sum() + 1.0
    root = gc.while_loop(lambda r: gc.abs(r * r - a) > 1e-12, lambda r: 0.5 * (r + a / r), a)
    picked = gc.switch(gc.constant(np.int64(1)), [lambda u: u + 1.0, lambda u: gc.exp(u), lambda u: u], c)
    decayed = gc.fori_loop(0, 3, lambda i, u: u * 0.9 + gc.cast(i, "float64"), picked)
    loss = (decayed ** 2).sum() + ys.sum() + root
    return gc.function([h, xs, w], [loss] + gc.grad(loss, [h, xs, w])), loss


def test_a_function_with_loops_saves_loads_and_gives_the_same_bits(tmp_path):
    f, loss = _model()
    expected = f(H0, X, W)
    gc.save({"f": f, "loss": loss}, tmp_path / "loops.gcz")
    loaded = gc.load(tmp_path / "loops.gcz")
    for a, b in zip(loaded["f"](H0, X, W), expected):
        np.testing.assert_array_equal(a, b)
    inputs = {n.name: n for n in gc.Graph.from_outputs(loaded["loss"]).placeholders}
    again = gc.function([inputs["h"], inputs["xs"], inputs["w"]], loaded["loss"])  # a loaded tensor compiles
    np.testing.assert_array_equal(again(H0, X, W), expected[0])
    ops = {n.op.name for n in gc.topological_order([loaded["loss"]])}
    assert {"scan", "while_loop", "switch"} <= ops
    copy = pickle.loads(pickle.dumps(loaded["f"]))
    np.testing.assert_array_equal(copy(H0, X, W)[0], expected[0])


def _saved(tmp_path):
    h = gc.placeholder((3,), name="h")
    c, _ = gc.scan(lambda c, x: (gc.sin(c) * x, None), h, gc.constant(X))
    path = tmp_path / "scan.gcz"
    gc.save(c, path)
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    return members, json.loads(members["graph.json"])


def _load_tampered(tmp_path, members, document):
    path = tmp_path / "bad.gcz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("graph.json", json.dumps(document).encode())
        archive.writestr("arrays.npz", members["arrays.npz"])
    return gc.load(path)


def _scan_entry(document):
    position = next(i for i, n in enumerate(document["nodes"]) if n["op"] == "scan")
    return position, document["nodes"][position]


def test_the_body_is_a_graph_of_its_own_before_the_loop_node(tmp_path):
    members, document = _saved(tmp_path)
    position, entry = _scan_entry(document)
    body = entry["attrs"]["body"]["body"]
    assert set(body) == {"label", "inputs", "outputs"} and body["label"] == "scan body"
    assert all(i < position for i in body["inputs"] + body["outputs"])
    assert [document["nodes"][i]["op"] for i in body["inputs"]] == ["placeholder"] * 2  # the carry and one row of xs
    loaded = _load_tampered(tmp_path, members, document)  # untampered
    (h,) = gc.Graph.from_outputs(loaded).placeholders
    expected = H0
    for row in X:
        expected = np.sin(expected) * row
    np.testing.assert_array_equal(gc.function([h], loaded)(H0), expected)


def _tamper_body(document, change):
    position, entry = _scan_entry(document)
    change(entry["attrs"]["body"]["body"], document, position)
    return document


@pytest.mark.parametrize("change, message", [
    (lambda body, doc, pos: body["inputs"].append(doc["nodes"][pos]["inputs"][0]), "2 operands for a body of 3 inputs"),
    (lambda body, doc, pos: body["inputs"].pop(), "is not one of its inputs"),
    (lambda body, doc, pos: body["inputs"].__setitem__(0, body["outputs"][0]), "inputs are distinct placeholders"),
    (lambda body, doc, pos: body["inputs"].__setitem__(0, pos), "is not before it"),
    (lambda body, doc, pos: body["inputs"].__setitem__(1, body["inputs"][0]), "inputs are distinct placeholders"),
    (lambda body, doc, pos: body.pop("label"), "a body is"),
    (lambda body, doc, pos: body.__setitem__("outputs", "everything"), "list of node indices"),
    (lambda body, doc, pos: body["outputs"].__setitem__(0, "x"), "must be the index of a node"),
    (lambda body, doc, pos: body["outputs"].__setitem__(0, doc["nodes"][pos]["inputs"][0]), "not one of its inputs"),
])
def test_malformed_bodies_are_load_errors_naming_the_attribute(tmp_path, change, message):
    members, document = _saved(tmp_path)
    position, _ = _scan_entry(document)
    with pytest.raises(gc.LoadError, match=message) as info:
        _load_tampered(tmp_path, members, _tamper_body(document, change))
    assert f"node {position}" in str(info.value)
    if "operands" not in message:  # the op's own rule, run on the whole node, names no attribute
        assert "field 'attrs.body" in str(info.value)


def test_a_carry_that_does_not_match_its_body_is_a_load_error(tmp_path):
    members, document = _saved(tmp_path)
    position, entry = _scan_entry(document)
    entry["attrs"]["length"] = 4  # xs hold 5 rows
    with pytest.raises(gc.LoadError, match="leading axis of length 4"):
        _load_tampered(tmp_path, members, document)
