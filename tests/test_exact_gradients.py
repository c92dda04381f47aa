"""Gradients where a shortcut formula loses digits, gives NaN or divides by zero: cumsum's
reverse running sum, std where it is 0, repeat with no copies. The oracles are closed forms
computed here with plain NumPy, and central differences."""

import numpy as np
import pytest

import graphcomp as gc
from finite_differences import central_gradient


def cumsum_vjp(values, cotangent, axis=None):
    """gc.vjp of cumsum(x, axis) at `values` for `cotangent`, compiled and called."""
    x = gc.placeholder(values.shape, name="x")
    g = gc.placeholder(cotangent.shape, name="g")
    return gc.function([x, g], gc.vjp(gc.cumsum(x, axis=axis), [x], g)[0])(values, cotangent)


def test_cumsum_gradient_is_an_exact_reverse_running_sum():
    # total - cumsum + g cancels: 1.07e13 - (1.07e13 - ...) keeps none of the 1.9e-13 tail
    values = np.array([30.0, -30.0, -30.0, 0.0])
    x = gc.placeholder((4,), name="x")
    gradient = gc.function([x], gc.grad(gc.sum(gc.exp(gc.cumsum(x))), x))(values)
    running = np.exp(np.cumsum(values))
    np.testing.assert_allclose(gradient, np.cumsum(running[::-1])[::-1], rtol=1e-15)
    assert gradient[2] == pytest.approx(1.8715245937680347e-13, rel=1e-15)


def test_cumsum_gradient_of_an_infinite_cotangent_is_infinite_not_nan():
    with np.errstate(all="raise"):
        gradient = cumsum_vjp(np.zeros(4), np.array([1.0, np.inf, 0.0, 0.0]))
    np.testing.assert_array_equal(gradient, [np.inf, np.inf, 0.0, 0.0])


@pytest.mark.parametrize("axis", [0, 1, -1, None])
def test_cumsum_vjp_along_each_axis(axis):
    rng = np.random.default_rng(0)
    values, cotangent = rng.normal(size=(3, 4)), rng.normal(size=(3, 4) if axis is not None else (12,))
    flipped = np.flip(cotangent, axis if axis is not None else 0)
    expected = np.flip(np.cumsum(flipped, axis=axis if axis is not None else 0), axis if axis is not None else 0)
    gradient = cumsum_vjp(values, cotangent, axis)
    np.testing.assert_array_equal(gradient, expected.reshape(values.shape))


def test_cumsum_hessian_matches_its_closed_form():
    # f = sum_k exp(c_k), c = cumsum(x): H_ij = sum over k >= max(i, j) of exp(c_k)
    values = np.array([0.3, -1.2, 0.5, 0.1, -0.4])
    x = gc.placeholder((5,), name="x")
    hessian = gc.function([x], gc.hessian(gc.sum(gc.exp(gc.cumsum(x))), x))(values)
    tails = np.cumsum(np.exp(np.cumsum(values))[::-1])[::-1]
    expected = tails[np.maximum.outer(np.arange(5), np.arange(5))]
    np.testing.assert_allclose(hessian, expected, rtol=1e-14)


def std_gradient(values, axis=None, ddof=0):
    x = gc.placeholder(values.shape, name="x")
    return gc.function([x], gc.grad(gc.sum(gc.std(x, axis=axis, ddof=ddof)), x))(values)


@pytest.mark.parametrize("values, axis", [
    (np.array(2.0), None),                        # a scalar
    (np.array([[1.0], [-3.0], [0.5]]), 1),         # an axis of size 1
    (np.full(4, 1.5), None),                       # all equal: std is 0, not differentiable; 0 is autograd's
], ids=["scalar", "axis-of-one", "all-equal"])
def test_std_gradient_is_zero_where_std_is_zero(values, axis):
    with np.errstate(all="raise"):
        gradient = std_gradient(values, axis)
    np.testing.assert_array_equal(gradient, np.zeros_like(values))


def test_std_gradient_elsewhere_is_unchanged():
    values = np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]])  # the second row has std 0
    centred = values - values.mean(axis=1, keepdims=True)
    spread = np.sqrt((centred ** 2).sum(axis=1, keepdims=True) / 2)  # ddof=1
    expected = np.where(spread > 0, centred / (2 * np.where(spread > 0, spread, 1)), 0.0)
    np.testing.assert_allclose(std_gradient(values, axis=1, ddof=1), expected, rtol=1e-14)
    np.testing.assert_allclose(std_gradient(values[0], ddof=0),
                               central_gradient(lambda v: np.std(v), values[0]), rtol=1e-7)
    gc.testing.check_grads(lambda x: gc.std(x, axis=0), [np.array([[0.5, 1.0], [2.0, -1.0], [0.0, 4.0]])], order=2)


def test_std_values_are_numpys_including_nan_and_inf():
    x = gc.placeholder((3,), name="x")
    f = gc.function([x], [gc.std(x), gc.std(x, ddof=3), gc.std(x, ddof=4)])
    values = np.array([1.0, 2.0, 4.0])
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = [np.std(values), np.std(values, ddof=3), np.std(values, ddof=4)]
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(f(values), expected)
        assert np.isnan(f(np.array([1.0, np.nan, 2.0]))[0])


@pytest.mark.parametrize("axis", [0, 1, None])
def test_repeat_with_no_copies_has_a_zero_gradient(axis):
    values = np.arange(6.0).reshape(3, 2)
    x = gc.placeholder((3, 2), name="x")
    y = gc.repeat(x, 0, axis=axis)
    gradient = gc.function([x], gc.grad(gc.sum(y * 2.0), x))(values)
    np.testing.assert_array_equal(gradient, np.zeros_like(values))
    np.testing.assert_array_equal(gc.function([x], y)(values), np.repeat(values, 0, axis=axis))
