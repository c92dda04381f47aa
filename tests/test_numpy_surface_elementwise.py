"""NumPy's elementwise functions, reductions and scans added on the NumPy surface: the
derivatives at kinks and zeros, aliases, keywords and methods."""

import numpy as np
import pytest

import graphcomp as gc


@pytest.mark.parametrize("optimize", [False, True])
def test_power_derivatives_at_zero_base(optimize):
    x, y = gc.placeholder((), name="x"), gc.placeholder((), name="y")
    outputs = [gc.grad(x ** 0, x), gc.grad(x ** y, x), gc.grad(gc.grad(x ** 1, x), x), gc.grad(gc.grad(x ** 2, x), x),
               gc.grad(gc.grad(x ** y, x), x)]
    values = gc.function([x, y], outputs, optimize=optimize)
    np.testing.assert_array_equal(values(0.0, 0.0), [0.0, 0.0, 0.0, 2.0, 0.0])
    np.testing.assert_array_equal(values(0.0, 1.0)[1], 1.0)
    v = gc.placeholder((3,))
    features = gc.sum(v[:, None] ** np.arange(4))
    f = gc.function([v], [features, gc.grad(features, v), gc.hvp(features, v, np.ones(3))], optimize=optimize)
    value, gradient, curvature = f(np.zeros(3))
    assert value == 3.0
    np.testing.assert_array_equal(gradient, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(curvature, [2.0, 2.0, 2.0])


def test_prod_gradient_and_hessian_with_zeros():
    x = gc.placeholder((4,))
    f = gc.function([x], [gc.grad(gc.prod(x), x), gc.hessian(gc.prod(x), x)])
    for values in ([1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 3.0, 4.0], [0.0, 2.0, 0.0, 4.0], [0.0, 0.0, 0.0, 4.0]):
        values = np.array(values)
        gradient, hessian = f(values)
        expected = [np.prod(np.delete(values, i)) for i in range(4)]
        expected_hessian = [[0.0 if i == j else np.prod(np.delete(values, [i, j])) for j in range(4)] for i in range(4)]
        np.testing.assert_allclose(gradient, expected, rtol=1e-14)
        np.testing.assert_allclose(hessian, expected_hessian, rtol=1e-14)


def test_sinc_derivatives_at_zero():
    x = gc.placeholder(())
    first = gc.grad(gc.sinc(x), x)
    f = gc.function([x], [gc.sinc(x), first, gc.grad(first, x)])
    np.testing.assert_allclose(f(0.0), [1.0, 0.0, -np.pi ** 2 / 3], rtol=1e-14)


def test_softmax_over_all_or_several_axes():
    x = gc.placeholder((2, 3, 4))
    values = np.random.default_rng(0).normal(size=(2, 3, 4))
    f = gc.function([x], [gc.softmax(x, axis=None), gc.log_softmax(x, axis=(0, 2))])
    whole, logs = f(values)
    np.testing.assert_allclose(whole, np.exp(values) / np.exp(values).sum(), rtol=1e-13)
    np.testing.assert_allclose(np.exp(logs).sum(axis=(0, 2)), np.ones(3), rtol=1e-13)


def test_clip_keywords_mod_operator_and_aliases():
    x = gc.placeholder((3,))
    values = np.array([-1.5, 0.25, 2.0])
    outputs = [gc.clip(x, a_min=0.0, a_max=1.0), gc.clip(x, min=0.0), x.clip(max=0.5), x % 0.75, 2.0 % x,
               gc.acos(x / 2), gc.pow(x, 2.0), gc.mod(x, 0.75), gc.round(x), gc.amax(x), gc.degrees(x)]
    expected = [np.clip(values, 0.0, 1.0), np.clip(values, 0.0, None), np.clip(values, None, 0.5), values % 0.75,
                2.0 % values, np.arccos(values / 2), values ** 2, values % 0.75, np.round(values), np.max(values),
                np.degrees(values)]
    for got, want in zip(gc.function([x], outputs)(values), expected):
        np.testing.assert_allclose(got, want, rtol=1e-14)
    with pytest.raises(TypeError, match="twice"):
        gc.clip(x, 0.0, 1.0, min=0.0)


def test_zero_gradients_and_nan_to_num_gradient():
    x = gc.placeholder((4,))
    cost = gc.sum(gc.floor(x) + gc.ceil(x) + gc.round(x) + gc.trunc(x) + 2.0 * gc.nan_to_num(x))
    gradient = gc.function([x], gc.grad(cost, x))(np.array([0.3, np.inf, -2.5, np.nan]))
    np.testing.assert_array_equal(gradient, [2.0, 0.0, 2.0, 0.0])


def test_sort_gradient_goes_through_the_permutation_and_methods():
    x = gc.placeholder((2, 3))
    values = np.array([[3.0, 1.0, 2.0], [0.5, -1.0, 4.0]])
    weights = np.arange(6.0).reshape(2, 3)
    f = gc.function([x], [gc.grad(gc.sum(gc.sort(x) * weights), x), x.argmax(axis=1), x.cumsum(), x.var(ddof=1),
                          x.std(axis=0), x.prod(), x.ravel(), x.flatten(), x[None].squeeze(), x.astype("float32")])
    gradient, argmax, cumsum, var, std, prod, ravel, flatten, squeezed, cast = f(values)
    expected = np.empty_like(weights)
    np.put_along_axis(expected, np.argsort(values, axis=1), weights, axis=1)
    np.testing.assert_array_equal(gradient, expected)
    np.testing.assert_array_equal(argmax, [0, 2])
    np.testing.assert_allclose(cumsum, np.cumsum(values))
    np.testing.assert_allclose([var, prod], [np.var(values, ddof=1), np.prod(values)])
    np.testing.assert_allclose(std, np.std(values, axis=0))
    assert x.size == 6 and gc.placeholder((None, 2)).size is None
    assert ravel.shape == flatten.shape == (6,) and squeezed.shape == (2, 3) and cast.dtype == np.float32


def test_unknown_sizes():
    x = gc.placeholder((None, 3))
    outputs = [gc.var(x, axis=0, ddof=1), gc.argmin(x), gc.cumsum(x, axis=0), gc.diff(x, axis=0), gc.sort(x, axis=0),
               gc.any(x > 1, axis=1, keepdims=True)]
    values = np.random.default_rng(1).normal(size=(5, 3))
    expected = [np.var(values, axis=0, ddof=1), np.argmin(values), np.cumsum(values, axis=0), np.diff(values, axis=0),
                np.sort(values, axis=0), np.any(values > 1, axis=1, keepdims=True)]
    for got, want in zip(gc.function([x], outputs)(values), expected):
        np.testing.assert_allclose(got, want, rtol=1e-13)
