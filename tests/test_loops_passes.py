"""Optimizer passes that know loops: a scan stops computing the stacked ys nobody reads (the
gradient of a sequence nobody asked for, above all), with the same bits as before."""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from finite_differences import central_gradient
from graphcomp import passes
from graphcomp.ir import Graph
from graphcomp.loops import SCAN
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
    narrowed, graph = _compiled_with(None, [h0, xs, w], outputs)
    full, full_graph = _compiled_with(_without(drop_unread_parts), [h0, xs, w], outputs)
    # the reverse scan's ys held the gradient of xs: gone, and the forward scans untouched
    assert len(_scan_ys(graph)) == len(_scan_ys(full_graph)) == 3
    assert sum(_scan_ys(graph)) < sum(_scan_ys(full_graph))
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
