"""Loops over tensors whose sizes are unknown when the graph is built (a batch size, a trip count).

A loop whose carries, ys or branch outputs have a None in their shape packs its results after a
header of their dimensions, read when it runs. Such a graph must give the bits of the same graph
built with the sizes known, for values, gradients, jvps and both HVPs, at every size it is fed;
its derivatives must match finite differences; and it saves, loads and pickles. (Checkpoints over
an unknown number of steps: test_loops_checkpoint_unknown.py; ONNX export:
test_loops_onnx_unknown.py.)
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import graphcomp as gc
from conftest import branches_and_while
from finite_differences import central_gradient

H, D = 3, 2
RNG = np.random.default_rng(11)
W = 0.5 * RNG.standard_normal((H, H))
U = 0.5 * RNG.standard_normal((D, H))
V = RNG.standard_normal((H, H))


def _data(batch, steps, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, H)), rng.standard_normal((steps, batch, D))


def _rnn(h0, xs, w, u, reverse=False, checkpoint=None):
    def cell(carry, x):
        h, total = carry
        h = gc.tanh(h @ w + x @ u)
        return (h, total + gc.cos(h).sum()), gc.sin(h).sum(axis=1)
    (h, total), ys = gc.scan(cell, (h0, gc.constant(0.0)), xs, reverse=reverse, checkpoint=checkpoint)
    return (h ** 2).sum() + (ys * ys).sum() + total * total


def _everything(h0_shape, xs_shape, optimize=True, **options):
    """The loss, its gradients, a jvp and both HVPs (with respect to w), compiled."""
    inputs = [gc.placeholder(h0_shape, name="h0"), gc.placeholder(xs_shape, name="xs"),
              gc.placeholder((H, H), name="w"), gc.placeholder((D, H), name="u")]
    loss = _rnn(*inputs, **options)
    outputs = [loss] + gc.grad(loss, inputs)
    outputs.append(gc.jvp(loss, inputs[2:], [gc.constant(V), gc.constant(U)]))
    outputs += [gc.hvp(loss, inputs[2], gc.constant(V), mode=mode) for mode in ("rev-rev", "fwd-rev")]
    return gc.function(inputs, outputs, optimize=optimize)


UNKNOWN = [((None, H), (5, None, D)), ((4, H), (None, 4, D)), ((None, H), (None, None, D))]


@pytest.mark.parametrize("optimize", [False, True])
@pytest.mark.parametrize("h0_shape, xs_shape", UNKNOWN)
def test_unknown_sizes_give_the_bits_of_known_sizes(h0_shape, xs_shape, optimize):
    h0, xs = _data(4, 5)
    known = _everything((4, H), (5, 4, D), optimize)(h0, xs, W, U)
    got = _everything(h0_shape, xs_shape, optimize)(h0, xs, W, U)
    for a, b in zip(got, known):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_one_graph_runs_at_every_batch_size_and_trip_count():
    f = _everything((None, H), (None, None, D))
    for batch, steps in [(1, 1), (4, 5), (7, 2), (2, 9)]:
        h0, xs = _data(batch, steps, seed=batch + steps)
        known = _everything((batch, H), (steps, batch, D))(h0, xs, W, U)
        for a, b in zip(f(h0, xs, W, U), known):
            np.testing.assert_array_equal(a, b)


def test_no_steps_at_all():
    h0, xs = _data(3, 0)
    f = _everything((None, H), (None, None, D))
    value, g_h0, g_xs = f(h0, xs, W, U)[:3]
    np.testing.assert_array_equal(value, (h0 ** 2).sum())
    np.testing.assert_array_equal(g_h0, 2 * h0)
    assert g_xs.shape == (0, 3, D)


@pytest.mark.parametrize("reverse", [False, True])
def test_no_steps_give_ys_the_sizes_the_body_would(reverse):
    # the body never runs, so the ys' sizes come from its shapes inferred again on the operands
    def cell(h, x):
        h = gc.tanh(h @ gc.constant(W) + x @ gc.constant(U))
        return h, (h * 2.0, gc.concatenate([h, x @ gc.constant(U)], axis=0), h.sum(axis=1), x.T)

    def stacked(h0_shape, xs_shape):
        h0, xs = gc.placeholder(h0_shape), gc.placeholder(xs_shape)
        h, ys = gc.scan(cell, h0, xs, reverse=reverse)
        return gc.function([h0, xs], [h, *ys])
    for batch in (1, 3):
        h0, xs = _data(batch, 0)
        known = stacked((batch, H), (0, batch, D))(h0, xs)
        got = stacked((None, H), (None, None, D))(h0, xs)
        assert [a.shape for a in got] == [b.shape for b in known]
        assert got[1].shape == (0, batch, H) and got[2].shape == (0, 2 * batch, H) and got[4].shape == (0, D, batch)
        np.testing.assert_array_equal(got[0], h0)


@pytest.mark.slow
def test_reverse_scan_and_checkpoints_over_an_unknown_batch():
    h0, xs = _data(4, 7)
    for options in ({"reverse": True}, {"checkpoint": 3}, {"checkpoint": 2, "reverse": True}):
        known = _everything((4, H), (7, 4, D), **options)(h0, xs, W, U)
        got = _everything((None, H), (7, None, D), **options)(h0, xs, W, U)
        for a, b in zip(got, known):
            np.testing.assert_array_equal(a, b, err_msg=str(options))


def test_checkpoints_over_xs_of_two_unknown_sizes():
    xs = RNG.standard_normal((7, 2, 3))

    def gradients(shape, reverse):
        x = gc.placeholder(shape, name="xs")
        c, ys = gc.scan(lambda c, row: (gc.tanh(c * 0.5 + row), gc.sin(c)), x[0] * 0.0, x, checkpoint=3,
                        reverse=reverse)
        loss = (c ** 2).sum() + (ys * x).sum()
        return gc.function([x], [loss, gc.grad(loss, x)])(xs)
    for reverse in (False, True):
        for a, b in zip(gradients((7, None, None), reverse), gradients((7, 2, 3), reverse)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_derivatives_match_finite_differences():
    h0, xs = _data(3, 4)
    f = _everything((None, H), (None, None, D))
    args = [h0, xs, W, U]
    results = f(*args)
    for position in range(4):
        def loss_at(value, position=position):
            moved = list(args)
            moved[position] = value
            return f(*moved)[0]
        np.testing.assert_allclose(results[1 + position], central_gradient(loss_at, args[position]),
                                   rtol=1e-6, atol=1e-8)
    eps = 1e-6
    up, down = f(h0, xs, W + eps * V, U + eps * U)[0], f(h0, xs, W - eps * V, U - eps * U)[0]
    np.testing.assert_allclose(results[5], (up - down) / (2 * eps), rtol=1e-6, atol=1e-8)
    eps = 1e-5
    difference = (f(h0, xs, W + eps * V, U)[3] - f(h0, xs, W - eps * V, U)[3]) / (2 * eps)
    for hvp in results[6:]:
        np.testing.assert_allclose(hvp, difference, rtol=1e-5, atol=1e-7)


def test_a_scan_over_the_rows_a_mask_keeps():
    """A trip count that depends on the values: scan over x[mask]."""
    x = gc.placeholder((6, 2), name="x")
    kept = x[x[:, 0] > 0]
    total, ys = gc.scan(lambda c, row: (c * 0.5 + gc.sin(row), c.sum()), gc.constant(np.zeros(2)), kept)
    loss = (total ** 2).sum() + ys.sum()
    f = gc.function([x], [loss, ys, gc.grad(loss, x)])
    values = RNG.standard_normal((6, 2))
    c, expected_ys = np.zeros(2), []
    for row in values[values[:, 0] > 0]:
        expected_ys.append(c.sum())
        c = c * 0.5 + np.sin(row)
    value, got_ys, gradient = f(values)
    np.testing.assert_allclose(value, (c ** 2).sum() + sum(expected_ys), rtol=1e-14)
    np.testing.assert_allclose(got_ys, expected_ys, rtol=1e-14)
    np.testing.assert_allclose(gradient, central_gradient(lambda v: f(v)[0], values), rtol=1e-6, atol=1e-8)


def _branches_and_while(shape):
    x = gc.placeholder(shape, name="x")
    w = gc.placeholder((H, H), name="w")
    loss, _, _ = branches_and_while(x, w)
    inputs = [x, w]
    outputs = [loss] + gc.grad(loss, inputs) + [gc.jvp(loss, inputs, [x * 0.0 + 1.0, gc.constant(V)])]
    outputs += [gc.hvp(loss, w, gc.constant(V), mode=mode) for mode in ("rev-rev", "fwd-rev")]
    return gc.function(inputs, outputs)


def test_while_loop_switch_cond_and_fori_loop_over_an_unknown_batch():
    x = 0.3 * RNG.standard_normal((4, H))
    known = _branches_and_while((4, H))(x, W)
    got = _branches_and_while((None, H))(x, W)
    for a, b in zip(got, known):
        np.testing.assert_array_equal(a, b)
    f = _branches_and_while((None, H))
    np.testing.assert_allclose(f(x, W)[1], central_gradient(lambda v: f(v, W)[0], x), rtol=1e-6, atol=1e-8)
    assert f(x[:2], W)[1].shape == (2, H)


def test_saves_loads_and_pickles_with_the_same_bits(tmp_path):
    f = _everything((None, H), (None, None, D))
    h0, xs = _data(3, 4)
    expected = f(h0, xs, W, U)
    gc.save(f, tmp_path / "unknown.gcz")
    loaded = gc.load(tmp_path / "unknown.gcz")
    copy = pickle.loads(pickle.dumps(f))
    for g in (loaded, copy):
        for a, b in zip(g(h0, xs, W, U), expected):
            np.testing.assert_array_equal(a, b)


def test_xs_of_two_known_lengths_are_refused():
    a, b = gc.placeholder((3, 2)), gc.placeholder((4, 2))
    with pytest.raises(gc.ShapeError, match=r"leading axes of lengths \[3, 4\]"):
        gc.scan(lambda c, x: (c, None), gc.constant(0.0), (a, b))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_other_float_dtypes_give_the_bits_of_known_sizes(dtype):
    def compiled(h0_shape, xs_shape):
        inputs = [gc.placeholder(h0_shape, dtype=dtype), gc.placeholder(xs_shape, dtype=dtype),
                  gc.placeholder((H, H), dtype=dtype), gc.placeholder((D, H), dtype=dtype)]
        h0, xs, w, u = inputs

        def cell(h, x):
            h = gc.tanh(h @ w + x @ u)
            return h, gc.sin(h).sum(axis=1)
        h, ys = gc.scan(cell, h0, xs)
        loss = (h ** 2).sum() + (ys * ys).sum()
        return gc.function(inputs, [loss] + gc.grad(loss, inputs)), loss
    h0, xs = _data(3, 4)
    args = [a.astype(dtype) for a in (h0, xs, W, U)]
    known, _ = compiled((3, H), (4, 3, D))
    unknown, loss = compiled((None, H), (None, None, D))
    packed = [n for n in gc.topological_order([loss]) if n.op.name == "scan"]
    # float32 results keep their dtype after a header (each size as two exact float32 halves)
    assert [n.dtype for n in packed] == [np.dtype(dtype if dtype == "float32" else "float64")]
    for a, b in zip(unknown(*args), known(*args)):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_a_header_holds_sizes_beyond_what_one_entry_of_its_dtype_counts_exactly(dtype):
    from graphcomp.ops.packing import header_of, header_sizes, layout
    shapes = [(2 ** 24 + 1, 3), (5,), (2 ** 40 + 7, 0, 1)]
    packed_dtype = layout([(None, 3), (5,), (None, 0, 1)], [dtype] * 3)[3]
    header = np.asarray(header_of(shapes, packed_dtype), dtype=packed_dtype)
    assert header_sizes(header, (2, 1, 3)) == shapes


def test_xs_of_unknown_length_the_body_never_reads_still_count_the_steps():
    # the optimizer drops a sequence nobody reads, but not the one that tells the number of steps
    xs = gc.placeholder((None, 2))
    total, _ = gc.scan(lambda c, x: (c * 0.5 + 1.0, None), gc.constant(np.zeros(2)), xs)
    for optimize in (False, True):
        f = gc.function([xs], total, optimize=optimize)
        for steps in (0, 1, 4):
            expected = np.zeros(2)
            for _ in range(steps):
                expected = expected * 0.5 + 1.0
            np.testing.assert_array_equal(f(np.ones((steps, 2))), expected)


def test_eight_threads_at_other_batch_sizes_and_lengths_keep_their_own_results(switch_often):
    # each thread calls one compiled function (sizes unknown when built) at sizes of its own,
    # keeping every result: preallocated packed vectors, shapes inferred per operand shapes and
    # the while_loop's counted steps must never mix calls
    from conftest import run_in_threads
    h0, xs = gc.placeholder((None, H)), gc.placeholder((None, None, D))
    w, u = gc.placeholder((H, H)), gc.placeholder((D, H))
    loss = _rnn(h0, xs, w, u)
    root = gc.while_loop(lambda r: gc.abs(r * r - (w * w).sum()) > 1e-12,
                         lambda r: 0.5 * (r + (w * w).sum() / r), (w * w).sum() + 1.0)
    outputs = [loss + root] + gc.grad(loss + root, [h0, xs, w])
    f = gc.function([h0, xs, w, u], outputs)
    cases = [_data(batch, steps, seed=k) for k, (batch, steps) in enumerate([(1, 3), (4, 5), (2, 0), (3, 1),
                                                                              (5, 2), (2, 6), (1, 1), (3, 4)])]
    scale = [1.0 + 0.1 * k for k in range(8)]
    expected = [f(h, x, W * s, U) for (h, x), s in zip(cases, scale)]
    kept = [[] for _ in cases]

    def work(k):
        h, x = cases[k]
        for _ in range(12):
            kept[k].append(f(h, x, W * scale[k], U))
    run_in_threads(work)
    for k, results in enumerate(kept):
        for got in results:
            for a, b in zip(got, expected[k]):
                assert a.shape == b.shape
                np.testing.assert_array_equal(a, b)


def test_a_reverse_pass_that_reads_nothing_per_step_still_takes_the_xs_length():
    a, xs = gc.placeholder(()), gc.placeholder((None, 2))
    h, _ = gc.scan(lambda c, x: (c * 0.5 + 1.0, None), a * gc.constant(np.ones(2)), xs)
    for optimize in (False, True):
        f = gc.function([a, xs], gc.grad(h.sum(), a), optimize=optimize)
        for steps in (0, 1, 3):
            np.testing.assert_array_equal(f(np.array(2.0), np.ones((steps, 2))), 2 * 0.5 ** steps)
