"""gc.fori_loop with a bound that is a tensor: the trip count is known only when the loop runs.

Such a loop is a scan over the indices lower, ..., upper - 1 computed when it runs. Its value and
derivatives (gradients, jvps, both kinds of HVP) must be the bits of the same loop with Python
int bounds, for every trip count including none (upper <= lower); gradients must match central
finite differences and JAX's lax.fori_loop; bad bounds are clear errors naming the user's line.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphcomp as gc
from finite_differences import central_gradient

X = np.array([0.3, -1.2, 2.0])
LR = 0.1


def _step(lr):
    def step(i, v):
        return v - lr * gc.sin(v) * gc.cast(i, "float64")
    return step


def _everything(lower, upper, inputs, x, lr, optimize=True):
    """gc.function of the loss after the loop, its gradients, a jvp and both HVPs (in lr)."""
    v = gc.fori_loop(lower, upper, _step(lr), x)
    loss = (v ** 2).sum()
    one = gc.constant(1.0)
    outputs = [loss] + gc.grad(loss, [x, lr])
    outputs += [gc.jvp(loss, [x, lr], [gc.constant(np.ones(3)), one]),
                gc.hvp(loss, lr, one, mode="rev-rev"), gc.hvp(loss, lr, one, mode="fwd-rev")]
    return gc.function(inputs, outputs, optimize=optimize)


@pytest.mark.parametrize("optimize", [True, False])
def test_a_tensor_bound_gives_the_bits_of_int_bounds(optimize):
    x, lr = gc.placeholder((3,), name="x"), gc.placeholder((), name="lr")
    lower, upper = gc.placeholder((), "int64", name="lower"), gc.placeholder((), "int32", name="upper")
    counted = _everything(lower, upper, [x, lr, lower, upper], x, lr, optimize)
    upper_only = _everything(2, upper, [x, lr, upper], x, lr, optimize)
    for low, high in [(2, 2), (2, 1), (2, 3), (2, 7), (-3, 4), (5, 0)]:
        known = _everything(low, high, [x, lr], x, lr, optimize)(X, LR)
        for a, b in zip(counted(X, LR, low, high), known):
            np.testing.assert_array_equal(a, b, err_msg=f"range({low}, {high})")
        if low == 2:
            for a, b in zip(upper_only(X, LR, high), known):
                np.testing.assert_array_equal(a, b, err_msg=f"range(2, {high})")


def _numpy_loss(x, lr, low, high):
    v = x.copy()
    for i in range(low, high):
        v = v - lr * np.sin(v) * i
    return (v ** 2).sum()


@pytest.mark.parametrize("high", [0, 1, 4, 9])
def test_derivatives_match_finite_differences(high):
    x, lr, n = gc.placeholder((3,)), gc.placeholder(()), gc.placeholder((), "int64")
    value, g_x, g_lr, forward, hv_rev, hv_fwd = _everything(1, n, [x, lr, n], x, lr)(X, LR, high)
    np.testing.assert_allclose(value, _numpy_loss(X, LR, 1, high), rtol=1e-12)
    np.testing.assert_allclose(g_x, central_gradient(lambda v: _numpy_loss(v, LR, 1, high), X), rtol=1e-6,
                               atol=1e-8)
    slope = central_gradient(lambda v: _numpy_loss(X, float(v), 1, high), np.array(LR))
    np.testing.assert_allclose(g_lr, slope, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(forward, g_x.sum() + g_lr, rtol=1e-12, atol=1e-12)
    g_lr_of = gc.function([x, lr, n], gc.grad((gc.fori_loop(1, n, _step(lr), x) ** 2).sum(), lr))
    curvature = central_gradient(lambda v: g_lr_of(X, float(v), high), np.array(LR))
    np.testing.assert_allclose([hv_rev, hv_fwd], [curvature, curvature], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_gradients_match_jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def loss(x, lr):
        v = jax.lax.fori_loop(1, 8, lambda i, v: v - lr * jnp.sin(v) * i, x)
        return (v ** 2).sum()
    x, lr, n = gc.placeholder((3,)), gc.placeholder(()), gc.placeholder((), "int64")
    _, g_x, g_lr, *_ = _everything(1, n, [x, lr, n], x, lr)(X, LR, 8)
    expected = jax.grad(loss, argnums=(0, 1))(jnp.asarray(X), LR)
    np.testing.assert_allclose(g_x, np.asarray(expected[0]), rtol=1e-12)
    np.testing.assert_allclose(g_lr, float(expected[1]), rtol=1e-12)


def test_a_saved_loop_with_a_tensor_bound_loads_with_the_same_bits(tmp_path):
    x, lr, n = gc.placeholder((3,)), gc.placeholder(()), gc.placeholder((), "int64")
    f = _everything(0, n, [x, lr, n], x, lr)
    gc.save(f, tmp_path / "fori.gcz")
    loaded = gc.load(tmp_path / "fori.gcz")
    for a, b in zip(loaded(X, LR, 5), f(X, LR, 5)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bound, error, message", [
    (2.5, TypeError, r"upper must be an int or an integer scalar tensor, got 2\.5"),
    (True, TypeError, r"upper must be an int or an integer scalar tensor, got True"),
    ("placeholder float", gc.ShapeError, r"upper must be an integer scalar, got shape \(\) and dtype float64"),
    ("placeholder vector", gc.ShapeError, r"upper must be an integer scalar, got shape \(2,\) and dtype int64"),
])
def test_bad_bounds_are_errors_naming_the_line(bound, error, message):
    if bound == "placeholder float":
        bound = gc.placeholder(())
    elif bound == "placeholder vector":
        bound = gc.placeholder((2,), "int64")
    x = gc.placeholder((3,))
    with pytest.raises(error, match=message + r".*built at .*test_loops_fori_bounds"):
        gc.fori_loop(0, bound, lambda i, v: v * 2.0, x)


def test_a_loop_with_a_tensor_bound_exports_to_onnx():
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from test_loops_onnx_unknown import _same_in_onnxruntime
    x, lr, n = gc.placeholder((3,), name="x"), gc.placeholder((), name="lr"), gc.placeholder((), "int64", name="n")
    v = gc.fori_loop(1, n, _step(lr), x)
    loss = (v ** 2).sum()
    feeds = [[X, np.array(high), np.array(LR)] for high in (0, 1, 2, 6)]
    _same_in_onnxruntime(ort, [loss] + gc.grad(loss, [x, lr]), [x, n, lr], feeds)


def test_a_fori_loop_whose_trip_count_differs_at_every_step_of_a_scan():
    h0, xs, counts = gc.placeholder((3,)), gc.placeholder((4, 3)), gc.placeholder((4,), "int64")

    def outer(c, row):
        x, n = row
        d = gc.fori_loop(0, n, lambda i, v: gc.sin(v) * 0.9 + x * gc.cast(i, "float64"), c)
        return d, d.sum()
    c, ys = gc.scan(outer, h0, (xs, counts))
    loss = (c ** 2).sum() + (ys ** 2).sum()
    v = gc.constant(np.ones(3))
    f = gc.function([h0, xs, counts], [loss] + gc.grad(loss, [h0, xs])
                    + [gc.hvp(loss, h0, v), gc.hvp(loss, h0, v, mode="rev-rev")])
    start, trips = np.array([0.3, -0.2, 0.5]), np.array([0, 2, 5, 1])
    rows = 0.3 * np.random.default_rng(3).standard_normal((4, 3))

    def numpy_loss(h, x_rows):
        c, total = h.copy(), 0.0
        for x, n in zip(x_rows, trips):
            for i in range(n):
                c = np.sin(c) * 0.9 + x * i
            total += c.sum() ** 2
        return (c ** 2).sum() + total
    value, g_h, g_x, hv_fwd, hv_rev = f(start, rows, trips)
    np.testing.assert_allclose(value, numpy_loss(start, rows), rtol=1e-13)
    np.testing.assert_allclose(g_h, central_gradient(lambda h: numpy_loss(h, rows), start), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(g_x, central_gradient(lambda x: numpy_loss(start, x), rows), rtol=1e-6, atol=1e-8)
    g_of = gc.function([h0, xs, counts], gc.grad(loss, h0))
    curvature = central_gradient(lambda h: g_of(h, rows, trips).sum(), start)
    np.testing.assert_allclose(hv_fwd, curvature, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(hv_rev, curvature, rtol=1e-6, atol=1e-7)
