"""cumprod's first and second derivatives at inputs with zeros (no division by x).

The oracle is independent of graphcomp: central differences of np.cumprod (exact up to
rounding, cumprod being a polynomial), for the gradient of <w, cumprod(x)> and for its
Hessian-vector products. At a zero, the derivatives are those of the polynomial, as JAX and
PyTorch give them.
"""

import numpy as np
import pytest

import graphcomp as gc
from finite_differences import central_gradient

VECTORS = {
    "no-zero": [1.3, -0.7, 2.0, 0.9, 1.1],
    "one-zero": [1.3, 0.0, 2.0, 0.9, -1.2],
    "two-zeros": [0.0, 1.5, 0.0, 2.0, 0.7],
    "three-zeros": [0.0, 0.0, 1.1, 0.0, 0.5],
    "zero-last": [1.2, -1.5, 0.5, 0.8, 0.0],
}


def _inputs():
    for label, values in VECTORS.items():
        v = np.array(values)
        yield f"{label} 1-D", v, None
        yield f"{label} 1-D axis=0", v, 0
        matrix = np.stack([v, v[::-1], np.array([1.1, 0.0, 0.0, -0.3, 0.6]), np.array([0.9, -1.2, 0.4, 1.5, 0.8])])
        for axis in (0, 1, -1, None):
            yield f"{label} 2-D axis={axis}", matrix, axis


CASES = list(_inputs())
# cumprod is affine in each element, so a central difference along one element is exact for
# any step (a large one keeps rounding small)
EXACT_STEP = 0.5


@pytest.mark.parametrize("label, x, axis", CASES, ids=[c[0] for c in CASES])
def test_check_grads_second_order(label, x, axis):
    gc.testing.check_grads(lambda t: gc.cumprod(t, axis=axis), [x], order=2)


@pytest.mark.parametrize("label, x, axis", CASES, ids=[c[0] for c in CASES])
def test_against_finite_differences_of_numpy(label, x, axis):
    rng = np.random.default_rng(len(label))
    w = rng.standard_normal(np.cumprod(x, axis=axis).shape)
    d = rng.standard_normal(x.shape)

    def value(a):
        return np.sum(w * np.cumprod(a, axis=axis))

    t = gc.placeholder(x.shape)
    direction = gc.placeholder(x.shape)
    cost = gc.sum(gc.constant(w) * gc.cumprod(t, axis=axis))
    (gradient,) = gc.grad(cost, [t])
    gradient_of = gc.function([t], gradient)
    hessian_of = gc.function([t, direction], gc.hvp(cost, [t], [direction], mode="rev-rev")
                             + gc.hvp(cost, [t], [direction], mode="fwd-rev"))
    forward_of = gc.function([t, direction], gc.jvp(cost, [t], [direction]))

    expected = central_gradient(value, x, eps=EXACT_STEP)
    got = gradient_of(x)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(forward_of(x, d), np.vdot(expected, d), rtol=1e-7, atol=1e-8)

    # H d: central difference of the (numerically exact) gradient of the polynomial
    eps = 1e-4
    expected_hd = (central_gradient(value, x + eps * d, eps=EXACT_STEP) - central_gradient(value, x - eps * d, eps=EXACT_STEP)) / (2 * eps)
    for hd in hessian_of(x, d):
        assert np.all(np.isfinite(hd))
        np.testing.assert_allclose(hd, expected_hd, rtol=1e-5, atol=1e-5)


def test_gradient_at_zeros_by_hand():
    # y = (x0, x0 x1, x0 x1 x2) at x = (2, 0, 3): d sum(y) = (1 + x1 + x1 x2, x0 + x0 x2, x0 x1) = (1, 8, 0)
    x = gc.placeholder((3,))
    (gradient,) = gc.grad(gc.sum(gc.cumprod(x)), [x])
    np.testing.assert_array_equal(gc.function([x], gradient)(np.array([2.0, 0.0, 3.0])), [1.0, 8.0, 0.0])
    # two zeros: only the mixed second derivative through both zeros survives
    (gradient,) = gc.grad(gc.sum(gc.cumprod(x)), [x])
    np.testing.assert_array_equal(gc.function([x], gradient)(np.array([0.0, 0.0, 3.0])), [1.0, 0.0, 0.0])


def test_no_division_by_zero_warnings():
    x = gc.placeholder((4,))
    (gradient,) = gc.grad(gc.sum(gc.cumprod(x)), [x])
    with np.errstate(all="raise"):
        gc.function([x], gradient)(np.array([0.0, 0.0, 1.0, 0.0]))
