"""A loop's carries updated in place: from its second step on, a loop's body may write its new
carries over the old ones (graphcomp.loops.Body.step_runners), since those are arrays the body
made itself and nothing else holds them.

The adversaries: every pattern of carries that could let such a write reach an array someone
else still holds (the caller's initial carries, a carry passed through unchanged, two carries
that are one array, a carry that views another, a carry that is a const or a row of the xs, a
carry that is also a ys); results kept across calls; eight threads at once with thread switches
every microsecond; an error after the body has written over its carries. Each loop must give
the bits of the same steps unrolled in the graph, and leave the caller's arrays as they were.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from conftest import run_in_threads
from graphcomp.loops import SCAN, Body, _own_carries

RNG = np.random.default_rng(11)
N = 5


def _unrolled_scan(f, init, xs):
    carry, ys = init, []
    for t in range(xs.shape[0]):
        carry, y = f(carry, xs[t])
        ys.append(y)
    return carry, gc.stack(ys)


def _compiled(step, looped, shapes, optimize=True):
    """gc.function of (carries..., ys) of `step` scanned over xs, with the loop or unrolled."""
    a, b, xs = (gc.placeholder(shape) for shape in shapes)
    k = gc.constant(np.arange(N * N, dtype=np.float64).reshape(N, N) / 10.0)
    run = (lambda f, c, x: gc.scan(f, c, x)) if looped else _unrolled_scan
    (c0, c1), ys = run(lambda c, x: step(c, x, k), (a, b), xs)
    return gc.function([a, b, xs], [c0, c1, ys], optimize=optimize)


STEPS = {
    "one new, one passed through": lambda c, x, k: ((c[0] * 0.5 + x, c[1]), c[0] + c[1]),
    "swapped, each changed": lambda c, x, k: ((c[1] * 1.5, c[0] + x), c[0] - c[1]),
    "swapped, both passed through": lambda c, x, k: ((c[1], c[0]), c[0] * x),
    "one array twice": lambda c, x, k: (lambda h: ((h, h), h * 2.0))(gc.tanh(c[0] + c[1] + x)),
    "one viewing the other": lambda c, x, k: (lambda h: ((h, h.T), h - 1.0))(gc.tanh(c[0] @ c[1] + x)),
    "a const as a carry": lambda c, x, k: ((k, c[0] * c[1] + x), c[0]),
    "a row of the xs as a carry": lambda c, x, k: ((x, c[0] + c[1] * 0.25), c[1]),
    "the carry in as a ys": lambda c, x, k: ((c[0] * 2.0 - x, c[1] + c[0]), c[0]),
    "the new carry as a ys": lambda c, x, k: (lambda h: ((h, c[1] * 0.9), h))(gc.sin(c[0] + x)),
    "new carries written over each other's": lambda c, x, k: ((c[0] + c[1], c[0] * c[1] + x), x * 0.5),
    "a matmul carry": lambda c, x, k: ((gc.tanh(c[0] @ k + x), c[1] @ k * 0.1), c[0].sum(axis=0)),
}


@pytest.mark.parametrize("name", list(STEPS))
def test_carry_patterns_give_the_unrolled_bits_and_leave_the_callers_arrays(name):
    shapes = [(N, N), (N, N), (7, N, N)]
    looped = _compiled(STEPS[name], True, shapes)
    unrolled = _compiled(STEPS[name], False, shapes)
    plain = _compiled(STEPS[name], True, shapes, optimize=False)
    kept = []
    for _ in range(3):  # each call's results kept, and checked again after the later calls
        args = [RNG.standard_normal(shape) * 0.5 for shape in shapes]
        copies = [a.copy() for a in args]
        got = looped(*args)
        for a, c in zip(args, copies):
            np.testing.assert_array_equal(a, c)  # the caller's arrays, never written
        for expected in (unrolled(*args), plain(*args)):
            for g, e in zip(got, expected):
                np.testing.assert_array_equal(g, e, err_msg=name)
        kept.append(([g.copy() for g in got], got))
    for copies, results in kept:
        for c, r in zip(copies, results):
            np.testing.assert_array_equal(c, r)


def _scan_body(f):
    [node] = [node for node in f.graph.nodes if node.op is SCAN]
    return node.attrs["body"]


@pytest.mark.parametrize("name, own", [
    ("one new, one passed through", [0]),
    ("swapped, each changed", [0, 1]),
    ("swapped, both passed through", []),
    ("one array twice", []),
    ("one viewing the other", []),
    ("a const as a carry", [1]),
    ("a row of the xs as a carry", [1]),
    ("new carries written over each other's", [0, 1]),
])
def test_only_carries_of_the_bodys_own_making_are_written_over(name, own):
    f = _compiled(STEPS[name], True, [(N, N), (N, N), (7, N, N)])
    body = _scan_body(f)
    compiled = body.function()
    owners = compiled.programs.general.plan.result_owners
    assert _own_carries(compiled.inputs, compiled.graph.outputs, owners, 2) == own
    first, later = body.step_runners(2)
    assert (later is first) == (not own)


def test_the_later_steps_write_the_new_carry_over_the_old_one():
    c0 = gc.placeholder((64, 64))
    final, _ = gc.scan(lambda c, x: (c * 0.5 + 1.0, None), c0, None, length=20)
    f = gc.function([c0], final)
    start = RNG.standard_normal((64, 64))
    expected = start.copy()
    for _ in range(20):
        expected = expected * 0.5 + 1.0
    np.testing.assert_array_equal(f(start), expected)
    body = _scan_body(f)
    general = body.function().programs.general.source
    donating = body.function().programs.donating([0]).source
    assert "out=p0" not in general and "out=p0" in donating


def test_a_while_loop_writes_over_its_carries_and_gives_the_unrolled_bits():
    a = gc.placeholder((N,))
    r = gc.while_loop(lambda r: gc.any(gc.abs(r * r - a) > 1e-12), lambda r: 0.5 * (r + a / r), a + 1.0)
    f = gc.function([a], r)
    values = RNG.uniform(1.0, 4.0, N)
    copy = values.copy()
    expected, steps = values + 1.0, 0
    while np.any(np.abs(expected * expected - values) > 1e-12):
        expected, steps = 0.5 * (expected + values / expected), steps + 1
    got = f(values)
    np.testing.assert_array_equal(values, copy)
    np.testing.assert_array_equal(got, expected)
    assert steps > 2
    [node] = [node for node in f.graph.nodes if node.op.name == "while_loop"]
    first, later = node.attrs["body"].step_runners(1)
    assert later is not first


def test_eight_threads_each_with_their_own_carries(switch_often):
    size, length = 40, 25
    c0, xs = gc.placeholder((size, size)), gc.placeholder((length, size, size))
    w = gc.placeholder((size, size))

    def cell(c, x):
        h = gc.tanh(c @ w * 0.1 + x)
        return h, h.sum()
    final, ys = gc.scan(cell, c0, xs)
    r = gc.while_loop(lambda r: gc.max(gc.abs(r)) > 1e-3, lambda r: r * 0.5, final + 1.0)
    f = gc.function([c0, xs, w], [final, ys, r])
    reference = gc.function([c0, xs, w], [final, ys, r], optimize=False)
    draws = [[RNG.standard_normal(s) for s in ((size, size), (length, size, size), (size, size))] for _ in range(8)]
    expected = [reference(*args) for args in draws]
    results = [[] for _ in draws]

    def work(k):
        for _ in range(4):
            results[k].append(f(*draws[k]))
    run_in_threads(work)
    for k, kept in enumerate(results):
        for got in kept:
            for g, e in zip(got, expected[k]):
                np.testing.assert_array_equal(g, e)


def test_an_error_after_the_carries_were_written_over_is_raised_not_recomputed():
    c0 = gc.placeholder((N, N))
    final, _ = gc.scan(lambda c, x: (c * 1e100, None), c0, None, length=6)
    f = gc.function([c0], final)
    start = np.ones((N, N))
    with np.errstate(over="raise"):
        with pytest.raises(Exception, match="overflow"):
            f(start)
    np.testing.assert_array_equal(start, np.ones((N, N)))
    with np.errstate(over="ignore"):
        assert np.isinf(f(start)).all()


def test_the_checked_call_stands_in_only_before_the_first_write():
    """A body program that fails on an operand of a type only the checked call converts (a
    list: it has no .ndim, which the matmul record reads) runs the checked call instead when it failed before writing
    over a carry, and raises when it failed after."""
    c, k = gc.placeholder((3, 3)), gc.placeholder((3, 3))
    before = Body([c, k], [k @ k + c])  # the matmul fails first; then the add would write over c
    grown = gc.exp(c)
    after = Body([c, k], [grown @ k])  # exp writes over c, then the matmul fails
    ks = [[float(i + 3 * j) for i in range(3)] for j in range(3)]
    start = np.arange(9.0).reshape(3, 3) / 10.0
    first, later = before.step_runners(1)
    assert later is not first
    np.testing.assert_array_equal(later([start.copy(), ks])[0], np.array(ks) @ np.array(ks) + start)
    first, later = after.step_runners(1)
    assert later is not first
    with pytest.raises(AttributeError):
        later([start.copy(), ks])
    np.testing.assert_array_equal(first([start.copy(), ks])[0], np.exp(start) @ np.array(ks))


def test_carries_of_unknown_size_or_scalars_are_not_written_over():
    h0, xs = gc.placeholder((None, N)), gc.placeholder((None, None, N))
    total = gc.placeholder(())
    (h, s), ys = gc.scan(lambda c, x: ((gc.tanh(c[0] + x), c[1] + x.sum()), c[0] * 2.0), (h0, total), xs)
    f = gc.function([h0, total, xs], [h, s, ys])
    body = _scan_body(f)
    first, later = body.step_runners(2)
    assert later is first
    start, steps = RNG.standard_normal((3, N)), RNG.standard_normal((4, 3, N))
    expected_h, expected_s, rows = start, 0.5, []
    for x in steps:
        rows.append(expected_h * 2.0)
        expected_h, expected_s = np.tanh(expected_h + x), expected_s + x.sum()
    for got, expected in zip(f(start, 0.5, steps), (expected_h, expected_s, np.stack(rows))):
        np.testing.assert_allclose(got, expected, rtol=1e-14)
