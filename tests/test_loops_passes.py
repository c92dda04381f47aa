"""Optimizer passes that know loops, with the same bits as without them: a scan stops computing
the stacked ys nobody reads (the gradient of a sequence nobody asked for, above all), and the
scan a vjp records the forward steps with merges with the scan that computed the value."""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from finite_differences import central_gradient
from graphcomp import passes
from graphcomp.ir import Graph
from graphcomp.loops import SCAN
from graphcomp.passes.siblings import merge_siblings
from graphcomp.passes.unread_parts import drop_unread_parts

RNG = np.random.default_rng(5)
XS = RNG.standard_normal((7, 4, 3))
W = 0.4 * RNG.standard_normal((3, 3))
H0 = RNG.standard_normal((4, 3))


def elman_loss(h0, xs, w):
    def step(h, x):
        h = gc.tanh(h @ w + x)
        return h, h * h
    h, squares = gc.scan(step, h0, xs)
    return gc.sum(squares) + gc.sum(h)


def numpy_loss(h0, xs, w):
    h, total = h0, 0.0
    for x in xs:
        h = np.tanh(h @ w + x)
        total += (h * h).sum()
    return total + h.sum()


def _scan_ys(graph):
    """[number of body outputs] of each scan node of `graph`, in graph order."""
    return [len(node.attrs["body"].outputs) for node in graph.nodes if node.op is SCAN]


def _without(pass_):
    return [p for p in passes.PIPELINE if p is not pass_]


def _compiled_with(pipeline, inputs, outputs):
    graph = passes.optimize(Graph(outputs), pipeline)
    return gc.function(inputs, list(graph.outputs), optimize=False), graph


def test_the_backward_scan_drops_the_gradient_of_an_unread_sequence_with_the_same_bits():
    h0, xs, w = gc.placeholder(H0.shape), gc.placeholder(XS.shape), gc.placeholder(W.shape)
    loss = elman_loss(h0, xs, w)
    outputs = [loss] + gc.grad(loss, [h0, w])
    without_merging = [p for p in passes.PIPELINE if p is not merge_siblings]
    narrowed, graph = _compiled_with(without_merging, [h0, xs, w], outputs)
    full, full_graph = _compiled_with([p for p in without_merging if p is not drop_unread_parts], [h0, xs, w], outputs)
    # the reverse scan's ys held the gradient of xs: gone, and the forward scans untouched
    assert len(_scan_ys(graph)) == len(_scan_ys(full_graph)) == 3
    assert _scan_ys(graph)[:2] == _scan_ys(full_graph)[:2] and _scan_ys(graph)[2] < _scan_ys(full_graph)[2]
    got, expected = narrowed(H0, XS, W), full(H0, XS, W)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    plain = gc.function([h0, xs, w], outputs, optimize=False)(H0, XS, W)
    for a, b in zip(got, plain):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(got[0], numpy_loss(H0, XS, W), rtol=1e-13)
    np.testing.assert_allclose(got[2], central_gradient(lambda v: numpy_loss(H0, XS, v), W), rtol=1e-6, atol=1e-8)


def test_a_read_gradient_of_the_sequence_keeps_every_part():
    h0, xs, w = gc.placeholder(H0.shape), gc.placeholder(XS.shape), gc.placeholder(W.shape)
    loss = elman_loss(h0, xs, w)
    outputs = [loss] + gc.grad(loss, [xs, w])
    got, graph = _compiled_with(None, [h0, xs, w], outputs)
    _, full_graph = _compiled_with(_without(drop_unread_parts), [h0, xs, w], outputs)
    assert _scan_ys(graph) == _scan_ys(full_graph)
    np.testing.assert_allclose(got(H0, XS, W)[1], central_gradient(lambda v: numpy_loss(H0, v, W), XS),
                               rtol=1e-6, atol=1e-8)


def test_a_scan_that_is_an_output_or_read_whole_is_left_alone():
    h0, xs, w = gc.placeholder(H0.shape), gc.placeholder(XS.shape), gc.placeholder(W.shape)
    _, squares = gc.scan(lambda h, x: (gc.tanh(h @ w + x), h * 2.0), h0, xs)
    scan_node = squares.inputs[0].inputs[0]
    assert scan_node.op is SCAN
    graph = Graph([scan_node])
    assert drop_unread_parts(graph) is graph
    graph = Graph([gc.sum(scan_node)])  # read whole, not sliced
    assert drop_unread_parts(graph) is graph


@pytest.mark.parametrize("optimize", [True, False])
def test_parts_whose_dropping_would_change_the_packed_dtype_stay(optimize):
    # an integer carry with float ys: dropping the ys would pack the carry as an integer vector
    xs = gc.placeholder((5,))
    count, _ = gc.scan(lambda c, x: (c + 1, x * 2.0), gc.constant(np.int64(0)), xs)
    f = gc.function([xs], count, optimize=optimize)
    assert f(np.arange(5.0)) == 5
    assert f(np.arange(5.0)).dtype == np.int64


def test_a_middle_y_dropped_moves_the_slices_after_it():
    h0, xs = gc.placeholder(H0.shape), gc.placeholder(XS.shape)
    h, (first, _, third) = gc.scan(lambda c, x: (c + x, (c * 2.0, gc.sin(c), c - x)), h0, xs)
    f = gc.function([h0, xs], [h, first, third])
    assert _scan_ys(f.graph) == [3]  # the carry, first and third
    h_np, firsts, thirds = H0, [], []
    for x in XS:
        firsts.append(h_np * 2.0)
        thirds.append(h_np - x)
        h_np = h_np + x
    got = f(H0, XS)
    np.testing.assert_array_equal(got[0], h_np)
    np.testing.assert_array_equal(got[1], np.array(firsts))
    np.testing.assert_array_equal(got[2], np.array(thirds))


@pytest.mark.parametrize("cell", ["elman", "two carries"])
def test_the_recording_scan_of_a_vjp_merges_with_the_forward_scan(cell):
    h0, xs, w = gc.placeholder(H0.shape), gc.placeholder(XS.shape), gc.placeholder(W.shape)
    if cell == "elman":
        loss = elman_loss(h0, xs, w)
    else:
        def step(carry, x):
            h, c = carry
            c = gc.sigmoid(h @ w) * c + gc.tanh(x)
            return (gc.tanh(c) * h, c), c
        (h, _), cs = gc.scan(step, (h0, h0 * 0.5), xs)
        loss = gc.mean(cs * cs) + gc.sum(h)
    outputs = [loss] + gc.grad(loss, [h0, w])
    merged, graph = _compiled_with(None, [h0, xs, w], outputs)
    apart, apart_graph = _compiled_with(_without(merge_siblings), [h0, xs, w], outputs)
    assert len(_scan_ys(apart_graph)) == 3 and len(_scan_ys(graph)) == 2  # the forward steps run once
    got = merged(H0, XS, W)
    for a, b in zip(got, apart(H0, XS, W)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(got, gc.function([h0, xs, w], outputs, optimize=False)(H0, XS, W)):
        np.testing.assert_array_equal(a, b)
    loss_of_w = gc.function([h0, xs, w], loss, optimize=False)
    np.testing.assert_allclose(got[2], central_gradient(lambda v: loss_of_w(H0, XS, v), W), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got[1], central_gradient(lambda v: loss_of_w(v, XS, W), H0), rtol=1e-6, atol=1e-8)


def test_scans_whose_carries_differ_do_not_merge():
    h0, xs = gc.placeholder(H0.shape), gc.placeholder(XS.shape)
    first, _ = gc.scan(lambda c, x: (c + x, None), h0, xs)
    second, _ = gc.scan(lambda c, x: (c * x, None), h0, xs)
    f = gc.function([h0, xs], [first, second])
    assert len(_scan_ys(f.graph)) == 2
    added, multiplied = H0, H0
    for x in XS:
        added, multiplied = added + x, multiplied * x
    np.testing.assert_array_equal(f(H0, XS)[0], added)
    np.testing.assert_array_equal(f(H0, XS)[1], multiplied)


def test_two_scans_of_the_same_steps_share_one():
    h0, xs = gc.placeholder(H0.shape), gc.placeholder(XS.shape)
    final, doubled = gc.scan(lambda c, x: (c + x, c * 2.0), h0, xs)
    again, halved = gc.scan(lambda c, x: (c + x, c * 0.5), h0, xs)
    f = gc.function([h0, xs], [final, doubled, again, halved])
    assert _scan_ys(f.graph) == [3]
    carries = [H0]
    for x in XS:
        carries.append(carries[-1] + x)
    carries = np.array(carries)
    got = f(H0, XS)
    expected = [carries[-1], 2.0 * carries[:-1], carries[-1], 0.5 * carries[:-1]]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(got, gc.function([h0, xs], [final, doubled, again, halved], optimize=False)(H0, XS)):
        np.testing.assert_array_equal(a, b)


# sizes unknown when the graph is built: results packed after a header, read by loop_part ----------

UNKNOWN_SHAPES = [((None, 3), (None, None, 3)), ((4, 3), (None, 4, 3)), ((None, 3), (7, None, 3))]


@pytest.mark.parametrize("h0_shape, xs_shape", UNKNOWN_SHAPES)
def test_with_unknown_sizes_the_passes_do_what_they_do_with_known_ones(h0_shape, xs_shape):
    def compiled(shapes, pipeline=None):
        h0, xs, w = gc.placeholder(shapes[0]), gc.placeholder(shapes[1]), gc.placeholder(W.shape)
        loss = elman_loss(h0, xs, w)
        outputs = [loss] + gc.grad(loss, [h0, w])
        return _compiled_with(pipeline, [h0, xs, w], outputs)
    known, known_graph = compiled((H0.shape, XS.shape))
    unknown, graph = compiled((h0_shape, xs_shape))
    plain, plain_graph = compiled((h0_shape, xs_shape), [])
    assert any(node.shape == (None,) for node in graph.nodes if node.op is SCAN)  # the layout with a header
    # the forward steps run once, as with the sizes known (the recording scan merged)
    assert len(_scan_ys(graph)) == len(_scan_ys(known_graph)) == 2 and len(_scan_ys(plain_graph)) == 3
    if h0_shape[0] is not None:  # and store as much (with an unknown batch, the reverse pass also reads
        assert _scan_ys(graph) == _scan_ys(known_graph)  # values for their shapes: broadcasting undone)
    # the cotangent's parts are taken from the parts placed, not from vectors of placed zeros
    assert not [node for node in graph.nodes if node.op.name == "loop_place"]
    for a, b, c in zip(unknown(H0, XS, W), known(H0, XS, W), plain(H0, XS, W)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_an_unread_ys_of_unknown_size_goes():
    h0, xs = gc.placeholder((None, 3)), gc.placeholder((None, None, 3))
    final, (doubled, halved) = gc.scan(lambda c, x: (c + x, (c * 2.0, c * 0.5)), h0, xs)
    f = gc.function([h0, xs], [final, halved])
    assert _scan_ys(f.graph) == [2]
    carries = [H0]
    for x in XS:
        carries.append(carries[-1] + x)
    got = f(H0, XS)
    np.testing.assert_array_equal(got[0], carries[-1])
    np.testing.assert_array_equal(got[1], 0.5 * np.array(carries[:-1]))


def test_one_function_over_more_shapes_than_a_body_remembers():
    # a body infers its results' shapes once per shape of its operands, and keeps 64 of them
    h0, xs = gc.placeholder((None, 2)), gc.placeholder((None, None, 2))
    final, ys = gc.scan(lambda c, x: (c * 0.5 + x, c.sum(axis=1)), h0, xs)
    f = gc.function([h0, xs], [final, ys])
    rng = np.random.default_rng(3)
    cases = [(batch, steps) for batch in range(1, 15) for steps in (0, 1, 3, 5, 2)]  # 70 shapes
    kept = []
    for batch, steps in cases + cases[:10]:
        a, b = rng.standard_normal((batch, 2)), rng.standard_normal((steps, batch, 2))
        kept.append((a, b, f(a, b)))
    for a, b, (got_final, got_ys) in kept:  # every result kept is still what its call computed
        c, rows = a, []
        for x in b:
            rows.append(c.sum(axis=1))
            c = c * 0.5 + x
        np.testing.assert_array_equal(got_final, c)
        assert got_ys.shape == (b.shape[0], a.shape[0])
        if rows:
            np.testing.assert_array_equal(got_ys, np.array(rows))


# loop-invariant work ----------------------------------------------------------------------------

def _invariant_work(body, varying):
    """The non-leaf nodes of `body` that depend on none of its inputs at positions `varying`."""
    varies = {body.inputs[i] for i in varying}
    found = []
    for node in gc.topological_order(body.outputs):
        if node in varies or any(parent in varies for parent in node.inputs):
            varies.add(node)
        elif node.op.leaf is None and node not in body.inputs:
            found.append(node)
    return found


def test_a_reverse_body_transposes_the_weights_once_before_the_loop():
    h0, xs, w = gc.placeholder(H0.shape), gc.placeholder(XS.shape), gc.placeholder(W.shape)
    loss = elman_loss(h0, xs, w)
    outputs = [loss] + gc.grad(loss, [h0, w])
    hoisted, graph = _compiled_with(None, [h0, xs, w], outputs)
    apart, apart_graph = _compiled_with(_without(passes.hoist_invariants), [h0, xs, w], outputs)
    scans = [node for node in apart_graph.nodes if node.op is SCAN]
    # without the pass, the reverse body transposes w at every step
    assert any(_invariant_work(n.attrs["body"], range(n.attrs["carries"] + n.attrs["sequences"])) for n in scans)
    for node in (n for n in graph.nodes if n.op is SCAN):
        assert not _invariant_work(node.attrs["body"], range(node.attrs["carries"] + node.attrs["sequences"]))
    for a, b, c in zip(hoisted(H0, XS, W), apart(H0, XS, W), gc.function([h0, xs, w], outputs, optimize=False)(H0, XS, W)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_a_while_loop_computes_its_invariant_work_once():
    from graphcomp.loops import _while_flat
    a, w = gc.placeholder(()), gc.placeholder(W.shape)

    def body(carry, consts):  # exp(w).T and the bound read only what every step reads whole
        v, k = carry
        return [gc.tanh(v @ gc.exp(consts[0]).T), k + 1]
    v, k = _while_flat(lambda carry, consts: carry[1] < gc.cast(consts[1] * 3.0, "int64"), body,
                       [gc.constant(H0[0]), gc.constant(np.int64(0))], [w, a])
    f = gc.function([a, w], [v, k] + gc.grad((v * v).sum(), [w]))
    loop = next(node for node in f.graph.nodes if node.op.name == "while_loop")
    assert not _invariant_work(loop.attrs["body"], range(2)) and not _invariant_work(loop.attrs["test"], range(2))
    plain = gc.function([a, w], [v, k] + gc.grad((v * v).sum(), [w]), optimize=False)
    for x, y in zip(f(np.array(2.0), W), plain(np.array(2.0), W)):
        np.testing.assert_array_equal(x, y)
    expected = H0[0]
    for _ in range(6):
        expected = np.tanh(expected @ np.exp(W).T)
    np.testing.assert_array_equal(f(np.array(2.0), W)[0], expected)
