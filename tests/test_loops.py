"""Loops and branches: gc.scan, gc.fori_loop, gc.while_loop, gc.cond and gc.switch.

Values against plain NumPy loops, derivatives (to second order, both modes) against central
finite differences and against JAX's lax, both optimize modes, threads, errors, pickling.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import graphcomp as gc
from conftest import checkpointed_loss, run_in_threads
from finite_differences import central_gradient

RNG = np.random.default_rng(21)
X = RNG.standard_normal((6, 3))
H0 = RNG.standard_normal(3)
W = 0.5 * RNG.standard_normal((3, 3))
B = RNG.standard_normal(3)


def rnn_graph(h0, xs, w, reverse=False):
    """An Elman cell over xs; the loss reads the last carry and every y."""
    def cell(carry, x):
        h, total = carry
        h = gc.tanh(w @ h + x)
        return (h, total + gc.sin(h).sum()), (h * h, gc.cos(h).sum())
    (h, total), (squares, cosines) = gc.scan(cell, (h0, gc.constant(0.0)), xs, reverse=reverse)
    return (h ** 3).sum() + total + 0.5 * (squares * squares).sum() + (cosines * cosines).sum()


def rnn_numpy(h0, xs, w, reverse=False):
    h, total, squares, cosines = h0, 0.0, [None] * len(xs), [None] * len(xs)
    for t in (reversed(range(len(xs))) if reverse else range(len(xs))):
        h = np.tanh(w @ h + xs[t])
        total += np.sin(h).sum()
        squares[t], cosines[t] = h * h, np.cos(h).sum()
    return (h ** 3).sum() + total + 0.5 * (np.array(squares) ** 2).sum() + (np.array(cosines) ** 2).sum()


def _compiled(build, arrays, optimize=True):
    inputs = [gc.placeholder(a.shape) for a in arrays]
    return inputs, build(*inputs), (lambda out: gc.function(inputs, out, optimize=optimize))


# values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("reverse", [False, True])
def test_scan_values_match_a_numpy_loop(reverse):
    inputs, loss, compile_ = _compiled(lambda h, x, w: rnn_graph(h, x, w, reverse), [H0, X, W])
    assert np.isclose(compile_(loss)(H0, X, W), rnn_numpy(H0, X, W, reverse), rtol=1e-12)


def test_scan_structures_length_and_integer_carries():
    xs = (gc.constant(X), gc.constant(np.arange(6)))

    def step(carry, x):
        total, count = carry
        row, k = x
        return [total + row * k, count + 1], (total.sum(), k * 2)

    (total, count), (sums, doubled) = gc.scan(step, [gc.constant(np.zeros(3)), gc.constant(np.int64(0))], xs)
    assert count.dtype == np.int64 and doubled.dtype == np.int64
    got = gc.function([], [total, count, sums, doubled])()
    expected_total, expected_sums = np.zeros(3), []
    for k in range(6):
        expected_sums.append(expected_total.sum())
        expected_total = expected_total + X[k] * k
    np.testing.assert_allclose(got[0], expected_total, rtol=1e-14)
    assert got[1] == 6 and list(got[3]) == [0, 2, 4, 6, 8, 10]
    np.testing.assert_allclose(got[2], expected_sums, rtol=1e-14)
    carry, ys = gc.scan(lambda c, _: (c * 2.0, c), gc.constant(1.0), length=4)  # no xs
    np.testing.assert_array_equal(gc.function([], ys)(), [1.0, 2.0, 4.0, 8.0])
    carry, ys = gc.scan(lambda c, x: (c + x, None), gc.constant(0.0), gc.constant(np.zeros((0,))))
    assert ys is None and gc.function([], carry)() == 0.0


def test_fori_loop_matches_a_python_loop():
    a = gc.placeholder((3,))
    out = gc.fori_loop(2, 7, lambda i, c: c * 0.9 + gc.sin(c) * gc.cast(i, "float64"), a)
    c = B.copy()
    for i in range(2, 7):
        c = c * 0.9 + np.sin(c) * i
    np.testing.assert_allclose(gc.function([a], out)(B), c, rtol=1e-13)
    assert np.array_equal(gc.function([a], gc.fori_loop(3, 3, lambda i, c: c + 1.0, a))(B), B)


def test_the_optimizer_does_not_change_results():
    def build(h, x, w):
        loss = rnn_graph(h, x, w)
        return [loss] + gc.grad(loss, [h, x, w])
    inputs, outs, _ = _compiled(build, [H0, X, W])
    plain = gc.function(inputs, outs, optimize=False)(H0, X, W)
    optimized = gc.function(inputs, outs, optimize=True)(H0, X, W)
    for a, b in zip(plain, optimized):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_the_body_is_compiled_once():
    h, x, w = gc.placeholder((3,)), gc.placeholder((6, 3)), gc.placeholder((3, 3))
    carry, _ = gc.scan(lambda c, xt: (gc.tanh(w @ c + xt), None), h, x)
    f = gc.function([h, x, w], carry)
    scan_node = next(n for n in gc.topological_order([carry]) if n.op.name == "scan")
    body = scan_node.attrs["body"]
    f(H0, X, W)
    compiled = body.function()
    f(H0, X, W)
    assert body.function() is compiled


# derivatives -------------------------------------------------------------------------------------

@pytest.mark.parametrize("reverse", [False, True])
def test_scan_gradient_and_hvp_match_finite_differences(reverse):
    h, x, w = gc.placeholder((3,)), gc.placeholder((6, 3)), gc.placeholder((3, 3))
    loss = rnn_graph(h, x, w, reverse)
    gradient = gc.function([h, x, w], gc.grad(loss, [h, x, w]))(H0, X, W)
    expected = [central_gradient(lambda v: rnn_numpy(v, X, W, reverse), H0),
                central_gradient(lambda v: rnn_numpy(H0, v, W, reverse), X),
                central_gradient(lambda v: rnn_numpy(H0, X, v, reverse), W)]
    for got, want in zip(gradient, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    v = RNG.standard_normal((3, 3))
    for mode in ("rev-rev", "fwd-rev"):
        hv = gc.function([h, x, w], gc.hvp(loss, w, gc.constant(v), mode=mode))(H0, X, W)
        grad_w = gc.function([h, x, w], gc.grad(loss, w))
        eps = 1e-5
        numeric = (grad_w(H0, X, W + eps * v) - grad_w(H0, X, W - eps * v)) / (2 * eps)
        np.testing.assert_allclose(hv, numeric, rtol=1e-6, atol=1e-8)


def test_check_grads_through_fori_loop_and_nested_loops_and_branches():
    def unrolled_optimizer(lr, w0):  # a meta-gradient: the loss after steps of gradient descent
        return (gc.fori_loop(0, 5, lambda i, w: w - lr * (w - B) * gc.cos(w), w0) ** 2).sum()
    gc.testing.check_grads(unrolled_optimizer, [np.array(0.3), H0], order=2)

    def nested(h0, xs):
        def outer(c, x):
            inner, _ = gc.scan(lambda d, k: (gc.sin(d * k + x), None), c, gc.constant(np.array([0.5, 1.5])))
            branch = gc.cond(x.sum() > 0, lambda u: u * 2.0, lambda u: gc.exp(u * 0.1), inner)
            return branch, (branch * x).sum()
        c, ys = gc.scan(outer, h0, xs)
        return (c ** 2).sum() + (ys ** 2).sum()
    gc.testing.check_grads(nested, [H0, X[:3]], order=2)


def test_jvp_and_nested_grad_of_a_scan():
    h, x, w = gc.placeholder((3,)), gc.placeholder((6, 3)), gc.placeholder((3, 3))
    loss = rnn_graph(h, x, w)
    t = RNG.standard_normal(3)
    forward = gc.function([h, x, w], gc.jvp(loss, h, gc.constant(t)))(H0, X, W)
    assert np.isclose(forward, central_gradient(lambda v: rnn_numpy(v, X, W), H0) @ t, rtol=1e-6)
    inner = gc.grad(loss, h)
    second = gc.grad((inner * inner).sum(), h)  # gc.grad(gc.grad(...)) nests
    value = gc.function([h, x, w], second)(H0, X, W)
    grad_h = gc.function([h, x, w], inner)
    numeric = central_gradient(lambda v: (grad_h(v, X, W) ** 2).sum(), H0)
    np.testing.assert_allclose(value, numeric, rtol=1e-6, atol=1e-8)


# against JAX -------------------------------------------------------------------------------------

def _jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


@pytest.mark.slow
def test_scan_gradient_and_hvp_match_jax():
    jax = _jax()
    jnp = jax.numpy

    def jax_loss(h0, xs, w):
        def cell(carry, x):
            h, total = carry
            h = jnp.tanh(w @ h + x)
            return (h, total + jnp.sin(h).sum()), (h * h, jnp.cos(h).sum())
        (h, total), (squares, cosines) = jax.lax.scan(cell, (h0, 0.0), xs)
        return (h ** 3).sum() + total + 0.5 * (squares * squares).sum() + (cosines * cosines).sum()

    h, x, w = gc.placeholder((3,)), gc.placeholder((6, 3)), gc.placeholder((3, 3))
    loss = rnn_graph(h, x, w)
    v = RNG.standard_normal((3, 3))
    got = gc.function([h, x, w], gc.grad(loss, [h, x, w]) + [gc.hvp(loss, w, gc.constant(v))])(H0, X, W)
    want = list(jax.grad(jax_loss, argnums=(0, 1, 2))(H0, X, W))
    want.append(jax.jvp(lambda w_: jax.grad(jax_loss, argnums=2)(H0, X, w_), (W,), (v,))[1])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_cond_and_fori_loop_gradients_match_jax():
    jax = _jax()
    jnp = jax.numpy

    def jax_f(a, lr):
        w = jax.lax.fori_loop(0, 4, lambda i, w: w - lr * jnp.sin(w) * i, a)
        return jax.lax.cond(w.sum() > 0, lambda u: (u ** 2).sum(), lambda u: jnp.exp(u).sum(), w)

    def gc_f(a, lr):
        w = gc.fori_loop(0, 4, lambda i, w: w - lr * gc.sin(w) * gc.cast(i, "float64"), a)
        return gc.cond(w.sum() > 0, lambda u: (u ** 2).sum(), lambda u: gc.exp(u).sum(), w)

    a, lr = gc.placeholder((3,)), gc.placeholder(())
    out = gc_f(a, lr)
    t = RNG.standard_normal(3)
    f = gc.function([a, lr], [out] + gc.grad(out, [a, lr]) + [gc.hvp(out, a, gc.constant(t))])
    for start in (B, -np.abs(B) - 1):
        got = f(start, np.array(0.1))
        want = [jax_f(start, 0.1), *jax.grad(jax_f, argnums=(0, 1))(start, 0.1),
                jax.jvp(lambda u: jax.grad(jax_f)(u, 0.1), (start,), (t,))[1]]
        for g, w_ in zip(got, want):
            np.testing.assert_allclose(g, np.asarray(w_), rtol=1e-10, atol=1e-12)


# branches and while_loop --------------------------------------------------------------------------

def test_only_the_taken_branch_runs():
    p, a = gc.placeholder((), dtype="bool"), gc.placeholder((2, 2))
    out = gc.cond(p, lambda m: gc.linalg.inv(m), lambda m: m * 2.0, a)
    f = gc.function([p, a], out)
    singular = np.ones((2, 2))
    np.testing.assert_array_equal(f(np.array(False), singular), 2 * singular)  # inv never ran
    with pytest.raises(Exception):
        f(np.array(True), singular)
    i = gc.placeholder((), dtype="int64")
    picked = gc.switch(i, [lambda m: m + 1.0, lambda m: m * 3.0, gc.linalg.inv], a)
    g = gc.function([i, a], picked)
    np.testing.assert_array_equal(g(np.array(-4), singular), singular + 1)  # clamped, as JAX
    np.testing.assert_array_equal(g(np.array(1), singular), 3 * singular)


def test_while_loop_newton_square_root_and_its_derivatives_in_both_modes():
    a = gc.placeholder(())

    def step(carry):
        x, k = carry
        return 0.5 * (x + a / x), k + 1

    root, steps = gc.while_loop(lambda c: gc.logical_and(gc.abs(c[0] * c[0] - a) > 1e-13, c[1] < 50),
                                step, (a + 1.0, gc.constant(np.int64(0))))
    one = gc.constant(1.0)
    f = gc.function([a], [root, steps, gc.jvp(root, a, one), gc.grad(root, a), gc.hvp(root, a, one),
                          gc.hvp(root, a, one, mode="rev-rev")])
    for value in (2.0, 9.0, 0.25):
        r, k, forward, reverse, hv, hv_rev = f(np.array(value))
        assert np.isclose(r, np.sqrt(value), rtol=1e-14) and 0 < k < 50
        assert np.isclose(forward, 0.5 / np.sqrt(value), rtol=1e-9)
        assert np.isclose(reverse, 0.5 / np.sqrt(value), rtol=1e-9)
        assert np.isclose(hv, -0.25 * value ** -1.5, rtol=1e-8) and np.isclose(hv_rev, hv, rtol=1e-10)

    def scaled_newton(a, w):
        r = gc.while_loop(lambda r: gc.any(gc.abs(r * r - a) > 1e-12), lambda r: 0.5 * (r + a / r) * w / w, a)
        return (r * w) ** 2
    gc.testing.check_grads(scaled_newton, [np.array([2.0, 3.0]), np.array([1.0, 2.0])], order=2)


def test_while_loop_reverse_mode_runs_a_number_of_body_steps_linear_in_the_trip_count(monkeypatch):
    # the forward steps are counted, then run once more by a scan that stores what the reverse
    # pass reads: a few body steps per iteration, not one recomputation from the start per step
    from graphcomp.loops import Body
    runs = []
    runner = Body.runner

    def counting(self):
        run = runner(self)
        return lambda arrays: runs.append(self) or run(arrays)
    monkeypatch.setattr(Body, "runner", counting)
    a = gc.placeholder(())
    x = gc.while_loop(lambda c: c[1] < gc.cast(a, "int64"), lambda c: (c[0] * 0.99 + gc.sin(c[0]) * 0.01, c[1] + 1),
                      (a * 0.1, gc.constant(np.int64(0))))[0]
    f = gc.function([a], gc.grad(x * x, a))
    per_trip = {}
    for n in (40, 80, 160):
        runs.clear()
        got = f(np.array(float(n)))
        per_trip[n] = len(runs) / n
        unrolled = a * 0.1
        for _ in range(n):
            unrolled = unrolled * 0.99 + gc.sin(unrolled) * 0.01
        np.testing.assert_array_equal(got, gc.function([a], gc.grad(unrolled * unrolled, a))(np.array(float(n))))
    assert max(per_trip.values()) < 8 and per_trip[160] < per_trip[40] + 0.5, per_trip


def test_a_while_loop_in_a_scan_body_is_differentiated_in_both_modes():
    # each step's loop runs its own number of trips: what the reverse pass of those trips reads
    # differs in size from step to step, so the outer scan stores the step's inputs instead
    a, xs = gc.placeholder(()), gc.placeholder((4,))

    def cell(c, x):
        target = x * x + c
        root = gc.while_loop(lambda r: gc.abs(r * r - target) > 1e-12, lambda r: 0.5 * (r + target / r),
                             target + 1.0)
        return c * 0.5 + root, root
    c, ys = gc.scan(cell, a, xs)
    loss = c + (ys * ys).sum()
    X, A = np.array([0.3, 1.2, -0.7, 2.0]), np.array(1.3)
    value = gc.function([a, xs], loss)
    gradient = gc.function([a, xs], gc.grad(loss, a))
    for optimize in (False, True):
        g_a, g_xs, fwd_rev, rev_rev = gc.function(
            [a, xs], gc.grad(loss, [a, xs]) + [gc.hvp(loss, a, gc.constant(1.0), mode=mode)
                                               for mode in ("fwd-rev", "rev-rev")], optimize=optimize)(A, X)
        np.testing.assert_allclose(g_a, central_gradient(lambda v: value(v, X), A), rtol=1e-7)
        np.testing.assert_allclose(g_xs, central_gradient(lambda v: value(A, v), X), rtol=1e-7)
        np.testing.assert_allclose(fwd_rev, central_gradient(lambda v: gradient(v, X), A), rtol=1e-6)
        np.testing.assert_allclose(rev_rev, fwd_rev, rtol=1e-12)


def test_a_while_loop_of_no_trips_passes_the_gradient_straight_through():
    a = gc.placeholder(())
    r = gc.while_loop(lambda r: r > 10.0, lambda r: r * 0.5, a * 2.0)
    outputs = [r, gc.grad(r * r, a)] + [gc.hvp(r * r, a, gc.constant(1.0), mode=m) for m in ("rev-rev", "fwd-rev")]
    f = gc.function([a], outputs)
    np.testing.assert_array_equal(f(np.array(1.5)), [3.0, 12.0, 8.0, 8.0])  # r = 2a: no trips
    np.testing.assert_array_equal(f(np.array(40.0)), [10.0, 5.0, 0.125, 0.125])  # r = 2a / 8: three trips


# threads, errors, pickling --------------------------------------------------------------------------

def test_one_compiled_scan_called_from_eight_threads(switch_often):
    h, x, w = gc.placeholder((3,)), gc.placeholder((6, 3)), gc.placeholder((3, 3))
    loss = rnn_graph(h, x, w)
    f = gc.function([h, x, w], [loss] + gc.grad(loss, [w]))
    starts = [RNG.standard_normal(3) for _ in range(8)]
    expected = [f(s, X, W) for s in starts]
    results, mismatches = {}, []

    def work(k):
        for _ in range(15):
            got = f(starts[k], X, W)
            if not all(np.array_equal(a, b) for a, b in zip(got, expected[k])):
                mismatches.append(k)
        results[k] = True
    run_in_threads(work)
    assert not mismatches and len(results) == 8


def test_a_carry_that_changes_shape_or_dtype_names_it_and_the_line():
    h = gc.placeholder((3,))
    with pytest.raises(gc.ShapeError, match=r"carry 0 enters the body with shape \(3,\).*leaves it with shape "
                                            r"\(1, 3\).*test_loops.py:\d+") as info:
        gc.scan(lambda c, _: (c[None, :], None), h, length=2)
    assert "gc.scan(lambda c, _: (c[None, :], None), h, length=2)" in str(info.value)
    with pytest.raises(gc.ShapeError, match="carry 1 enters the body with shape \\(\\) and dtype int64 and leaves "
                                            "it with shape \\(\\) and dtype float64"):
        gc.fori_loop(0, 2, lambda i, c: (c[0], c[1] * 1.5), (h, gc.constant(np.int64(1))))
    with pytest.raises(gc.ShapeError, match="cond: output 0 of the true branch has shape \\(3,\\).*false branch shape \\(2,\\)"):
        gc.cond(gc.constant(True), lambda u: u, lambda u: u[:2], h)
    with pytest.raises(gc.ShapeError, match="predicate must be a scalar"):
        gc.cond(h > 0, lambda u: u, lambda u: u, h)


def test_pickle_keeps_a_function_with_loops():
    h, x, w = gc.placeholder((3,)), gc.placeholder((6, 3)), gc.placeholder((3, 3))
    loss = rnn_graph(h, x, w)
    f = gc.function([h, x, w], [loss] + gc.grad(loss, [w]))
    copy = pickle.loads(pickle.dumps(f))
    for a, b in zip(copy(H0, X, W), f(H0, X, W)):
        np.testing.assert_array_equal(a, b)


def test_variables_read_in_bodies_are_captured_and_get_gradients_in_both_optimize_modes():
    w = gc.variable(W, name="w")
    x = gc.placeholder((6, 3))
    carry, ys = gc.scan(lambda h, xt: (gc.tanh(w @ h + xt), h.sum()), gc.constant(H0), x)
    branch = gc.cond(carry.sum() > 0, lambda u: u * w[0], lambda u: gc.exp(u), carry)
    settled = gc.while_loop(lambda r: gc.any(gc.abs(r * r - w[1] ** 2 - 1.0) > 1e-12),
                            lambda r: 0.5 * (r + (w[1] ** 2 + 1.0) / r), w[1] ** 2 + 2.0)
    loss = (branch ** 2).sum() + (ys ** 2).sum() + settled.sum()
    outs = [loss, gc.grad(loss, w)]
    plain, optimized = (gc.function([x], outs, optimize=flag)(X) for flag in (False, True))
    for a, b in zip(plain, optimized):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)

    def numpy_loss(wv):
        h, ys_ = H0, []
        for t in range(6):
            ys_.append(h.sum())
            h = np.tanh(wv @ h + X[t])
        branch_ = h * wv[0] if h.sum() > 0 else np.exp(h)
        return (branch_ ** 2).sum() + (np.array(ys_) ** 2).sum() + np.sqrt(wv[1] ** 2 + 1.0).sum()
    assert np.isclose(plain[0], numpy_loss(W), rtol=1e-12)
    np.testing.assert_allclose(plain[1], central_gradient(numpy_loss, W), rtol=1e-6, atol=1e-8)


def test_a_random_draw_made_inside_a_body_is_refused_and_one_made_outside_is_an_input():
    rng = gc.random.Generator(0)
    x = gc.placeholder((3,), name="x")
    with pytest.raises(NotImplementedError, match="random draw made inside a loop or branch body"):
        gc.scan(lambda c, xi: (c + rng.normal(size=c) * xi, c), x, xs=gc.constant(np.ones(4)))
    with pytest.raises(NotImplementedError, match="random draw made inside a loop or branch body"):
        gc.cond(gc.sum(x) > 0, lambda a: a * rng.random((3,)), lambda a: a, x)
    noise = rng.normal(size=(4, 3))  # drawn outside: one draw per call, read at every step
    carry, _ = gc.scan(lambda c, n: (c + n, c), x, xs=noise)
    f = gc.function([x], [carry, noise])
    total, drawn = f(np.zeros(3))
    np.testing.assert_allclose(total, drawn.sum(axis=0))


# checkpoints ---------------------------------------------------------------------------------------

def _checkpointed_everything(checkpoint, reverse, length=7):
    rng = np.random.default_rng(5)
    xs_value, v_value = rng.standard_normal((length, 3)), rng.standard_normal((3, 3))
    h, x, w = gc.placeholder((3,)), gc.placeholder((length, 3)), gc.placeholder((3, 3))
    loss, count, _ = checkpointed_loss(h, x, w, reverse, checkpoint)
    v = gc.constant(v_value)
    outs = [loss, count] + gc.grad(loss, [h, x, w]) + [gc.hvp(loss, w, v), gc.hvp(loss, w, v, mode="rev-rev")]
    f = gc.function([h, x, w], outs)
    return f, (H0, xs_value, W)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("checkpoint", [1, 2, 3, 7, 10])
def test_a_checkpointed_scan_gives_the_same_bits_as_one_storing_every_carry(checkpoint, reverse):
    f, args = _checkpointed_everything(checkpoint, reverse)
    plain, _ = _checkpointed_everything(None, reverse)
    got, want = f(*args), plain(*args)
    # value, step count, gradients and the forward-over-reverse HVP: bit for bit
    for label, a, b in zip(["value", "count", "grad h", "grad xs", "grad w", "hvp fwd-rev"], got, want):
        np.testing.assert_array_equal(a, b, err_msg=f"{label}, checkpoint={checkpoint}")
    # a second reverse pass over a segmented scan adds w's contributions piece by piece (the
    # steps that do not fill a segment, then each segment): the last bits may differ
    np.testing.assert_allclose(got[-1], want[-1], rtol=1e-13, atol=1e-14 * np.abs(want[-1]).max())


def test_a_checkpointed_scan_gradient_matches_finite_differences():
    f, (h0, xs, w) = _checkpointed_everything(3, False)
    _, _, g_h, g_x, g_w, hv, _ = f(h0, xs, w)
    np.testing.assert_allclose(g_h, central_gradient(lambda v: f(v, xs, w)[0], h0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g_x, central_gradient(lambda v: f(h0, v, w)[0], xs), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g_w, central_gradient(lambda v: f(h0, xs, v)[0], w), rtol=1e-6, atol=1e-8)


def test_a_checkpointed_scan_stores_only_every_kth_carry():
    def largest_scan_result(checkpoint):
        h, w = gc.placeholder((50,)), gc.placeholder((50,))
        carry, _ = gc.scan(lambda c, _: (gc.sin(c) * w, None), h, length=100, checkpoint=checkpoint)
        gradient = gc.grad((carry ** 2).sum(), [h, w])
        return max(n.shape[0] for n in gc.topological_order(gradient) if n.op.name == "scan")
    assert largest_scan_result(None) >= 100 * 50  # every carry stored
    assert largest_scan_result(10) <= 11 * 50 + 10 * 50  # 10 segment starts; one segment's 10 carries


def test_checkpoint_must_be_a_positive_int():
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="checkpoint must be None or a positive int"):
            gc.scan(lambda c, x: (c + x, None), gc.constant(0.0), gc.constant(np.ones(3)), checkpoint=bad)


def test_the_dask_backend_runs_loops_and_their_gradients_with_the_same_bits():
    pytest.importorskip("dask")
    h, x, w = gc.placeholder((3,)), gc.placeholder((6, 3)), gc.placeholder((3, 3))
    loss = rnn_graph(h, x, w)
    root = gc.while_loop(lambda r: gc.abs(r * r - 2.0) > 1e-12, lambda r: 0.5 * (r + 2.0 / r), (w * w).sum())
    loss = loss + gc.cond(loss > 0, lambda u: u * 2.0, lambda u: -u, root)
    outs = [loss] + gc.grad(loss, [h, x, w])
    expected = gc.function([h, x, w], outs)(H0, X, W)
    got = gc.function([h, x, w], outs, backend="dask", compute=True)(H0, X, W)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(np.asarray(a), b)
