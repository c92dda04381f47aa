"""How loops run and what a loop's gradient computes at each call.

- A loop or branch node writes its packed result into an array the memory plan gives it
  (`out=`), kept in the workspace between calls when no result can see it; every result stays
  its caller's.
- The cotangent of a packed result (parts placed into zeros and summed) is sliced apart without
  a vector of zeros the size of the result, and an LSTM's four gate gradients are joined, not
  summed from four arrays of zeros.
- A scan takes no sequence or const its body does not read, so its forward scan records no
  value the reverse pass ignores.

Values are checked against plain NumPy loops and finite differences, and each rewrite against
the unoptimised graph, bit for bit (signed zeros, NaN and infinities included)."""

import re

import numpy as np
import pytest

import graphcomp as gc
from conftest import lstm_update, run_in_threads


def _rnn(steps=6, batch=3, hidden=4):
    """(xs, w, loss of an Elman scan, its ys): a scan whose ys only a loss reads."""
    xs = gc.placeholder((steps, batch, hidden), name="xs")
    w = gc.placeholder((hidden, hidden), name="w")
    _, hs = gc.scan(lambda h, x: (gc.tanh(x + h @ w),) * 2, gc.constant(np.zeros((batch, hidden))), xs)
    return xs, w, gc.sum(hs * hs), hs


def _numpy_rnn(xs, w):
    h, hs = np.zeros(xs.shape[1:]), []
    for x in xs:
        h = np.tanh(x + h @ w)
        hs.append(h)
    return np.stack(hs)


def _scan_line(f):
    return next(line for line in f.source.splitlines() if re.search(r"= scan_\d+\(", line))


def _arguments(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((6, 3, 4)), rng.standard_normal((4, 4)) / 2


def test_a_scan_only_a_loss_reads_writes_into_the_workspace_kept_between_calls():
    xs, w, loss, _ = _rnn()
    f = gc.function([xs, w], loss)
    assert "out=ws[" in _scan_line(f)
    for seed in range(3):
        a, b = _arguments(seed)
        hs = _numpy_rnn(a, b)
        np.testing.assert_allclose(f(a, b), np.sum(hs * hs), rtol=1e-12)


def test_kept_ys_and_gradients_survive_later_calls():
    xs, w, loss, hs = _rnn()
    f = gc.function([xs, w], [loss, hs] + gc.grad(loss, [xs, w]))
    assert "out=ws[" not in _scan_line(f)  # the ys returned are slices of it
    kept = [(f(*_arguments(seed)), _arguments(seed)) for seed in range(4)]
    for results, (a, b) in kept:
        expected = _numpy_rnn(a, b)
        np.testing.assert_allclose(results[1], expected, rtol=1e-12)
        np.testing.assert_allclose(results[0], np.sum(expected * expected), rtol=1e-12)
        step = 1e-6  # the gradient with respect to one entry of w, by central differences
        d = np.zeros_like(b)
        d[1, 2] = step
        numeric = (np.sum(_numpy_rnn(a, b + d) ** 2) - np.sum(_numpy_rnn(a, b - d) ** 2)) / (2 * step)
        np.testing.assert_allclose(results[3][1, 2], numeric, rtol=1e-6)
    first, second = kept[0][0], kept[1][0]
    assert not any(np.shares_memory(x, y) for x in first for y in second)


def test_a_switch_and_a_while_loop_inside_a_loss_write_into_given_arrays():
    x = gc.placeholder((5,), name="x")
    branched = gc.cond(gc.sum(x) > 0, lambda v: v * 2.0, lambda v: v - 1.0, x)
    _, doubled = gc.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 2.0), (gc.constant(0), x))
    f = gc.function([x], gc.sum(branched) + gc.sum(doubled))
    source = f.source
    assert re.search(r"= switch_\d+\(.*out=", source) and re.search(r"= while_loop_\d+\(.*out=", source)
    for values in (np.arange(5.0), -np.arange(5.0), np.linspace(-1, 3, 5)):
        expected = np.sum(values * 2.0 if values.sum() > 0 else values - 1.0) + np.sum(values * 8.0)
        np.testing.assert_allclose(f(values), expected, rtol=1e-12)


def test_eight_threads_running_one_scan_get_exactly_their_own_results(switch_often):
    xs, w, loss, hs = _rnn()
    f = gc.function([xs, w], [loss, hs])
    got = {}

    def work(k):
        a, b = _arguments(k)
        got[k] = [f(a, b) for _ in range(3)]
    run_in_threads(work)
    assert len(got) == 8
    for k, calls in got.items():
        expected = _numpy_rnn(*_arguments(k))
        for loss_value, ys in calls:
            np.testing.assert_allclose(ys, expected, rtol=1e-12)
            np.testing.assert_allclose(loss_value, np.sum(expected * expected), rtol=1e-12)


# the cotangent of a packed result ----------------------------------------------------------------

def _placed_slices(optimize, gap=0):
    """Slices of the gradient of a vector read in two parts (`gap` elements apart): a sum of two
    parts placed into zeros."""
    v = gc.placeholder((10 + gap,), name="v")
    a, b = gc.placeholder((4,), name="a"), gc.placeholder((6,), name="b")
    (gv,) = gc.grad(gc.sum(a * v[0:4]) + gc.sum(b * v[4 + gap:10 + gap]), [v])
    slices = [gv[0:4], gv[4 + gap:10 + gap], gv[5 + gap:8 + gap], gv[:2], gv[2:7], gv[4:4], gv]
    return gc.function([v, a, b], slices, optimize=optimize)


@pytest.mark.parametrize("gap", [0, 2])
def test_slices_of_a_sum_of_placed_parts_keep_every_bit_and_signed_zero(gap):
    a = np.array([-0.0, 1.5, np.nan, -np.inf])
    b = np.array([0.0, -0.0, 2.0, np.inf, -3.0, -0.0])
    got = _placed_slices(True, gap)(np.ones(10 + gap), a, b)
    expected = _placed_slices(False, gap)(np.ones(10 + gap), a, b)
    whole = np.concatenate([a + 0.0, np.zeros(gap), b + 0.0])  # each element: its part plus the other's +0.0
    parts = [whole[0:4], whole[4 + gap:10 + gap], whole[5 + gap:8 + gap], whole[:2], whole[2:7], whole[4:4], whole]
    for g, e, part in zip(got, expected, parts):
        np.testing.assert_array_equal(g, part)
        np.testing.assert_array_equal(np.signbit(g), np.signbit(part))
        np.testing.assert_array_equal(np.signbit(g), np.signbit(e))


def test_slices_inside_one_part_read_that_part_without_the_zeros_vector():
    assert not any(node.op.name == "getitem_grad" for node in _placed_slices(True).graph.nodes)
    v, a = gc.placeholder((10,), name="v"), gc.placeholder((4,), name="a")
    b = gc.placeholder((6,), name="b")
    (gv,) = gc.grad(gc.sum(a * v[0:4]) + gc.sum(b * v[4:10]), [v])
    g = gc.function([v, a, b], [gv[0:4], gv[5:8]])
    assert not any(node.op.name == "getitem_grad" for node in g.graph.nodes)
    first, second = g(np.ones(10), np.arange(4.0), np.arange(6.0) + 10)
    np.testing.assert_array_equal(first, np.arange(4.0))
    np.testing.assert_array_equal(second, [11.0, 12.0, 13.0])


def test_the_gradient_of_a_scan_fills_no_zeros_the_size_of_its_result():
    xs, w, loss, _ = _rnn()
    f = gc.function([xs, w], gc.grad(loss, [xs, w]))
    sizes = [node.shape[0] for node in f.graph.nodes if node.op.name == "scan"]
    assert not any(node.op.name == "getitem_grad" and node.shape[0] in sizes for node in f.graph.nodes)
    slow = gc.function([xs, w], gc.grad(loss, [xs, w]), optimize=False)
    for seed in range(2):
        for fast_value, slow_value in zip(f(*_arguments(seed)), slow(*_arguments(seed))):
            np.testing.assert_array_equal(fast_value, slow_value)


def _gates(optimize, cuts=((0, 2), (2, 5), (5, 6))):
    """The gradient of a vector cut into parts, each part through its own function: a sum of
    parts placed into zeros (as an LSTM's gates give), and a matrix cut along its columns."""
    v = gc.placeholder((6,), name="v")
    m = gc.placeholder((3, 6), name="m")
    a = gc.placeholder((6,), name="a")
    loss = sum(gc.sum(gc.tanh(v[start:stop]) * a[start:stop]) for start, stop in cuts)
    loss = loss + sum(gc.sum(gc.sigmoid(m[:, start:stop]) * a[start:stop]) for start, stop in cuts)
    return gc.function([v, m, a], gc.grad(loss, [v, m]), optimize=optimize)


def test_a_sum_of_parts_tiling_an_axis_is_joined_with_every_bit_kept():
    f, slow = _gates(True), _gates(False)
    assert not any(node.op.name == "getitem_grad" for node in f.graph.nodes)
    v = np.array([0.3, -0.0, np.nan, 2.0, -np.inf, 0.0])
    m = np.array([[1.0, -2.0, 0.0, -0.0, 3.0, np.inf]] * 3)
    a = np.array([1.0, -1.0, 2.0, -0.0, 0.5, 1.0])
    for got, expected in zip(f(v, m, a), slow(v, m, a)):
        np.testing.assert_array_equal(got, expected)
        numbers = ~np.isnan(expected)
        np.testing.assert_array_equal(np.signbit(got)[numbers], np.signbit(expected)[numbers])
    gv, gm = f(v, m, a)
    np.testing.assert_allclose(gv[[0, 3, 5]], (1 - np.tanh(v[[0, 3, 5]]) ** 2) * a[[0, 3, 5]], rtol=1e-14)
    s = 1 / (1 + np.exp(-m[:, :5]))
    np.testing.assert_allclose(gm[:, :5], s * (1 - s) * a[:5], rtol=1e-14)


def test_parts_that_leave_a_gap_or_overlap_stay_placed():
    for cuts in (((0, 2), (3, 6)), ((0, 3), (2, 6))):
        f, slow = _gates(True, cuts), _gates(False, cuts)
        assert any(node.op.name == "getitem_grad" for node in f.graph.nodes)
        args = (np.linspace(-1, 1, 6), np.linspace(-2, 2, 18).reshape(3, 6), np.arange(6.0) - 2)
        for got, expected in zip(f(*args), slow(*args)):
            np.testing.assert_array_equal(got, expected)


# operands a body does not read ---------------------------------------------------------------------

def test_a_sequence_the_body_reads_only_for_its_shape_is_no_operand():
    xs, ys = gc.placeholder((5, 3), name="xs"), gc.placeholder((5, 3), name="ys")
    total, _ = gc.scan(lambda c, xy: (c + xy[0] + gc.zeros_like(xy[1]), None), gc.constant(np.zeros(3)), (xs, ys))
    f = gc.function([xs, ys], total)
    (scan_node,) = [node for node in f.graph.nodes if node.op.name == "scan"]
    assert scan_node.attrs["sequences"] == 1 and len(scan_node.inputs) == 2
    a = np.arange(15.0).reshape(5, 3)
    np.testing.assert_array_equal(f(a, -a), a.sum(axis=0) + 0.0)


def _lstm_like(optimize, steps=5, batch=2, hidden=3):
    xs, w = gc.placeholder((steps, batch, 4 * hidden), name="xs"), gc.placeholder((hidden, 4 * hidden), name="w")

    def step(carry, x):
        h, c = carry
        h, c = lstm_update(x + h @ w, c, hidden)
        return (h, c), h
    zero = gc.constant(np.zeros((batch, hidden)))
    _, hs = gc.scan(step, (zero, zero), xs)
    loss = gc.sum(hs * hs)
    return gc.function([xs, w], [loss] + gc.grad(loss, [xs, w]), optimize=optimize), (steps, batch, hidden)


def _numpy_lstm_loss(xs, w):
    hidden = w.shape[0]
    h = c = np.zeros((xs.shape[1], hidden))
    total = 0.0
    for x in xs:
        z = x + h @ w
        i, f, g, o = (1 / (1 + np.exp(-z[:, :hidden])), 1 / (1 + np.exp(-z[:, hidden:2 * hidden])),
                      np.tanh(z[:, 2 * hidden:3 * hidden]), 1 / (1 + np.exp(-z[:, 3 * hidden:])))
        c = f * c + i * g
        h = o * np.tanh(c)
        total += np.sum(h * h)
    return total


def test_an_lstm_gradient_records_no_step_value_its_reverse_pass_does_not_read():
    f, (steps, batch, hidden) = _lstm_like(True)
    for node in f.graph.nodes:
        if node.op.name == "scan":
            body = node.attrs["body"]
            read = set(body.function().graph.nodes)
            assert all(p in read for p in body.inputs[node.attrs["carries"]:]), body
    # the gates' pre-activations z (batch x 4 hidden a step) are not among the recorded values
    forward = next(node for node in f.graph.nodes if node.op.name == "scan" and not node.attrs["reverse"])
    assert not any(tuple(out.shape) == (batch, 4 * hidden) for out in forward.attrs["body"].outputs)
    rng = np.random.default_rng(3)
    xs, w = rng.standard_normal((steps, batch, 4 * hidden)), rng.standard_normal((hidden, 4 * hidden)) / 2
    slow, _ = _lstm_like(False)
    got = f(xs, w)
    for a, b in zip(got, slow(xs, w)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(got[0], _numpy_lstm_loss(xs, w), rtol=1e-12)
    d = np.zeros_like(w)
    d[1, 5] = 1e-6
    numeric = (_numpy_lstm_loss(xs, w + d) - _numpy_lstm_loss(xs, w - d)) / 2e-6
    np.testing.assert_allclose(got[2][1, 5], numeric, rtol=1e-6)
