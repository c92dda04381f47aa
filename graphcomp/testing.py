"""Finite-difference checks of symbolic derivatives, for users and for graphcomp's own tests."""

from __future__ import annotations

import numpy as np

from graphcomp.autodiff import grad
from graphcomp.compile import function
from graphcomp.forward import hvp, jvp
from graphcomp.ops.reduce import sum_
from graphcomp.tensor import constant, placeholder


def _scalarize(y, rng):
    """A non-scalar output becomes <y, u> for a fixed random u, so one check covers all of it."""
    if y.shape == ():
        return y
    if any(d is None for d in y.shape):
        raise ValueError("check_grads: the function's output shape must be known")
    return sum_(y * constant(rng.standard_normal(y.shape), dtype=y.dtype))


def _close(expected, actual, rtol, atol):
    expected, actual = np.asarray(expected, float), np.asarray(actual, float)
    scale = max(np.max(np.abs(expected), initial=0.0), np.max(np.abs(actual), initial=0.0))
    return np.max(np.abs(expected - actual), initial=0.0) <= atol + rtol * scale


def check_grads(f, args, order=2, directions=3, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0):
    """Check the derivatives of the graph-building function `f` at `args` (a list of arrays).

    First order: <grad, d> against a central difference of f along random directions d, and
    forward mode against reverse mode (the dot-product identity <u, J d> = <J^T u, d>).
    Second order: the Hessian-vector product H d, in both modes ("rev-rev" and "fwd-rev"),
    against a central difference of the gradient.
    Raises AssertionError naming the order, the direction and both values on a mismatch.
    """
    if order not in (1, 2):
        raise ValueError(f"check_grads: order must be 1 or 2, got {order!r}")
    rng = np.random.default_rng(seed)
    args = [np.array(a, dtype=np.float64) for a in args]
    inputs = [placeholder(a.shape, name=f"arg{i}") for i, a in enumerate(args)]
    cost = _scalarize(f(*inputs), rng)
    gradients = grad(cost, inputs, disconnected="zero")  # an argument f ignores: zeros
    value_of = function(inputs, cost)
    gradient_of = function(inputs, gradients)
    tangents = [placeholder(a.shape, name=f"tangent{i}") for i, a in enumerate(args)]
    forward_of = function(inputs + tangents, jvp(cost, inputs, tangents))
    hessian_times = function(inputs + tangents, hvp(cost, inputs, tangents, mode="rev-rev", disconnected="zero")
                             + hvp(cost, inputs, tangents, mode="fwd-rev", disconnected="zero")) if order == 2 else None

    def shifted(direction, step):
        return [a + step * d for a, d in zip(args, direction)]

    for trial in range(directions):
        direction = [rng.standard_normal(a.shape) for a in args]
        numeric = (value_of(*shifted(direction, eps)) - value_of(*shifted(direction, -eps))) / (2 * eps)
        symbolic = sum(np.vdot(g, d) for g, d in zip(gradient_of(*args), direction))
        if not _close(numeric, symbolic, rtol, atol):
            raise AssertionError(f"check_grads: first derivative along direction {trial} is {symbolic!r}, "
                                 f"finite differences give {numeric!r}")
        forward = forward_of(*args, *direction)
        if not _close(symbolic, forward, rtol, atol):
            raise AssertionError(f"check_grads: along direction {trial} forward mode gives <u, J d> = {forward!r} "
                                 f"but reverse mode gives <J^T u, d> = {symbolic!r}")
        if hessian_times is None:
            continue
        plus, minus = gradient_of(*shifted(direction, eps)), gradient_of(*shifted(direction, -eps))
        products = hessian_times(*args, *direction)
        for position, (p, m, hv) in enumerate(zip(plus * 2, minus * 2, products)):
            numeric_hv = (p - m) / (2 * eps)
            if not _close(numeric_hv, hv, 100 * rtol, 100 * atol):
                raise AssertionError(
                    f"check_grads: Hessian-vector product ({'rev-rev' if position < len(args) else 'fwd-rev'}) "
                    f"for argument {position % len(args)} along direction {trial} "
                    f"differs from finite differences of the gradient by "
                    f"{np.max(np.abs(numeric_hv - hv)):.3g}\n symbolic: {hv!r}\n numeric:  {numeric_hv!r}")
