"""Central differences: the independent oracle derivative tests check graphcomp against."""

from __future__ import annotations

import numpy as np

import graphcomp as gc


def central_gradient(f, x, eps=1e-6):
    """The gradient at `x` of a NumPy function `f` from arrays of x's shape to a number, one
    central difference (f(x + eps e_i) - f(x - eps e_i)) / (2 eps) per element."""
    x = np.array(x, dtype=float)
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        gradient[index] = (f(x + step) - f(x - step)) / (2 * eps)
    return gradient


def third_derivatives_match_finite_differences(build, args, eps=1e-3):
    """Check a graph's third derivatives: <grad_z <H(z) t, v>, d> against a central difference
    (Richardson-extrapolated) of <H(z) t, v> along d, with the HVP in both modes; `build` makes
    the graph from placeholders shaped as `args`, the point the check is made at."""
    rng = np.random.default_rng(3)
    inputs = [gc.placeholder(a.shape) for a in args]
    tangents = [gc.placeholder(a.shape) for a in args]
    probes = [gc.constant(rng.standard_normal(a.shape)) for a in args]
    out = build(*inputs)
    cost = gc.sum(out * rng.standard_normal(out.shape))
    for mode in ("rev-rev", "fwd-rev"):
        products = gc.hvp(cost, inputs, tangents, mode=mode, disconnected="zero")
        contracted = gc.sum(products[0] * probes[0])
        for h, v in zip(products[1:], probes[1:]):
            contracted = contracted + gc.sum(h * v)
        third = gc.grad(contracted, inputs, disconnected="zero")
        value_of = gc.function(inputs + tangents, contracted)
        third_of = gc.function(inputs + tangents, third)
        t = [rng.standard_normal(a.shape) for a in args]
        d = [rng.standard_normal(a.shape) for a in args]

        def central(h):
            return (value_of(*[a + h * e for a, e in zip(args, d)], *t)
                    - value_of(*[a - h * e for a, e in zip(args, d)], *t)) / (2 * h)
        numeric = (4 * central(eps / 2) - central(eps)) / 3  # Richardson: the h^2 error cancels
        symbolic = sum(np.vdot(g, e) for g, e in zip(third_of(*args, *t), d))
        np.testing.assert_allclose(symbolic, numeric, rtol=1e-6, atol=1e-6)
